package ollama

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/llmquota/llmquota/internal/testbed/gguf"
)

// server is a real `ollama serve` on a free loopback port, with two tiny
// generated models, "tiny-a" and "tiny-b" (different seeds, so distinct).
type server struct {
	url string
}

var shared *server

// TestMain starts one Ollama server for the package's tests. The binary is
// built from the Go module proxy by hack/build-ollama.sh; make test sets OLLAMA.
func TestMain(m *testing.M) {
	bin := os.Getenv("OLLAMA")
	if bin == "" {
		fmt.Fprintln(os.Stderr, "OLLAMA is not set: run through `make test`, which builds ollama with hack/build-ollama.sh")
		os.Exit(1)
	}
	dir, err := os.MkdirTemp("", "llmquota-ollama-")
	if err != nil {
		panic(err)
	}
	srv, cmd, err := startOllama(bin, dir)
	code := 1
	if err != nil {
		fmt.Fprintln(os.Stderr, "starting ollama:", err)
	} else {
		shared = srv
		code = m.Run()
		_ = cmd.Process.Signal(syscall.SIGTERM)
		_, _ = cmd.Process.Wait()
	}
	_ = os.RemoveAll(dir)
	os.Exit(code)
}

func startOllama(bin, dir string) (*server, *exec.Cmd, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, nil, err
	}
	addr := ln.Addr().String()
	_ = ln.Close()
	cmd := exec.Command(bin, "serve")
	cmd.Env = append(os.Environ(), "OLLAMA_HOST="+addr, "OLLAMA_MODELS="+filepath.Join(dir, "models"), "HOME="+dir, "GIN_MODE=release")
	logFile, err := os.Create(filepath.Join(dir, "ollama.log"))
	if err != nil {
		return nil, nil, err
	}
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		return nil, nil, err
	}
	s := &server{url: "http://" + addr}
	for i := 0; ; i++ {
		if resp, err := http.Get(s.url); err == nil {
			_ = resp.Body.Close()
			break
		}
		if i > 200 {
			return nil, cmd, fmt.Errorf("ollama did not answer on %s", addr)
		}
		time.Sleep(50 * time.Millisecond)
	}
	for seed, name := range map[uint64]string{1: "tiny-a", 2: "tiny-b"} {
		if err := s.create(name, seed); err != nil {
			return nil, cmd, err
		}
	}
	return s, cmd, nil
}

// create uploads a generated GGUF as a blob and creates a model from it.
// Random weights never emit EOS, so generation is bounded.
func (s *server) create(name string, seed uint64) error {
	var model bytes.Buffer
	if err := gguf.Write(&model, seed); err != nil {
		return err
	}
	sum := sha256.Sum256(model.Bytes())
	digest := "sha256:" + hex.EncodeToString(sum[:])
	resp, err := http.Post(s.url+"/api/blobs/"+digest, "application/octet-stream", bytes.NewReader(model.Bytes()))
	if err != nil {
		return err
	}
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusCreated && resp.StatusCode != http.StatusOK {
		return fmt.Errorf("uploading blob: HTTP %d", resp.StatusCode)
	}
	body, _ := json.Marshal(map[string]any{"model": name, "files": map[string]string{"tiny.gguf": digest},
		"parameters": map[string]any{"num_predict": 8}, "stream": false})
	resp, err = http.Post(s.url+"/api/create", "application/json", bytes.NewReader(body))
	if err != nil {
		return err
	}
	defer func() { _ = resp.Body.Close() }()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("creating %s: HTTP %d", name, resp.StatusCode)
	}
	return nil
}

func (s *server) client() *Client { return New(s.url, nil) }

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return c
}

// Package ollamaserver runs a real `ollama serve` for tests: on a free
// loopback port, in a temporary home, with two tiny generated models,
// "tiny-a" and "tiny-b" (GGUF files from internal/testbed/gguf with
// different seeds, so they are distinct models). The binary is built from
// the Go module proxy by hack/build-ollama.sh; `make test` passes its path
// in the OLLAMA environment variable.
package ollamaserver

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"

	"github.com/llmquota/llmquota/internal/testbed/gguf"
)

// Models are the models every server has.
var Models = []string{"tiny-a", "tiny-b"}

// Server is a running `ollama serve`.
type Server struct {
	// URL is its base URL (http://127.0.0.1:port).
	URL string
	// Port is the port it listens on.
	Port int

	cmd   *exec.Cmd
	dir   string
	shape gguf.Shape
}

// ErrNoBinary means OLLAMA is not set.
var ErrNoBinary = errors.New("OLLAMA is not set: run through `make test`, which builds ollama with hack/build-ollama.sh")

// StartFromEnv starts the binary named by OLLAMA.
func StartFromEnv() (*Server, error) {
	bin := os.Getenv("OLLAMA")
	if bin == "" {
		return nil, ErrNoBinary
	}
	return Start(bin)
}

// Start runs bin serve and creates the tiny models. Close stops it.
func Start(bin string) (*Server, error) { return StartShape(bin, gguf.Tiny) }

// StartShape runs bin serve and creates the models in the given shape
// (gguf.Large for a GPU check).
func StartShape(bin string, shape gguf.Shape) (*Server, error) {
	dir, err := os.MkdirTemp("", "llmquota-ollama-")
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	addr := ln.Addr().(*net.TCPAddr)
	_ = ln.Close()
	s := &Server{URL: "http://" + addr.String(), Port: addr.Port, dir: dir, shape: shape}
	s.cmd = exec.Command(bin, "serve")
	s.cmd.Env = append(os.Environ(), "OLLAMA_HOST="+addr.String(), "OLLAMA_MODELS="+filepath.Join(dir, "models"), "HOME="+dir, "GIN_MODE=release")
	logFile, err := os.Create(filepath.Join(dir, "ollama.log"))
	if err != nil {
		return nil, err
	}
	s.cmd.Stdout, s.cmd.Stderr = logFile, logFile
	if err := s.cmd.Start(); err != nil {
		return nil, err
	}
	if err := s.setUp(); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

func (s *Server) setUp() error {
	for i := 0; ; i++ {
		if resp, err := http.Get(s.URL); err == nil {
			_ = resp.Body.Close()
			break
		}
		if i > 200 {
			return fmt.Errorf("ollama did not answer on %s (log in %s)", s.URL, s.dir)
		}
		time.Sleep(50 * time.Millisecond)
	}
	for i, name := range Models {
		if err := s.create(name, uint64(i+1)); err != nil {
			return err
		}
	}
	return nil
}

// Log returns what the server has logged so far (for failing tests).
func (s *Server) Log() string {
	data, _ := os.ReadFile(filepath.Join(s.dir, "ollama.log"))
	return string(data)
}

// PID is the server's process ID; the runners it starts for each model
// are its children.
func (s *Server) PID() int { return s.cmd.Process.Pid }

// Close stops the server and removes its home.
func (s *Server) Close() {
	if s.cmd != nil && s.cmd.Process != nil {
		_ = s.cmd.Process.Signal(syscall.SIGTERM)
		_, _ = s.cmd.Process.Wait()
	}
	_ = os.RemoveAll(s.dir)
}

// create uploads a generated GGUF as a blob and creates a model from it.
// Random weights never emit EOS, so generation is bounded by num_predict.
func (s *Server) create(name string, seed uint64) error {
	var model bytes.Buffer
	if err := gguf.WriteShape(&model, seed, s.shape); err != nil {
		return err
	}
	sum := sha256.Sum256(model.Bytes())
	digest := "sha256:" + hex.EncodeToString(sum[:])
	resp, err := http.Post(s.URL+"/api/blobs/"+digest, "application/octet-stream", bytes.NewReader(model.Bytes()))
	if err != nil {
		return err
	}
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusCreated && resp.StatusCode != http.StatusOK {
		return fmt.Errorf("uploading blob: HTTP %d", resp.StatusCode)
	}
	body, _ := json.Marshal(map[string]any{"model": name, "files": map[string]string{"tiny.gguf": digest},
		"parameters": map[string]any{"num_predict": 8}, "stream": false})
	resp, err = http.Post(s.URL+"/api/create", "application/json", bytes.NewReader(body))
	if err != nil {
		return err
	}
	defer func() { _ = resp.Body.Close() }()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("creating %s: HTTP %d", name, resp.StatusCode)
	}
	return nil
}

// ModelsDir is the server's model store (OLLAMA_MODELS), holding the
// generated models once Start returned.
func (s *Server) ModelsDir() string { return filepath.Join(s.dir, "models") }

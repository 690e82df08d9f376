// Package minioserver runs a real MinIO server for tests: S3 on a free
// loopback port, data in a temporary directory, one root account. The
// binary is built from the Go module proxy by hack/build-tools.sh; `make
// test` passes its path in the MINIO environment variable.
package minioserver

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"

	"github.com/llmquota/llmquota/internal/testbed/process"
)

// Root account of every test server.
const (
	User     = "llmquota-test"
	Password = "llmquota-test-secret"
)

// ErrNoBinary means MINIO is not set.
var ErrNoBinary = errors.New("MINIO is not set: run through `make test`, which builds minio with hack/build-tools.sh")

// Server is a running MinIO.
type Server struct {
	// Endpoint is its base URL (http://127.0.0.1:port).
	Endpoint string
	cmd      *exec.Cmd
	dir      string
}

// StartFromEnv starts the binary named by MINIO.
func StartFromEnv() (*Server, error) {
	bin := os.Getenv("MINIO")
	if bin == "" {
		return nil, ErrNoBinary
	}
	return Start(bin)
}

// Start runs bin server and waits until it answers. Close stops it.
func Start(bin string) (*Server, error) {
	dir, err := os.MkdirTemp("", "llmquota-minio-")
	if err != nil {
		return nil, err
	}
	port, err := process.FreePort()
	if err != nil {
		return nil, err
	}
	console, err := process.FreePort()
	if err != nil {
		return nil, err
	}
	s := &Server{Endpoint: fmt.Sprintf("http://127.0.0.1:%d", port), dir: dir}
	s.cmd = exec.Command(bin, "server", dir+"/data", "--quiet",
		"--address", fmt.Sprintf("127.0.0.1:%d", port), "--console-address", fmt.Sprintf("127.0.0.1:%d", console))
	s.cmd.Env = append(os.Environ(), "MINIO_ROOT_USER="+User, "MINIO_ROOT_PASSWORD="+Password, "MINIO_BROWSER=off",
		"MINIO_UPDATE=off", "HOME="+dir)
	s.cmd.Stdout, s.cmd.Stderr = os.Stderr, os.Stderr
	s.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := s.cmd.Start(); err != nil {
		_ = os.RemoveAll(dir)
		return nil, fmt.Errorf("starting %s: %w", bin, err)
	}
	deadline := time.Now().Add(60 * time.Second)
	for {
		resp, err := http.Get(s.Endpoint + "/minio/health/live") //nolint:gosec,noctx // loopback server this function started
		if err == nil {
			_ = resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return s, nil
			}
		}
		if time.Now().After(deadline) {
			s.Close()
			return nil, fmt.Errorf("minio at %s did not answer within 60s", s.Endpoint)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// Close stops the server and removes its data.
func (s *Server) Close() {
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { _ = s.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		_ = s.cmd.Process.Kill()
		<-done
	}
	_ = os.RemoveAll(s.dir)
}

// MakeBucket creates a bucket with the root account.
func (s *Server) MakeBucket(name string) error {
	c, err := minio.New(strings.TrimPrefix(s.Endpoint, "http://"), &minio.Options{Creds: credentials.NewStaticV4(User, Password, "")})
	if err != nil {
		return err
	}
	return c.MakeBucket(context.Background(), name, minio.MakeBucketOptions{})
}

// RemoveBucket deletes a bucket and everything in it.
func (s *Server) RemoveBucket(name string) error {
	c, err := minio.New(strings.TrimPrefix(s.Endpoint, "http://"), &minio.Options{Creds: credentials.NewStaticV4(User, Password, "")})
	if err != nil {
		return err
	}
	return c.RemoveBucketWithOptions(context.Background(), name, minio.RemoveBucketOptions{ForceDelete: true})
}

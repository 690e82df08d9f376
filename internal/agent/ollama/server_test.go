package ollama

import (
	"context"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/llmquota/llmquota/internal/testbed/ollamaserver"
)

var shared *ollamaserver.Server

// TestMain starts one real Ollama server for the package's tests.
func TestMain(m *testing.M) {
	srv, err := ollamaserver.StartFromEnv()
	if err != nil {
		fmt.Fprintln(os.Stderr, "starting ollama:", err)
		os.Exit(1)
	}
	shared = srv
	code := m.Run()
	srv.Close()
	os.Exit(code)
}

func client() *Client { return New(shared.URL, nil) }

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return c
}

package provider

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/llmquota/llmquota/internal/testbed/ollamaserver"
)

// TestOllamaAgainstRealOllama runs the Ollama client, whole and streamed,
// against a real `ollama serve` (OLLAMA, which make test builds) with a
// tiny generated model: the stream's pieces make its text, and the usage
// is the server's own, not an estimate.
func TestOllamaAgainstRealOllama(t *testing.T) {
	srv, err := ollamaserver.StartFromEnv()
	if err != nil {
		t.Fatalf("starting ollama (make test sets OLLAMA): %v", err)
	}
	t.Cleanup(srv.Close)
	c, err := New(Config{Type: Ollama, Endpoint: srv.URL, ContextLength: 256})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	r := Request{Model: ollamaserver.Models[0], Prompt: "hello", MaxTokens: 8, Temperature: "0"}
	whole, err := c.Generate(ctx, r)
	if err != nil || whole.InputTokens == 0 || whole.OutputTokens == 0 {
		t.Fatalf("generate: %+v, %v", whole, err)
	}
	var pieces []string
	streamed, err := c.(Streamer).Stream(ctx, r, func(p string) error { pieces = append(pieces, p); return nil })
	if err != nil {
		t.Fatal(err)
	}
	if len(pieces) == 0 || strings.Join(pieces, "") != streamed.Text || streamed.UsageEstimated ||
		streamed.InputTokens == 0 || streamed.OutputTokens == 0 || streamed.FinishReason == "" {
		t.Fatalf("streamed %+v in pieces %q", streamed, pieces)
	}
}

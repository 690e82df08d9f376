// Package ollama is the node agent's side of Ollama: load a model ahead of
// traffic (warmup), see what is resident (/api/ps), unload what is idle to
// free GPU memory, and choose what to unload.
package ollama

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"
)

// Client talks to one Ollama server.
type Client struct {
	base string
	http *http.Client
}

// New returns a client for the Ollama API at base (http://host:11434).
func New(base string, hc *http.Client) *Client {
	if hc == nil {
		hc = &http.Client{}
	}
	return &Client{base: strings.TrimRight(base, "/"), http: hc}
}

// Running is a model resident in the server's memory.
type Running struct {
	Name      string    `json:"name"`
	SizeBytes int64     `json:"size"`
	VRAMBytes int64     `json:"size_vram"`
	ExpiresAt time.Time `json:"expires_at"`
	// ContextLength is the context the model was loaded with (num_ctx).
	ContextLength int64 `json:"context_length"`
}

// Spec is how a model is loaded.
type Spec struct {
	Model string
	// KeepAlive is how long it stays resident after the last use.
	KeepAlive time.Duration
	// ContextLength is num_ctx; 0 leaves Ollama's default, which v0.17
	// sizes from the GPU (262,144 tokens on a GPU of 47 GiB or more).
	// Every call must ask for the same, or Ollama loads the model again.
	ContextLength int
}

// Load preloads model (a generate call without a prompt) and keeps it
// resident for keepAlive after the last use.
func (c *Client) Load(ctx context.Context, model string, keepAlive time.Duration) error {
	return c.LoadSpec(ctx, Spec{Model: model, KeepAlive: keepAlive})
}

// LoadSpec preloads a model as the spec says.
func (c *Client) LoadSpec(ctx context.Context, s Spec) error {
	body := map[string]any{"model": s.Model, "keep_alive": s.KeepAlive.String()}
	if s.ContextLength > 0 {
		body["options"] = map[string]any{"num_ctx": s.ContextLength}
	}
	return c.generate(ctx, body, "load")
}

// Unload drops model from memory now (keep_alive 0).
func (c *Client) Unload(ctx context.Context, model string) error {
	return c.generate(ctx, map[string]any{"model": model, "keep_alive": 0}, "unload")
}

func (c *Client) generate(ctx context.Context, body map[string]any, want string) error {
	var out struct {
		DoneReason string `json:"done_reason"`
	}
	if err := c.do(ctx, http.MethodPost, "/api/generate", body, &out); err != nil {
		return fmt.Errorf("%s %s: %w", want, body["model"], err)
	}
	return nil
}

// psAttempts bounds how often PS asks again after a 500. Ollama (v0.17)
// answers /api/ps with an empty 500 only when its handler panics (the
// server recovers); the handler reads the runner list without the
// scheduler's lock, and an unload clears the runner's model just before
// the runner leaves the list, the likely cause. CI's dry run met one
// once during a forced cleanup; a listing a moment later is clean. A
// listing is a read, so asking again is safe.
const psAttempts = 3

// psRetryDelay is the pause before each further listing.
const psRetryDelay = 20 * time.Millisecond

// PS lists the resident models, asking again after a 500 (psAttempts).
func (c *Client) PS(ctx context.Context) ([]Running, error) {
	for attempt := 1; ; attempt++ {
		running, err := c.ps(ctx)
		var status *StatusError
		if err == nil || !errors.As(err, &status) || status.Code != http.StatusInternalServerError || attempt == psAttempts {
			return running, err
		}
		select {
		case <-ctx.Done():
			return nil, errors.Join(ctx.Err(), err)
		case <-time.After(psRetryDelay):
		}
	}
}

func (c *Client) ps(ctx context.Context) ([]Running, error) {
	var out struct {
		Models []Running `json:"models"`
	}
	if err := c.do(ctx, http.MethodGet, "/api/ps", nil, &out); err != nil {
		return nil, fmt.Errorf("listing resident models: %w", err)
	}
	return out.Models, nil
}

// StatusError is an answer other than 200 OK, with Ollama's error text.
type StatusError struct {
	Code    int
	Message string
}

func (e *StatusError) Error() string { return fmt.Sprintf("HTTP %d: %s", e.Code, e.Message) }

// Resident reports whether model is in a /api/ps listing. Ollama names
// models with a tag ("tiny:latest"); a name without one matches latest.
func Resident(running []Running, model string) (Running, bool) {
	for _, r := range running {
		if r.Name == model || r.Name == model+":latest" {
			return r, true
		}
	}
	return Running{}, false
}

func (c *Client) do(ctx context.Context, method, path string, body, out any) error {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, rd)
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.http.Do(req)
	if err != nil {
		return err
	}
	defer func() { _ = resp.Body.Close() }()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		var e struct {
			Error string `json:"error"`
		}
		_ = json.Unmarshal(data, &e)
		return &StatusError{Code: resp.StatusCode, Message: e.Error}
	}
	return json.Unmarshal(data, out)
}

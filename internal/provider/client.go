package provider

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Config configures a client.
type Config struct {
	// Type is the API to speak.
	Type Type
	// Endpoint is the API's base URL; empty uses the type's public endpoint.
	Endpoint string
	// APIKey authenticates hosted APIs; unused for Ollama.
	APIKey string
	// HTTPClient sends the requests; nil uses a client without its own
	// timeout (deadlines come from the context).
	HTTPClient *http.Client
	// Now reads the clock for latency and Retry-After; nil uses time.Now.
	Now func() time.Time
	// MaxResponseBytes caps a response body; 0 means 4 MiB.
	MaxResponseBytes int64
	// ContextLength is Ollama's num_ctx, sent on every call (the context
	// the node agent warmed the model with); 0 sends none. Other APIs
	// ignore it.
	ContextLength int32
}

// DefaultEndpoint returns the public endpoint of an API.
func DefaultEndpoint(t Type) string {
	switch t {
	case Gemini:
		return "https://generativelanguage.googleapis.com"
	case Anthropic:
		return "https://api.anthropic.com"
	case OpenAI:
		return "https://api.openai.com/v1"
	case Ollama:
		return "http://localhost:11434"
	}
	return ""
}

// New returns the client for cfg.Type.
func New(cfg Config) (Client, error) {
	if cfg.Endpoint == "" {
		cfg.Endpoint = DefaultEndpoint(cfg.Type)
	}
	cfg.Endpoint = strings.TrimRight(cfg.Endpoint, "/")
	if cfg.HTTPClient == nil {
		cfg.HTTPClient = &http.Client{}
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.MaxResponseBytes == 0 {
		cfg.MaxResponseBytes = 4 << 20
	}
	if cfg.Type != Ollama && cfg.APIKey == "" {
		return nil, fmt.Errorf("provider %s: an API key is required", cfg.Type)
	}
	b := base{cfg: cfg}
	switch cfg.Type {
	case Gemini:
		return &geminiClient{b}, nil
	case Anthropic:
		return &anthropicClient{b}, nil
	case OpenAI:
		return &openAIClient{b}, nil
	case Ollama:
		return &ollamaClient{b}, nil
	}
	return nil, fmt.Errorf("unknown provider type %q", cfg.Type)
}

// base is the HTTP plumbing every client shares.
type base struct{ cfg Config }

// reply is a received HTTP response with its body read.
type reply struct {
	status int
	header http.Header
	body   []byte
}

// post sends a JSON body and reads the capped response. A transport
// failure comes back as a classified *Error.
func (b *base) post(ctx context.Context, url string, payload any, header http.Header) (*reply, error) {
	resp, err := b.send(ctx, url, payload, header)
	if err != nil {
		return nil, err
	}
	defer func() { _ = resp.Body.Close() }()
	data, err := io.ReadAll(io.LimitReader(resp.Body, b.cfg.MaxResponseBytes+1))
	if err != nil {
		return nil, b.fail(transportError(ctx, err))
	}
	if int64(len(data)) > b.cfg.MaxResponseBytes {
		return nil, b.fail(&Error{Class: ClassServerError, StatusCode: resp.StatusCode,
			Message: fmt.Sprintf("response body larger than %d bytes", b.cfg.MaxResponseBytes)})
	}
	return &reply{status: resp.StatusCode, header: resp.Header, body: data}, nil
}

// send posts a JSON body and returns the response, its body unread. A
// failure is a classified *Error.
func (b *base) send(ctx context.Context, url string, payload any, header http.Header) (*http.Response, error) {
	body, err := json.Marshal(payload)
	if err != nil {
		return nil, &Error{Class: ClassBadRequest, Message: "encoding request: " + err.Error()}
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return nil, b.fail(&Error{Class: ClassBadRequest, Message: "building request: " + err.Error()})
	}
	req.Header = header
	req.Header.Set("Content-Type", "application/json")
	resp, err := b.cfg.HTTPClient.Do(req)
	if err != nil {
		return nil, b.fail(transportError(ctx, err))
	}
	return resp, nil
}

// transportError classifies a failure below HTTP.
func transportError(ctx context.Context, err error) *Error {
	var netErr net.Error
	switch {
	case errors.Is(ctx.Err(), context.Canceled):
		return &Error{Class: ClassCanceled, Message: err.Error()}
	case errors.Is(err, context.DeadlineExceeded), errors.As(err, &netErr) && netErr.Timeout():
		return &Error{Class: ClassTimeout, Message: err.Error()}
	case errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.ECONNREFUSED), errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, io.EOF):
		return &Error{Class: ClassConnection, Message: err.Error()}
	}
	return &Error{Class: ClassConnection, Message: err.Error()}
}

// fail redacts the API key from an error before it leaves the package.
func (b *base) fail(e *Error) *Error {
	if k := b.cfg.APIKey; k != "" {
		e.Message = strings.ReplaceAll(e.Message, k, "[REDACTED]")
	}
	return e
}

// statusError classifies an HTTP error status when the body says nothing
// more specific. retryAt comes from the Retry-After header.
func (b *base) statusError(r *reply, msg string) *Error {
	e := &Error{StatusCode: r.status, Message: msg, RetryAt: b.retryAfter(r.header)}
	switch {
	case r.status == http.StatusTooManyRequests:
		e.Class = ClassRateLimited
	case r.status == http.StatusUnauthorized || r.status == http.StatusForbidden:
		e.Class = ClassAuth
	case r.status == http.StatusRequestEntityTooLarge:
		e.Class = ClassContextTooLong
	case r.status == http.StatusRequestTimeout:
		e.Class = ClassTimeout
	case r.status >= 500: // 500, 502, 503, 504, 529 overloaded
		e.Class = ClassServerError
	default:
		e.Class = ClassBadRequest
	}
	if e.Message == "" {
		e.Message = http.StatusText(r.status)
	}
	return e
}

// retryAfter parses Retry-After as seconds or an HTTP date.
func (b *base) retryAfter(h http.Header) time.Time {
	v := strings.TrimSpace(h.Get("Retry-After"))
	if v == "" {
		return time.Time{}
	}
	if secs, err := strconv.ParseFloat(v, 64); err == nil && secs >= 0 {
		return b.cfg.Now().Add(time.Duration(secs * float64(time.Second)))
	}
	if t, err := http.ParseTime(v); err == nil {
		return t
	}
	return time.Time{}
}

// malformed reports a success status with a body that does not parse.
func (b *base) malformed(r *reply, err error) *Error {
	return b.fail(&Error{Class: ClassServerError, StatusCode: r.status, Message: "malformed response body: " + err.Error()})
}

func unknownRateLimit() RateLimit { return RateLimit{RequestsRemaining: -1, TokensRemaining: -1} }

// headerInt parses an integer header, -1 when absent or bad.
func headerInt(h http.Header, name string) int64 {
	v, err := strconv.ParseInt(strings.TrimSpace(h.Get(name)), 10, 64)
	if err != nil {
		return -1
	}
	return v
}

// temperature turns a decimal string into a JSON number; empty stays unset.
func temperature(s string) (*json.Number, error) {
	if s == "" {
		return nil, nil
	}
	if _, err := strconv.ParseFloat(s, 64); err != nil {
		return nil, fmt.Errorf("temperature %q is not a number", s)
	}
	n := json.Number(s)
	return &n, nil
}

package gateway

import (
	"encoding/json"
	"net/http"
	"strconv"

	"github.com/llmquota/llmquota/internal/provider"
)

// The Anthropic Messages dialect, at /anthropic/v1/messages, so the
// official Anthropic SDKs work with only a base-URL change (and the
// ServiceAccount token as their API key). As in the OpenAI dialect, model
// is "<provider>/<model>" or "<provider>", and the call is translated to the
// provider's own API.

type anthropicRequest struct {
	Model       string             `json:"model"`
	MaxTokens   *int64             `json:"max_tokens"`
	System      json.RawMessage    `json:"system"`
	Messages    []anthropicMessage `json:"messages"`
	Temperature *json.Number       `json:"temperature"`
	Stream      bool               `json:"stream"`

	// What the gateway cannot carry unless neutral (unsupported.go).
	Tools         json.RawMessage `json:"tools"`
	ToolChoice    json.RawMessage `json:"tool_choice"`
	StopSequences json.RawMessage `json:"stop_sequences"`
	TopP          json.RawMessage `json:"top_p"`
	TopK          json.RawMessage `json:"top_k"`
	Thinking      json.RawMessage `json:"thinking"`
	MCPServers    json.RawMessage `json:"mcp_servers"`
	Container     json.RawMessage `json:"container"`
}

// unsupported refuses what the request asks that the gateway cannot carry.
func (b *anthropicRequest) unsupported() *failure {
	return refuseUnsupported(field{"tools", b.Tools, emptyList}, field{"tool_choice", b.ToolChoice, noToolUse},
		field{"stop_sequences", b.StopSequences, emptyList}, field{"top_p", b.TopP, nil}, field{"top_k", b.TopK, nil},
		field{"thinking", b.Thinking, noThinking}, field{"mcp_servers", b.MCPServers, emptyList},
		field{"container", b.Container, nil})
}

type anthropicMessage struct {
	Role    string          `json:"role"`
	Content json.RawMessage `json:"content"`
}

type anthropicUsage struct {
	InputTokens  int64 `json:"input_tokens"`
	OutputTokens int64 `json:"output_tokens"`
}

func (g *Gateway) anthropicParse(r *http.Request) (call, *anthropicRequest, *failure) {
	var body anthropicRequest
	c, f := g.begin(r, &body, func() string { return body.Model })
	if f != nil {
		return c, nil, f
	}
	if body.MaxTokens == nil {
		return c, nil, fail(http.StatusBadRequest, "invalid_request", "max_tokens: Field required")
	}
	if f := body.unsupported(); f != nil {
		return c, nil, f
	}
	req := provider.Request{Model: c.req.Model}
	if len(body.System) > 0 && string(body.System) != "null" {
		system, err := textContent(body.System, "content blocks")
		if err != nil {
			return c, nil, fail(http.StatusBadRequest, "invalid_request", "system: %v", err)
		}
		req.System = system
	}
	for i, msg := range body.Messages {
		text, err := textContent(msg.Content, "content blocks")
		if err != nil {
			return c, nil, fail(http.StatusBadRequest, "invalid_request", "messages.%d.content: %v", i, err)
		}
		if msg.Role != "user" && msg.Role != "assistant" {
			return c, nil, fail(http.StatusBadRequest, "invalid_request", "messages.%d.role: %q is neither user nor assistant", i, msg.Role)
		}
		req.History = append(req.History, provider.Turn{Assistant: msg.Role == "assistant", Text: text})
	}
	if f := lastTurn(&req, req.History); f != nil {
		return c, nil, f
	}
	if body.Temperature != nil {
		req.Temperature = body.Temperature.String()
	}
	c.req = req
	if f = c.setOutputCap(body.MaxTokens); f != nil {
		return c, nil, f
	}
	return c, &body, nil
}

func (g *Gateway) anthropicAnswer(w http.ResponseWriter, c call, _ *anthropicRequest, resp *provider.Response) {
	writeJSON(w, http.StatusOK, map[string]any{
		"id": g.anthropicID(), "type": "message", "role": "assistant", "model": c.provider + "/" + c.req.Model,
		"content":     []any{map[string]any{"type": "text", "text": resp.Text}},
		"stop_reason": finishWord(anthropic, resp), "stop_sequence": nil,
		"usage": anthropicUsage{InputTokens: resp.InputTokens, OutputTokens: resp.OutputTokens},
	})
}

func (g *Gateway) anthropicID() string { return "msg_" + strconv.FormatInt(g.now().UnixNano(), 36) }

func anthropicStreams(body *anthropicRequest) bool { return body.Stream }

// anthropicStream is a Messages stream: message_start, one text block's
// deltas, and message_delta with the stop reason and the whole usage
// (input too: a provider of another dialect says it only at the end, and
// the SDKs take message_delta's input_tokens over message_start's).
type anthropicStream struct{ w http.ResponseWriter }

func (g *Gateway) anthropicStream(w http.ResponseWriter, c call, _ *anthropicRequest) eventStream {
	s := anthropicStream{w}
	startEvents(w)
	_ = s.event("message_start", map[string]any{"message": map[string]any{"id": g.anthropicID(), "type": "message", "role": "assistant",
		"model": c.provider + "/" + c.req.Model, "content": []any{}, "stop_reason": nil, "stop_sequence": nil, "usage": anthropicUsage{}}})
	_ = s.event("content_block_start", map[string]any{"index": 0, "content_block": map[string]any{"type": "text", "text": ""}})
	return s
}

func (s anthropicStream) event(name string, v map[string]any) error {
	v["type"] = name
	return writeEvent(s.w, name, v)
}

func (s anthropicStream) text(p string) error {
	if p == "" {
		return nil
	}
	return s.event("content_block_delta", map[string]any{"index": 0, "delta": map[string]any{"type": "text_delta", "text": p}})
}

func (s anthropicStream) end(resp *provider.Response) {
	_ = s.event("content_block_stop", map[string]any{"index": 0})
	_ = s.event("message_delta", map[string]any{"delta": map[string]any{"stop_reason": finishWord(anthropic, resp), "stop_sequence": nil},
		"usage": anthropicUsage{InputTokens: resp.InputTokens, OutputTokens: resp.OutputTokens}})
	_ = s.event("message_stop", map[string]any{})
}

// abort sends Anthropic's error event, as its API does mid-stream.
func (s anthropicStream) abort(f *failure) {
	_ = s.event("error", map[string]any{"error": map[string]any{"type": anthropicErrorType(f.status), "message": f.message}})
}

// anthropicError writes a failure in Anthropic's error shape.
func (g *Gateway) anthropicError(w http.ResponseWriter, f *failure) {
	if f.status == 499 {
		return // the caller left: nobody reads the answer
	}
	waitHeaders(w, f, g.now())
	writeJSON(w, f.status, map[string]any{"type": "error", "error": map[string]any{"type": anthropicErrorType(f.status), "message": f.message}})
}

// anthropicErrorType is Anthropic's error type for a status.
func anthropicErrorType(status int) string {
	switch status {
	case http.StatusUnauthorized:
		return "authentication_error"
	case http.StatusForbidden:
		return "permission_error"
	case http.StatusNotFound:
		return "not_found_error"
	case http.StatusRequestEntityTooLarge:
		return "request_too_large"
	case http.StatusTooManyRequests:
		return "rate_limit_error"
	}
	if status >= 500 {
		return "api_error"
	}
	return "invalid_request_error"
}

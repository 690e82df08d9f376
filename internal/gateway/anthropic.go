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
	Tools       json.RawMessage    `json:"tools"`
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
	if len(body.Tools) > 0 && string(body.Tools) != "null" {
		return c, nil, fail(http.StatusBadRequest, "invalid_request", "tools are not supported by the gateway yet")
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
	if c.maxTokens, f = outputCap(body.MaxTokens); f != nil {
		return c, nil, f
	}
	return c, &body, nil
}

func (g *Gateway) anthropicAnswer(w http.ResponseWriter, c call, body *anthropicRequest, resp *provider.Response) {
	id := "msg_" + strconv.FormatInt(g.now().UnixNano(), 36)
	model := c.provider + "/" + c.req.Model
	usage := anthropicUsage{InputTokens: resp.InputTokens, OutputTokens: resp.OutputTokens}
	stop := finishWord(anthropic, resp)
	if !body.Stream {
		writeJSON(w, http.StatusOK, map[string]any{
			"id": id, "type": "message", "role": "assistant", "model": model,
			"content":     []any{map[string]any{"type": "text", "text": resp.Text}},
			"stop_reason": stop, "stop_sequence": nil, "usage": usage,
		})
		return
	}
	startEvents(w)
	event := func(name string, v map[string]any) {
		v["type"] = name
		_, _ = w.Write([]byte("event: " + name + "\n"))
		writeEvent(w, v)
	}
	event("message_start", map[string]any{"message": map[string]any{"id": id, "type": "message", "role": "assistant", "model": model,
		"content": []any{}, "stop_reason": nil, "stop_sequence": nil, "usage": anthropicUsage{InputTokens: resp.InputTokens}}})
	event("content_block_start", map[string]any{"index": 0, "content_block": map[string]any{"type": "text", "text": ""}})
	event("content_block_delta", map[string]any{"index": 0, "delta": map[string]any{"type": "text_delta", "text": resp.Text}})
	event("content_block_stop", map[string]any{"index": 0})
	event("message_delta", map[string]any{"delta": map[string]any{"stop_reason": stop, "stop_sequence": nil}, "usage": usage})
	event("message_stop", map[string]any{})
}

// anthropicError writes a failure in Anthropic's error shape.
func (g *Gateway) anthropicError(w http.ResponseWriter, f *failure) {
	kind := "invalid_request_error"
	switch f.status {
	case http.StatusUnauthorized:
		kind = "authentication_error"
	case http.StatusForbidden:
		kind = "permission_error"
	case http.StatusNotFound:
		kind = "not_found_error"
	case http.StatusRequestEntityTooLarge:
		kind = "request_too_large"
	case http.StatusTooManyRequests:
		kind = "rate_limit_error"
		retryAfter(w, f, g.now())
	case 499:
		return // the caller left: nobody reads the answer
	default:
		if f.status >= 500 {
			kind = "api_error"
		}
	}
	writeJSON(w, f.status, map[string]any{"type": "error", "error": map[string]any{"type": kind, "message": f.message}})
}

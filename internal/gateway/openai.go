package gateway

import (
	"bytes"
	"encoding/json"
	"net/http"
	"strconv"
	"strings"

	"github.com/llmquota/llmquota/internal/provider"
)

// The OpenAI Chat Completions dialect. The model field selects the
// provider: "<provider>/<model>" calls that model, "<provider>" the
// provider's default model (docs/gateway.md).

type openAIChatRequest struct {
	Model               string          `json:"model"`
	Messages            []openAIMessage `json:"messages"`
	MaxTokens           *int64          `json:"max_tokens"`
	MaxCompletionTokens *int64          `json:"max_completion_tokens"`
	Temperature         *json.Number    `json:"temperature"`
	N                   *int            `json:"n"`
	Stream              bool            `json:"stream"`
	StreamOptions       *struct {
		IncludeUsage bool `json:"include_usage"`
	} `json:"stream_options"`
}

type openAIMessage struct {
	Role    string          `json:"role"`
	Content json.RawMessage `json:"content"`
}

type openAIUsage struct {
	PromptTokens     int64 `json:"prompt_tokens"`
	CompletionTokens int64 `json:"completion_tokens"`
	TotalTokens      int64 `json:"total_tokens"`
}

func (g *Gateway) openAIParse(r *http.Request) (call, *openAIChatRequest, *failure) {
	var body openAIChatRequest
	c, f := g.begin(r, &body, func() string { return body.Model })
	if f != nil {
		return c, nil, f
	}
	if body.N != nil && *body.N != 1 {
		return c, nil, fail(http.StatusBadRequest, "invalid_request", "n=%d: the gateway makes one choice per call (n must be 1)", *body.N)
	}
	req, f := openAIConversation(body.Messages)
	if f != nil {
		return c, nil, f
	}
	req.Model = c.req.Model
	if body.Temperature != nil {
		req.Temperature = body.Temperature.String()
	}
	c.req = req
	maxTokens := body.MaxCompletionTokens
	if maxTokens == nil {
		maxTokens = body.MaxTokens
	}
	if c.maxTokens, f = outputCap(maxTokens); f != nil {
		return c, nil, f
	}
	return c, &body, nil
}

// openAIConversation turns messages into a request: system and developer
// messages become the system text, the last message (a user's) the prompt,
// the rest the history.
func openAIConversation(msgs []openAIMessage) (provider.Request, *failure) {
	var req provider.Request
	var system []string
	if len(msgs) == 0 {
		return req, fail(http.StatusBadRequest, "invalid_request", "messages is empty")
	}
	for i, msg := range msgs {
		text, err := textContent(msg.Content, "parts")
		if err != nil {
			return req, fail(http.StatusBadRequest, "invalid_request", "messages[%d].content: %v", i, err)
		}
		switch msg.Role {
		case "system", "developer":
			system = append(system, text)
		case "user", "assistant":
			req.History = append(req.History, provider.Turn{Assistant: msg.Role == "assistant", Text: text})
		default:
			return req, fail(http.StatusBadRequest, "invalid_request", "messages[%d].role %q is not supported (system, developer, user, assistant)", i, msg.Role)
		}
	}
	req.System = strings.Join(system, "\n\n")
	return req, lastTurn(&req, req.History)
}

func (g *Gateway) openAIAnswer(w http.ResponseWriter, c call, body *openAIChatRequest, resp *provider.Response) {
	id := "chatcmpl-" + strconv.FormatInt(g.now().UnixNano(), 36)
	created := g.now().Unix()
	model := c.provider + "/" + c.req.Model
	usage := openAIUsage{PromptTokens: resp.InputTokens, CompletionTokens: resp.OutputTokens, TotalTokens: resp.InputTokens + resp.OutputTokens}
	finish := finishWord(openai, resp)
	if !body.Stream {
		writeJSON(w, http.StatusOK, map[string]any{
			"id": id, "object": "chat.completion", "created": created, "model": model,
			"choices": []any{map[string]any{"index": 0, "message": map[string]any{"role": "assistant", "content": resp.Text},
				"finish_reason": finish, "logprobs": nil}},
			"usage": usage,
		})
		return
	}
	startEvents(w)
	chunk := func(choices []any, u *openAIUsage) {
		v := map[string]any{"id": id, "object": "chat.completion.chunk", "created": created, "model": model, "choices": choices}
		if body.StreamOptions != nil && body.StreamOptions.IncludeUsage {
			v["usage"] = u // null on every chunk but the last, as OpenAI sends it
		}
		writeEvent(w, v)
	}
	chunk([]any{map[string]any{"index": 0, "delta": map[string]any{"role": "assistant", "content": resp.Text}, "finish_reason": nil}}, nil)
	chunk([]any{map[string]any{"index": 0, "delta": map[string]any{}, "finish_reason": finish}}, nil)
	if body.StreamOptions != nil && body.StreamOptions.IncludeUsage {
		chunk([]any{}, &usage)
	}
	_, _ = w.Write([]byte("data: [DONE]\n\n"))
	if fl, ok := w.(http.Flusher); ok {
		fl.Flush()
	}
}

// openAIError writes a failure in OpenAI's error shape.
func (g *Gateway) openAIError(w http.ResponseWriter, f *failure) {
	kind := "invalid_request_error"
	switch {
	case f.status == http.StatusUnauthorized:
		kind = "authentication_error"
	case f.status == http.StatusForbidden:
		kind = "permission_error"
	case f.status == http.StatusTooManyRequests:
		kind = "rate_limit_error"
		retryAfter(w, f, g.now())
	case f.status >= 500:
		kind = "server_error"
	}
	if f.status == 499 { // the caller left: nobody reads the answer
		return
	}
	writeJSON(w, f.status, map[string]any{"error": map[string]any{"message": f.message, "type": kind, "param": nil, "code": f.code}})
}

func (g *Gateway) openAIModels(w http.ResponseWriter, r *http.Request) {
	who, f := g.authenticate(r, callerToken(r))
	if f != nil {
		g.openAIError(w, f)
		return
	}
	list, err := g.Providers.List(r.Context())
	if err != nil {
		g.openAIError(w, fail(http.StatusServiceUnavailable, "provider_unavailable", "listing providers: %v", err))
		return
	}
	data := []any{}
	for _, p := range list {
		if g.authorize(r.Context(), who, p.Name) != nil {
			continue
		}
		data = append(data, map[string]any{"id": p.Name, "object": "model", "created": p.CreationTimestamp.Unix(), "owned_by": p.Name})
		if p.Spec.Model != "" {
			data = append(data, map[string]any{"id": p.Name + "/" + p.Spec.Model, "object": "model", "created": p.CreationTimestamp.Unix(), "owned_by": p.Name})
		}
	}
	writeJSON(w, http.StatusOK, map[string]any{"object": "list", "data": data})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// startEvents answers 200 with a server-sent event stream.
func startEvents(w http.ResponseWriter) {
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-cache")
	w.WriteHeader(http.StatusOK)
}

func writeEvent(w http.ResponseWriter, v any) {
	var b bytes.Buffer
	b.WriteString("data: ")
	_ = json.NewEncoder(&b).Encode(v) // ends with a newline
	b.WriteString("\n")
	_, _ = w.Write(b.Bytes())
	if fl, ok := w.(http.Flusher); ok {
		fl.Flush()
	}
}

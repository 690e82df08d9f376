package gateway

import (
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

	// What the gateway cannot carry unless neutral (unsupported.go).
	Tools            json.RawMessage `json:"tools"`
	Functions        json.RawMessage `json:"functions"`
	ToolChoice       json.RawMessage `json:"tool_choice"`
	FunctionCall     json.RawMessage `json:"function_call"`
	ResponseFormat   json.RawMessage `json:"response_format"`
	Stop             json.RawMessage `json:"stop"`
	TopP             json.RawMessage `json:"top_p"`
	FrequencyPenalty json.RawMessage `json:"frequency_penalty"`
	PresencePenalty  json.RawMessage `json:"presence_penalty"`
	LogitBias        json.RawMessage `json:"logit_bias"`
	Logprobs         json.RawMessage `json:"logprobs"`
	TopLogprobs      json.RawMessage `json:"top_logprobs"`
	Modalities       json.RawMessage `json:"modalities"`
	Audio            json.RawMessage `json:"audio"`
	Prediction       json.RawMessage `json:"prediction"`
	ReasoningEffort  json.RawMessage `json:"reasoning_effort"`
	Verbosity        json.RawMessage `json:"verbosity"`
	WebSearchOptions json.RawMessage `json:"web_search_options"`
}

// unsupported refuses what the request asks that the gateway cannot carry.
func (b *openAIChatRequest) unsupported() *failure {
	return refuseUnsupported(
		field{"tools", b.Tools, emptyList}, field{"functions", b.Functions, emptyList},
		field{"tool_choice", b.ToolChoice, noToolChoice}, field{"function_call", b.FunctionCall, noToolChoice},
		field{"response_format", b.ResponseFormat, textFormat}, field{"stop", b.Stop, noStop},
		field{"top_p", b.TopP, one}, field{"frequency_penalty", b.FrequencyPenalty, zero},
		field{"presence_penalty", b.PresencePenalty, zero}, field{"logit_bias", b.LogitBias, emptyObject},
		field{"logprobs", b.Logprobs, falseValue}, field{"top_logprobs", b.TopLogprobs, zero},
		field{"modalities", b.Modalities, textOnly}, field{"audio", b.Audio, nil},
		field{"prediction", b.Prediction, nil}, field{"reasoning_effort", b.ReasoningEffort, nil},
		field{"verbosity", b.Verbosity, nil}, field{"web_search_options", b.WebSearchOptions, nil})
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
	if f := body.unsupported(); f != nil {
		return c, nil, f
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
	if f = c.setOutputCap(maxTokens); f != nil {
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

func (g *Gateway) openAIAnswer(w http.ResponseWriter, c call, _ *openAIChatRequest, resp *provider.Response) {
	writeJSON(w, http.StatusOK, map[string]any{
		"id": g.openAIID(), "object": "chat.completion", "created": g.now().Unix(), "model": c.provider + "/" + c.req.Model,
		"choices": []any{map[string]any{"index": 0, "message": map[string]any{"role": "assistant", "content": resp.Text},
			"finish_reason": finishWord(openai, resp), "logprobs": nil}},
		"usage": openAIUsageOf(resp),
	})
}

func (g *Gateway) openAIID() string { return "chatcmpl-" + strconv.FormatInt(g.now().UnixNano(), 36) }

func openAIUsageOf(resp *provider.Response) openAIUsage {
	return openAIUsage{PromptTokens: resp.InputTokens, CompletionTokens: resp.OutputTokens, TotalTokens: resp.InputTokens + resp.OutputTokens}
}

func openAIStreams(body *openAIChatRequest) bool { return body.Stream }

// openAIStream is a Chat Completions stream: chat.completion.chunk events,
// the usage in a last chunk of no choices when include_usage asks for it,
// then [DONE].
type openAIStream struct {
	w       http.ResponseWriter
	id      string
	created int64
	model   string
	usage   bool
}

func (g *Gateway) openAIStream(w http.ResponseWriter, c call, body *openAIChatRequest) eventStream {
	s := &openAIStream{w: w, id: g.openAIID(), created: g.now().Unix(), model: c.provider + "/" + c.req.Model,
		usage: body.StreamOptions != nil && body.StreamOptions.IncludeUsage}
	startEvents(w)
	_ = s.chunk([]any{map[string]any{"index": 0, "delta": map[string]any{"role": "assistant", "content": ""}, "finish_reason": nil}}, nil)
	return s
}

func (s *openAIStream) chunk(choices []any, u *openAIUsage) error {
	v := map[string]any{"id": s.id, "object": "chat.completion.chunk", "created": s.created, "model": s.model, "choices": choices}
	if s.usage {
		v["usage"] = u // null on every chunk but the last, as OpenAI sends it
	}
	return writeEvent(s.w, "", v)
}

func (s *openAIStream) text(p string) error {
	if p == "" {
		return nil
	}
	return s.chunk([]any{map[string]any{"index": 0, "delta": map[string]any{"content": p}, "finish_reason": nil}}, nil)
}

func (s *openAIStream) end(resp *provider.Response) {
	_ = s.chunk([]any{map[string]any{"index": 0, "delta": map[string]any{}, "finish_reason": finishWord(openai, resp)}}, nil)
	if s.usage {
		u := openAIUsageOf(resp)
		_ = s.chunk([]any{}, &u)
	}
	_, _ = s.w.Write([]byte("data: [DONE]\n\n"))
	_ = http.NewResponseController(s.w).Flush()
}

// abort sends OpenAI's error object as an event, which its SDKs raise.
func (s *openAIStream) abort(f *failure) {
	_ = writeEvent(s.w, "", map[string]any{"error": openAIErrorBody(f)})
}

// openAIError writes a failure in OpenAI's error shape.
func (g *Gateway) openAIError(w http.ResponseWriter, f *failure) {
	if f.status == 499 {
		return // the caller left: nobody reads the answer
	}
	waitHeaders(w, f, g.now())
	writeJSON(w, f.status, map[string]any{"error": openAIErrorBody(f)})
}

// openAIErrorType is OpenAI's error type for a status.
func openAIErrorType(status int) string {
	switch {
	case status == http.StatusUnauthorized:
		return "authentication_error"
	case status == http.StatusForbidden:
		return "permission_error"
	case status == http.StatusTooManyRequests:
		return "rate_limit_error"
	case status >= 500:
		return "server_error"
	}
	return "invalid_request_error"
}

// openAIErrorBody is OpenAI's error object for a failure.
func openAIErrorBody(f *failure) map[string]any {
	return map[string]any{"message": f.message, "type": openAIErrorType(f.status), "param": nil, "code": f.code}
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

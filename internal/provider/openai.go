package provider

import (
	"cmp"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"time"
)

// openAIClient speaks Chat Completions, which most self-hosted servers
// (vLLM, llama.cpp, LocalAI) also serve. The endpoint is the API root
// including its version, e.g. https://api.openai.com/v1.
type openAIClient struct{ base }

type openAIRequest struct {
	Model    string          `json:"model"`
	Messages []openAIMessage `json:"messages"`
	// MaxTokens is the cap most servers know; OpenAI's reasoning models
	// refuse it and take MaxCompletionTokens (reasoning included).
	MaxTokens           int32        `json:"max_tokens,omitempty"`
	MaxCompletionTokens int32        `json:"max_completion_tokens,omitempty"`
	Temperature         *json.Number `json:"temperature,omitempty"`
}

// reasoningModel reports whether an OpenAI model is one of the reasoning
// models (o1, o3, o4-mini, GPT-5 and later), which refuse max_tokens with a
// 400 and take max_completion_tokens, and bill their reasoning as output.
func reasoningModel(model string) bool {
	m := strings.ToLower(model)
	if i := strings.LastIndex(m, "/"); i >= 0 { // "openai/o3" on a router
		m = m[i+1:]
	}
	for _, prefix := range []string{"o1", "o3", "o4", "gpt-5"} {
		if m == prefix || strings.HasPrefix(m, prefix+"-") || strings.HasPrefix(m, prefix+".") {
			return true
		}
	}
	return false
}

type openAIMessage struct {
	Role    string `json:"role"`
	Content string `json:"content"`
}

type openAIResponse struct {
	Model   string `json:"model"`
	Choices []struct {
		Message      openAIMessage `json:"message"`
		FinishReason string        `json:"finish_reason"`
	} `json:"choices"`
	Usage struct {
		PromptTokens     int64 `json:"prompt_tokens"`
		CompletionTokens int64 `json:"completion_tokens"`
	} `json:"usage"`
}

type openAIError struct {
	Error struct {
		Message string `json:"message"`
		Type    string `json:"type"`
		Code    any    `json:"code"`
	} `json:"error"`
}

// request is the Chat Completions body of req.
func (c *openAIClient) request(req Request) (openAIRequest, error) {
	body := openAIRequest{Model: req.Model, MaxTokens: req.MaxTokens}
	if reasoningModel(req.Model) {
		body.MaxTokens, body.MaxCompletionTokens = 0, req.MaxTokens
	}
	if req.System != "" {
		body.Messages = append(body.Messages, openAIMessage{Role: "system", Content: req.System})
	}
	for _, t := range req.History {
		body.Messages = append(body.Messages, openAIMessage{Role: role(t, "assistant"), Content: t.Text})
	}
	body.Messages = append(body.Messages, openAIMessage{Role: "user", Content: req.Prompt})
	temp, err := temperature(req.Temperature)
	if err != nil {
		return body, &Error{Class: ClassBadRequest, Message: err.Error()}
	}
	body.Temperature = temp
	return body, nil
}

func (c *openAIClient) header() http.Header {
	h := http.Header{}
	h.Set("Authorization", "Bearer "+c.cfg.APIKey)
	return h
}

func (c *openAIClient) Generate(ctx context.Context, req Request) (*Response, error) {
	body, err := c.request(req)
	if err != nil {
		return nil, err
	}
	start := c.cfg.Now()
	r, err := c.post(ctx, c.cfg.Endpoint+"/chat/completions", body, c.header())
	if err != nil {
		return nil, err
	}
	limits := c.limits(r.header)
	if r.status != http.StatusOK {
		return nil, c.errorOf(r, limits)
	}
	var out openAIResponse
	if err := json.Unmarshal(r.body, &out); err != nil {
		return nil, c.malformed(r, err)
	}
	if len(out.Choices) == 0 {
		return nil, c.fail(&Error{Class: ClassServerError, StatusCode: r.status, Message: "no choices in response"})
	}
	return &Response{
		Text:         out.Choices[0].Message.Content,
		InputTokens:  out.Usage.PromptTokens,
		OutputTokens: out.Usage.CompletionTokens,
		Latency:      c.cfg.Now().Sub(start),
		FinishReason: out.Choices[0].FinishReason,
		Model:        out.Model,
		RateLimit:    limits,
	}, nil
}

// errorOf classifies an error status by OpenAI's error body.
func (c *openAIClient) errorOf(r *reply, limits RateLimit) *Error {
	var oe openAIError
	_ = json.Unmarshal(r.body, &oe)
	e := c.statusError(r, oe.Error.Message)
	code, _ := oe.Error.Code.(string)
	switch {
	case code == "context_length_exceeded":
		e.Class = ClassContextTooLong
	case code == "insufficient_quota" || oe.Error.Type == "insufficient_quota":
		e.Class = ClassAuth // billing: no wait fixes it
	case code == "invalid_api_key":
		e.Class = ClassAuth
	}
	if e.Class == ClassRateLimited && e.RetryAt.IsZero() {
		e.RetryAt = limits.RequestsReset
	}
	e.RateLimit = limits
	return c.fail(e)
}

// openAIChunk is one event of a streamed Chat Completion.
type openAIChunk struct {
	Model   string `json:"model"`
	Choices []struct {
		Delta struct {
			Content string `json:"content"`
		} `json:"delta"`
		FinishReason string `json:"finish_reason"`
	} `json:"choices"`
	Usage *struct {
		PromptTokens     int64 `json:"prompt_tokens"`
		CompletionTokens int64 `json:"completion_tokens"`
	} `json:"usage"`
	Error *struct {
		Message string `json:"message"`
		Type    string `json:"type"`
	} `json:"error"`
}

// Stream asks for the usage chunk (stream_options.include_usage); a server
// that sends none gets its usage estimated.
func (c *openAIClient) Stream(ctx context.Context, req Request, onText func(string) error) (*Response, error) {
	body, err := c.request(req)
	if err != nil {
		return nil, err
	}
	streamed := struct {
		openAIRequest
		Stream        bool            `json:"stream"`
		StreamOptions map[string]bool `json:"stream_options"`
	}{body, true, map[string]bool{"include_usage": true}}
	start := c.cfg.Now()
	resp := &Response{}
	var text strings.Builder
	done, said := false, false
	r, err := c.openStream(ctx, c.cfg.Endpoint+"/chat/completions", streamed, c.header(), func(rd io.Reader) error {
		return readEvents(rd, func(_ string, data []byte) error {
			if string(data) == "[DONE]" {
				done = true
				return nil
			}
			var chunk openAIChunk
			if err := json.Unmarshal(data, &chunk); err != nil {
				return err
			}
			if e := chunk.Error; e != nil {
				return c.streamFailure(http.StatusInternalServerError, e.Message)
			}
			resp.Model = cmp.Or(chunk.Model, resp.Model)
			if u := chunk.Usage; u != nil {
				resp.InputTokens, resp.OutputTokens, said = u.PromptTokens, u.CompletionTokens, true
			}
			for _, ch := range chunk.Choices {
				resp.FinishReason = cmp.Or(ch.FinishReason, resp.FinishReason)
				text.WriteString(ch.Delta.Content)
				if err := relay(onText, ch.Delta.Content); err != nil {
					return err
				}
			}
			return nil
		})
	}, func() bool { return done }, func(r *reply) *Error { return c.errorOf(r, c.limits(r.header)) })
	if err != nil {
		return nil, err
	}
	resp.Text, resp.Latency, resp.RateLimit = text.String(), c.cfg.Now().Sub(start), c.limits(r.header)
	estimateUsage(resp, req, said, said)
	return resp, nil
}

// limits reads x-ratelimit-* headers; resets are durations such as "6m0s" or "20ms".
func (c *openAIClient) limits(h http.Header) RateLimit {
	rl := RateLimit{
		RequestsRemaining: headerInt(h, "x-ratelimit-remaining-requests"),
		TokensRemaining:   headerInt(h, "x-ratelimit-remaining-tokens"),
	}
	now := c.cfg.Now()
	if d, err := time.ParseDuration(strings.TrimSpace(h.Get("x-ratelimit-reset-requests"))); err == nil {
		rl.RequestsReset = now.Add(d)
	}
	if d, err := time.ParseDuration(strings.TrimSpace(h.Get("x-ratelimit-reset-tokens"))); err == nil {
		rl.TokensReset = now.Add(d)
	}
	return rl
}

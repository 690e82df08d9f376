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

// anthropicClient speaks the Messages API.
type anthropicClient struct{ base }

const anthropicVersion = "2023-06-01"

type anthropicRequest struct {
	Model       string             `json:"model"`
	MaxTokens   int32              `json:"max_tokens"`
	System      string             `json:"system,omitempty"`
	Messages    []anthropicMessage `json:"messages"`
	Temperature *json.Number       `json:"temperature,omitempty"`
}

type anthropicMessage struct {
	Role    string `json:"role"`
	Content string `json:"content"`
}

type anthropicResponse struct {
	Content []struct {
		Type string `json:"type"`
		Text string `json:"text"`
	} `json:"content"`
	Model      string `json:"model"`
	StopReason string `json:"stop_reason"`
	Usage      struct {
		InputTokens  int64 `json:"input_tokens"`
		OutputTokens int64 `json:"output_tokens"`
		// The prompt cache's tokens, apart from input_tokens: written at
		// 1.25 times the input price, read at 0.1 times.
		CacheCreationInputTokens int64 `json:"cache_creation_input_tokens"`
		CacheReadInputTokens     int64 `json:"cache_read_input_tokens"`
	} `json:"usage"`
}

// inputAtBasePrice is Anthropic's input usage in tokens at the base input
// price: cache writes cost 1.25 times, cache reads 0.1 times, rounded up
// so that cost and budgets never under-count.
func (r *anthropicResponse) inputAtBasePrice() int64 {
	u := r.Usage
	return u.InputTokens + (u.CacheCreationInputTokens*5+3)/4 + (u.CacheReadInputTokens+9)/10
}

type anthropicError struct {
	Type  string `json:"type"`
	Error struct {
		Type    string `json:"type"`
		Message string `json:"message"`
	} `json:"error"`
}

// request is the Messages body of req.
func (c *anthropicClient) request(req Request) (anthropicRequest, error) {
	body := anthropicRequest{Model: req.Model, MaxTokens: req.MaxTokens, System: req.System}
	for _, t := range req.History {
		body.Messages = append(body.Messages, anthropicMessage{Role: role(t, "assistant"), Content: t.Text})
	}
	body.Messages = append(body.Messages, anthropicMessage{Role: "user", Content: req.Prompt})
	if body.MaxTokens == 0 {
		body.MaxTokens = 1024 // required by the API
	}
	temp, err := temperature(req.Temperature)
	if err != nil {
		return body, &Error{Class: ClassBadRequest, Message: err.Error()}
	}
	body.Temperature = temp
	return body, nil
}

func (c *anthropicClient) header() http.Header {
	h := http.Header{}
	h.Set("x-api-key", c.cfg.APIKey)
	h.Set("anthropic-version", anthropicVersion)
	return h
}

func (c *anthropicClient) Generate(ctx context.Context, req Request) (*Response, error) {
	body, err := c.request(req)
	if err != nil {
		return nil, err
	}
	start := c.cfg.Now()
	r, err := c.post(ctx, c.cfg.Endpoint+"/v1/messages", body, c.header())
	if err != nil {
		return nil, err
	}
	limits := anthropicLimits(r.header)
	if r.status != http.StatusOK {
		return nil, c.errorOf(r, limits)
	}
	var out anthropicResponse
	if err := json.Unmarshal(r.body, &out); err != nil {
		return nil, c.malformed(r, err)
	}
	var text strings.Builder
	for _, b := range out.Content {
		if b.Type == "text" {
			text.WriteString(b.Text)
		}
	}
	return &Response{
		Text:         text.String(),
		InputTokens:  out.inputAtBasePrice(),
		OutputTokens: out.Usage.OutputTokens,
		Latency:      c.cfg.Now().Sub(start),
		FinishReason: out.StopReason,
		Model:        out.Model,
		RateLimit:    limits,
	}, nil
}

// errorOf classifies an error status by Anthropic's error body.
func (c *anthropicClient) errorOf(r *reply, limits RateLimit) *Error {
	var ae anthropicError
	_ = json.Unmarshal(r.body, &ae)
	e := c.statusError(r, ae.Error.Message)
	c.classify(e, ae)
	if e.Class == ClassRateLimited && e.RetryAt.IsZero() {
		e.RetryAt = limits.RequestsReset
	}
	e.RateLimit = limits
	return c.fail(e)
}

// classify refines a failure's class by Anthropic's error type.
func (c *anthropicClient) classify(e *Error, ae anthropicError) {
	switch ae.Error.Type {
	case "rate_limit_error":
		e.Class = ClassRateLimited
	case "overloaded_error", "api_error":
		e.Class = ClassServerError
	case "authentication_error", "permission_error":
		e.Class = ClassAuth
	case "invalid_request_error":
		if strings.Contains(ae.Error.Message, "prompt is too long") {
			e.Class = ClassContextTooLong
		}
	}
}

// anthropicEvent is one event of a streamed message, the fields this
// client reads from any of them.
type anthropicEvent struct {
	Message *anthropicResponse `json:"message"` // message_start
	Delta   struct {
		Type       string `json:"type"`
		Text       string `json:"text"`
		StopReason string `json:"stop_reason"`
	} `json:"delta"` // content_block_delta, message_delta
	Usage *struct {
		OutputTokens int64 `json:"output_tokens"`
	} `json:"usage"` // message_delta: cumulative
	Error struct {
		Type    string `json:"type"`
		Message string `json:"message"`
	} `json:"error"`
}

// Stream reads the input usage from message_start and the output usage
// from message_delta; an error event mid-stream is classified as the same
// error in a response body would be.
func (c *anthropicClient) Stream(ctx context.Context, req Request, onText func(string) error) (*Response, error) {
	body, err := c.request(req)
	if err != nil {
		return nil, err
	}
	streamed := struct {
		anthropicRequest
		Stream bool `json:"stream"`
	}{body, true}
	start := c.cfg.Now()
	resp := &Response{}
	var text strings.Builder
	done, inputSaid, outputSaid := false, false, false
	r, err := c.openStream(ctx, c.cfg.Endpoint+"/v1/messages", streamed, c.header(), func(rd io.Reader) error {
		return readEvents(rd, func(name string, data []byte) error {
			var ev anthropicEvent
			if err := json.Unmarshal(data, &ev); err != nil {
				return err
			}
			switch name {
			case "message_start":
				if m := ev.Message; m != nil {
					resp.Model, resp.InputTokens = m.Model, m.inputAtBasePrice()
					inputSaid = resp.InputTokens > 0
				}
			case "content_block_delta":
				if ev.Delta.Type == "text_delta" {
					text.WriteString(ev.Delta.Text)
					return relay(onText, ev.Delta.Text)
				}
			case "message_delta":
				resp.FinishReason = cmp.Or(ev.Delta.StopReason, resp.FinishReason)
				if u := ev.Usage; u != nil {
					resp.OutputTokens, outputSaid = u.OutputTokens, true
				}
			case "message_stop":
				done = true
			case "error":
				e := c.streamFailure(http.StatusInternalServerError, ev.Error.Message)
				c.classify(e, anthropicError{Error: ev.Error})
				return e
			}
			return nil
		})
	}, func() bool { return done }, func(r *reply) *Error { return c.errorOf(r, anthropicLimits(r.header)) })
	if err != nil {
		return nil, err
	}
	resp.Text, resp.Latency, resp.RateLimit = text.String(), c.cfg.Now().Sub(start), anthropicLimits(r.header)
	estimateUsage(resp, req, inputSaid, outputSaid)
	return resp, nil
}

// anthropicLimits reads anthropic-ratelimit-* headers (resets are RFC 3339).
func anthropicLimits(h http.Header) RateLimit {
	rl := RateLimit{
		RequestsRemaining: headerInt(h, "anthropic-ratelimit-requests-remaining"),
		TokensRemaining:   headerInt(h, "anthropic-ratelimit-tokens-remaining"),
	}
	rl.RequestsReset, _ = time.Parse(time.RFC3339, h.Get("anthropic-ratelimit-requests-reset"))
	rl.TokensReset, _ = time.Parse(time.RFC3339, h.Get("anthropic-ratelimit-tokens-reset"))
	return rl
}

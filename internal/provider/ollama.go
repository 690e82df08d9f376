package provider

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
)

// ollamaClient speaks Ollama's /api/generate, without streaming.
type ollamaClient struct{ base }

type ollamaRequest struct {
	Model   string `json:"model"`
	Prompt  string `json:"prompt"`
	System  string `json:"system,omitempty"`
	Stream  bool   `json:"stream"`
	Options struct {
		NumPredict  int32        `json:"num_predict,omitempty"`
		NumCtx      int32        `json:"num_ctx,omitempty"`
		Temperature *json.Number `json:"temperature,omitempty"`
	} `json:"options"`
}

type ollamaResponse struct {
	Response        string `json:"response"`
	Done            bool   `json:"done"`
	DoneReason      string `json:"done_reason"`
	PromptEvalCount int64  `json:"prompt_eval_count"`
	EvalCount       int64  `json:"eval_count"`
}

func (c *ollamaClient) Generate(ctx context.Context, req Request) (*Response, error) {
	body := ollamaRequest{Model: req.Model, Prompt: foldHistory(req), System: req.System}
	body.Options.NumPredict = req.MaxTokens
	body.Options.NumCtx = c.cfg.ContextLength
	temp, err := temperature(req.Temperature)
	if err != nil {
		return nil, &Error{Class: ClassBadRequest, Message: err.Error()}
	}
	body.Options.Temperature = temp

	start := c.cfg.Now()
	r, err := c.post(ctx, c.cfg.Endpoint+"/api/generate", body, http.Header{})
	if err != nil {
		return nil, err
	}
	if r.status != http.StatusOK {
		var oe struct {
			Error string `json:"error"`
		}
		_ = json.Unmarshal(r.body, &oe)
		return nil, c.fail(c.statusError(r, oe.Error))
	}
	var out ollamaResponse
	if err := json.Unmarshal(r.body, &out); err != nil {
		return nil, c.malformed(r, err)
	}
	return &Response{
		Text:         out.Response,
		InputTokens:  out.PromptEvalCount,
		OutputTokens: out.EvalCount,
		Latency:      c.cfg.Now().Sub(start),
		FinishReason: out.DoneReason,
		RateLimit:    unknownRateLimit(),
	}, nil
}

// foldHistory writes a conversation's earlier turns into the prompt:
// /api/generate takes one prompt, and the pools' warm-up and pacing are
// built around it.
func foldHistory(req Request) string {
	if len(req.History) == 0 {
		return req.Prompt
	}
	var b strings.Builder
	for _, t := range req.History {
		b.WriteString(role(t, "assistant") + ": " + t.Text + "\n\n")
	}
	b.WriteString("user: " + req.Prompt)
	return b.String()
}

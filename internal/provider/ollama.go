package provider

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
)

// ollamaClient speaks Ollama's /api/generate.
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

// request is the /api/generate body of req, whole or streamed.
func (c *ollamaClient) request(req Request, stream bool) (ollamaRequest, error) {
	body := ollamaRequest{Model: req.Model, Prompt: foldHistory(req), System: req.System, Stream: stream}
	body.Options.NumPredict = req.MaxTokens
	body.Options.NumCtx = c.cfg.ContextLength
	temp, err := temperature(req.Temperature)
	if err != nil {
		return body, &Error{Class: ClassBadRequest, Message: err.Error()}
	}
	body.Options.Temperature = temp
	return body, nil
}

func (c *ollamaClient) errorOf(r *reply) *Error {
	var oe struct {
		Error string `json:"error"`
	}
	_ = json.Unmarshal(r.body, &oe)
	return c.fail(c.statusError(r, oe.Error))
}

func (c *ollamaClient) Generate(ctx context.Context, req Request) (*Response, error) {
	body, err := c.request(req, false)
	if err != nil {
		return nil, err
	}
	start := c.cfg.Now()
	r, err := c.post(ctx, c.cfg.Endpoint+"/api/generate", body, http.Header{})
	if err != nil {
		return nil, err
	}
	if r.status != http.StatusOK {
		return nil, c.errorOf(r)
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

// Stream reads Ollama's stream, one JSON object a line; the last (done)
// has the finish and the usage.
func (c *ollamaClient) Stream(ctx context.Context, req Request, onText func(string) error) (*Response, error) {
	body, err := c.request(req, true)
	if err != nil {
		return nil, err
	}
	start := c.cfg.Now()
	resp := &Response{RateLimit: unknownRateLimit()}
	var text strings.Builder
	done := false
	_, err = c.openStream(ctx, c.cfg.Endpoint+"/api/generate", body, http.Header{}, func(rd io.Reader) error {
		lines := bufio.NewScanner(rd)
		lines.Buffer(make([]byte, 0, 4096), maxEventBytes)
		for lines.Scan() {
			var line struct {
				ollamaResponse
				Error string `json:"error"`
			}
			if err := json.Unmarshal(lines.Bytes(), &line); err != nil {
				return err
			}
			if line.Error != "" {
				return c.streamFailure(http.StatusInternalServerError, line.Error)
			}
			text.WriteString(line.Response)
			if err := relay(onText, line.Response); err != nil {
				return err
			}
			if line.Done {
				done, resp.FinishReason = true, line.DoneReason
				resp.InputTokens, resp.OutputTokens = line.PromptEvalCount, line.EvalCount
			}
		}
		return lines.Err()
	}, func() bool { return done }, c.errorOf)
	if err != nil {
		return nil, err
	}
	resp.Text, resp.Latency = text.String(), c.cfg.Now().Sub(start)
	said := resp.InputTokens > 0 || resp.OutputTokens > 0
	estimateUsage(resp, req, said, said)
	return resp, nil
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

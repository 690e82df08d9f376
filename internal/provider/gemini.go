package provider

import (
	"cmp"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// geminiClient speaks models/{model}:generateContent with the key in
// x-goog-api-key (never in the URL, where proxies would log it).
type geminiClient struct{ base }

type geminiPart struct {
	Text string `json:"text"`
}

type geminiContent struct {
	Role  string       `json:"role,omitempty"`
	Parts []geminiPart `json:"parts"`
}

type geminiRequest struct {
	Contents          []geminiContent `json:"contents"`
	SystemInstruction *geminiContent  `json:"systemInstruction,omitempty"`
	GenerationConfig  struct {
		MaxOutputTokens int32        `json:"maxOutputTokens,omitempty"`
		Temperature     *json.Number `json:"temperature,omitempty"`
		ThinkingConfig  *struct {
			ThinkingBudget int32 `json:"thinkingBudget"`
		} `json:"thinkingConfig,omitempty"`
	} `json:"generationConfig"`
}

type geminiResponse struct {
	Candidates []struct {
		Content      geminiContent `json:"content"`
		FinishReason string        `json:"finishReason"`
	} `json:"candidates"`
	PromptFeedback *struct {
		BlockReason string `json:"blockReason"`
	} `json:"promptFeedback"`
	UsageMetadata struct {
		PromptTokenCount     int64 `json:"promptTokenCount"`
		CandidatesTokenCount int64 `json:"candidatesTokenCount"`
		// ThoughtsTokenCount is a thinking model's thinking, billed as output.
		ThoughtsTokenCount int64 `json:"thoughtsTokenCount"`
	} `json:"usageMetadata"`
	ModelVersion string `json:"modelVersion"`
}

// geminiError is google.rpc.Status as the REST API returns it.
type geminiError struct {
	Error struct {
		Code    int    `json:"code"`
		Message string `json:"message"`
		Status  string `json:"status"`
		Details []struct {
			Type       string `json:"@type"`
			RetryDelay string `json:"retryDelay"`
			Reason     string `json:"reason"`
		} `json:"details"`
	} `json:"error"`
}

// request is the generateContent body of req.
func (c *geminiClient) request(req Request) (geminiRequest, error) {
	var body geminiRequest
	for _, t := range req.History {
		body.Contents = append(body.Contents, geminiContent{Role: role(t, "model"), Parts: []geminiPart{{Text: t.Text}}})
	}
	body.Contents = append(body.Contents, geminiContent{Role: "user", Parts: []geminiPart{{Text: req.Prompt}}})
	if req.System != "" {
		body.SystemInstruction = &geminiContent{Parts: []geminiPart{{Text: req.System}}}
	}
	body.GenerationConfig.MaxOutputTokens = req.MaxTokens
	if req.ThinkingBudget != nil {
		body.GenerationConfig.ThinkingConfig = &struct {
			ThinkingBudget int32 `json:"thinkingBudget"`
		}{*req.ThinkingBudget}
	}
	temp, err := temperature(req.Temperature)
	if err != nil {
		return body, &Error{Class: ClassBadRequest, Message: err.Error()}
	}
	body.GenerationConfig.Temperature = temp
	return body, nil
}

func (c *geminiClient) header() http.Header {
	h := http.Header{}
	h.Set("x-goog-api-key", c.cfg.APIKey)
	return h
}

func (c *geminiClient) url(model, method string) string {
	return c.cfg.Endpoint + "/v1beta/models/" + url.PathEscape(model) + ":" + method
}

func (c *geminiClient) Generate(ctx context.Context, req Request) (*Response, error) {
	body, err := c.request(req)
	if err != nil {
		return nil, err
	}
	start := c.cfg.Now()
	r, err := c.post(ctx, c.url(req.Model, "generateContent"), body, c.header())
	if err != nil {
		return nil, err
	}
	if r.status != http.StatusOK {
		return nil, c.fail(c.geminiError(r))
	}
	var out geminiResponse
	if err := json.Unmarshal(r.body, &out); err != nil {
		return nil, c.malformed(r, err)
	}
	if len(out.Candidates) == 0 {
		return nil, c.fail(&Error{Class: ClassBadRequest, StatusCode: r.status, Message: out.blocked()})
	}
	var text strings.Builder
	for _, p := range out.Candidates[0].Content.Parts {
		text.WriteString(p.Text)
	}
	return &Response{
		Text:         text.String(),
		InputTokens:  out.UsageMetadata.PromptTokenCount,
		OutputTokens: out.UsageMetadata.CandidatesTokenCount + out.UsageMetadata.ThoughtsTokenCount,
		Latency:      c.cfg.Now().Sub(start),
		FinishReason: out.Candidates[0].FinishReason,
		Model:        out.ModelVersion,
		RateLimit:    unknownRateLimit(),
	}, nil
}

// blocked says why a response has no candidate.
func (r *geminiResponse) blocked() string {
	if r.PromptFeedback != nil && r.PromptFeedback.BlockReason != "" {
		return "prompt blocked: " + r.PromptFeedback.BlockReason
	}
	return "no candidates"
}

// geminiChunk is one event of streamGenerateContent: a response whose
// usage, when present, counts the whole answer so far.
type geminiChunk struct {
	geminiResponse
	Error *struct {
		Code    int    `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
}

// Stream calls streamGenerateContent?alt=sse. Gemini marks no end of
// stream: an answer is whole once a candidate has said its finishReason.
func (c *geminiClient) Stream(ctx context.Context, req Request, onText func(string) error) (*Response, error) {
	body, err := c.request(req)
	if err != nil {
		return nil, err
	}
	start := c.cfg.Now()
	resp := &Response{RateLimit: unknownRateLimit()}
	var text strings.Builder
	said := false
	_, err = c.openStream(ctx, c.url(req.Model, "streamGenerateContent")+"?alt=sse", body, c.header(), func(rd io.Reader) error {
		return readEvents(rd, func(_ string, data []byte) error {
			var chunk geminiChunk
			if err := json.Unmarshal(data, &chunk); err != nil {
				return err
			}
			if e := chunk.Error; e != nil {
				return c.streamFailure(cmp.Or(e.Code, http.StatusInternalServerError), e.Message)
			}
			if u := chunk.UsageMetadata; u.PromptTokenCount > 0 || u.CandidatesTokenCount > 0 {
				// Each chunk's usage counts the answer so far; the last says it all.
				resp.InputTokens, resp.OutputTokens = u.PromptTokenCount, u.CandidatesTokenCount+u.ThoughtsTokenCount
				said = len(chunk.Candidates) == 0 || chunk.Candidates[0].FinishReason != ""
			}
			resp.Model = cmp.Or(chunk.ModelVersion, resp.Model)
			if len(chunk.Candidates) == 0 {
				if chunk.PromptFeedback != nil && chunk.PromptFeedback.BlockReason != "" {
					return &Error{Class: ClassBadRequest, StatusCode: http.StatusOK, Message: chunk.blocked()}
				}
				return nil
			}
			resp.FinishReason = cmp.Or(chunk.Candidates[0].FinishReason, resp.FinishReason)
			for _, p := range chunk.Candidates[0].Content.Parts {
				text.WriteString(p.Text)
				if err := relay(onText, p.Text); err != nil {
					return err
				}
			}
			return nil
		})
	}, func() bool { return resp.FinishReason != "" }, func(r *reply) *Error { return c.fail(c.geminiError(r)) })
	if err != nil {
		return nil, err
	}
	resp.Text, resp.Latency = text.String(), c.cfg.Now().Sub(start)
	estimateUsage(resp, req, said, said)
	return resp, nil
}

func (c *geminiClient) geminiError(r *reply) *Error {
	var ge geminiError
	body := r.body
	if trimmed := strings.TrimSpace(string(body)); strings.HasPrefix(trimmed, "[") {
		// Some Google front ends wrap the status in a one-element array.
		var list []json.RawMessage
		if json.Unmarshal(body, &list) == nil && len(list) > 0 {
			body = list[0]
		}
	}
	_ = json.Unmarshal(body, &ge)
	e := c.statusError(r, ge.Error.Message)
	e.RateLimit = unknownRateLimit()
	for _, d := range ge.Error.Details {
		switch {
		case strings.HasSuffix(d.Type, "google.rpc.RetryInfo") && d.RetryDelay != "":
			if delay, err := time.ParseDuration(d.RetryDelay); err == nil {
				e.RetryAt = c.cfg.Now().Add(delay)
			}
		case d.Reason == "API_KEY_INVALID":
			e.Class = ClassAuth
		}
	}
	switch {
	case ge.Error.Status == "RESOURCE_EXHAUSTED":
		e.Class = ClassRateLimited
	case ge.Error.Status == "UNAUTHENTICATED" || ge.Error.Status == "PERMISSION_DENIED":
		e.Class = ClassAuth
	case ge.Error.Status == "INVALID_ARGUMENT" && strings.Contains(ge.Error.Message, "exceeds the maximum number of tokens"):
		e.Class = ClassContextTooLong
	}
	return e
}

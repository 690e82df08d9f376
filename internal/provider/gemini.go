package provider

import (
	"context"
	"encoding/json"
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

func (c *geminiClient) Generate(ctx context.Context, req Request) (*Response, error) {
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
		return nil, &Error{Class: ClassBadRequest, Message: err.Error()}
	}
	body.GenerationConfig.Temperature = temp

	h := http.Header{}
	h.Set("x-goog-api-key", c.cfg.APIKey)
	start := c.cfg.Now()
	r, err := c.post(ctx, c.cfg.Endpoint+"/v1beta/models/"+url.PathEscape(req.Model)+":generateContent", body, h)
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
		reason := "no candidates"
		if out.PromptFeedback != nil && out.PromptFeedback.BlockReason != "" {
			reason = "prompt blocked: " + out.PromptFeedback.BlockReason
		}
		return nil, c.fail(&Error{Class: ClassBadRequest, StatusCode: r.status, Message: reason})
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

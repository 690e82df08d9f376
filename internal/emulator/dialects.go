package emulator

import (
	"cmp"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// dialect is one API's wire format.
type dialect int

const (
	gemini dialect = iota
	anthropic
	openai
	ollama
)

func (d dialect) name() string {
	return [...]string{"gemini", "anthropic", "openai", "ollama"}[d]
}

// parse recognises the API by path and reads key, model, prompt and max tokens.
func parse(r *http.Request) (call, bool) {
	if r.Method != http.MethodPost {
		return call{}, false
	}
	p := r.URL.Path
	switch {
	case strings.HasPrefix(p, "/v1beta/models/") && (strings.HasSuffix(p, ":generateContent") || strings.HasSuffix(p, ":streamGenerateContent")):
		var body struct {
			Contents []struct {
				Parts []struct {
					Text string `json:"text"`
				} `json:"parts"`
			} `json:"contents"`
			GenerationConfig struct {
				MaxOutputTokens int `json:"maxOutputTokens"`
				ThinkingConfig  *struct {
					ThinkingBudget *int `json:"thinkingBudget"`
				} `json:"thinkingConfig"`
			} `json:"generationConfig"`
		}
		model, method, _ := strings.Cut(strings.TrimPrefix(p, "/v1beta/models/"), ":")
		c := call{api: gemini, key: r.Header.Get("x-goog-api-key"), model: model,
			stream: method == "streamGenerateContent", streamUsage: true}
		if c.key == "" {
			c.key = r.URL.Query().Get("key")
		}
		if decodeJSON(r, &body) {
			for _, content := range body.Contents {
				for _, part := range content.Parts {
					c.prompt += part.Text
				}
			}
			c.maxTokens = body.GenerationConfig.MaxOutputTokens
			if tc := body.GenerationConfig.ThinkingConfig; tc != nil {
				c.thinkingBudget = tc.ThinkingBudget
			}
		}
		return c, true
	case p == "/v1/messages":
		var body struct {
			Model     string `json:"model"`
			MaxTokens int    `json:"max_tokens"`
			Stream    bool   `json:"stream"`
			Messages  []struct {
				Content string `json:"content"`
			} `json:"messages"`
		}
		c := call{api: anthropic, key: r.Header.Get("x-api-key"), streamUsage: true}
		if decodeJSON(r, &body) {
			c.model, c.maxTokens, c.stream = body.Model, body.MaxTokens, body.Stream
			for _, m := range body.Messages {
				c.prompt += m.Content
			}
		}
		return c, true
	case p == "/v1/chat/completions":
		var body struct {
			Model               string `json:"model"`
			MaxTokens           int    `json:"max_tokens"`
			MaxCompletionTokens int    `json:"max_completion_tokens"`
			Stream              bool   `json:"stream"`
			StreamOptions       struct {
				IncludeUsage bool `json:"include_usage"`
			} `json:"stream_options"`
			Messages []struct {
				Role    string `json:"role"`
				Content string `json:"content"`
			} `json:"messages"`
		}
		c := call{api: openai, key: bearer(r.Header.Get("Authorization"))}
		if decodeJSON(r, &body) {
			c.model, c.maxTokens = body.Model, cmp.Or(body.MaxCompletionTokens, body.MaxTokens)
			c.stream, c.streamUsage = body.Stream, body.StreamOptions.IncludeUsage
			if body.MaxTokens > 0 && openAIReasoning(strings.ToLower(body.Model)) {
				c.invalid = "Unsupported parameter: 'max_tokens' is not supported with this model. Use 'max_completion_tokens' instead."
			}
			for _, m := range body.Messages {
				if m.Role == "user" {
					c.prompt += m.Content
				}
			}
		}
		return c, true
	case p == "/api/generate":
		var body struct {
			Model   string `json:"model"`
			Prompt  string `json:"prompt"`
			Stream  *bool  `json:"stream"`
			Options struct {
				NumPredict int `json:"num_predict"`
			} `json:"options"`
		}
		c := call{api: ollama, key: "ollama", streamUsage: true}
		if decodeJSON(r, &body) {
			c.model, c.prompt, c.maxTokens = body.Model, body.Prompt, body.Options.NumPredict
			c.stream = body.Stream == nil || *body.Stream // Ollama streams unless told not to
		}
		return c, true
	}
	return call{}, false
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// finishWords are each API's words for an answer that ended (stop) or was
// cut at the output cap (length).
var finishWords = map[dialect][2]string{gemini: {"STOP", "MAX_TOKENS"}, anthropic: {"end_turn", "max_tokens"},
	openai: {"stop", "length"}, ollama: {"stop", "length"}}

// writeSuccess answers with the API's own usage fields: Gemini's
// thoughtsTokenCount apart from candidatesTokenCount, OpenAI's reasoning
// inside completion_tokens, Anthropic's prompt-cache counts.
func (d dialect) writeSuccess(w http.ResponseWriter, c call, text string, in int, a answer) {
	finish := finishWords[d][0]
	if a.cut {
		finish = finishWords[d][1]
	}
	if a.out == 0 {
		text = ""
	}
	switch d {
	case gemini:
		usage := map[string]any{"promptTokenCount": in, "candidatesTokenCount": a.out, "totalTokenCount": in + a.out + a.thoughts}
		if a.thoughts > 0 {
			usage["thoughtsTokenCount"] = a.thoughts
		}
		writeJSON(w, http.StatusOK, map[string]any{
			"candidates": []any{map[string]any{
				"content":      map[string]any{"role": "model", "parts": []any{map[string]any{"text": text}}},
				"finishReason": finish, "index": 0,
			}},
			"usageMetadata": usage,
			"modelVersion":  c.model,
		})
	case anthropic:
		writeJSON(w, http.StatusOK, map[string]any{
			"id": "msg_emulated", "type": "message", "role": "assistant", "model": c.model,
			"content":     []any{map[string]any{"type": "text", "text": text}},
			"stop_reason": finish, "stop_sequence": nil,
			"usage": map[string]any{"input_tokens": in, "output_tokens": a.out, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0},
		})
	case openai:
		writeJSON(w, http.StatusOK, map[string]any{
			"id": "chatcmpl-emulated", "object": "chat.completion", "model": c.model,
			"choices": []any{map[string]any{"index": 0, "finish_reason": finish,
				"message": map[string]any{"role": "assistant", "content": text}}},
			"usage": map[string]any{"prompt_tokens": in, "completion_tokens": a.out + a.thoughts, "total_tokens": in + a.out + a.thoughts,
				"completion_tokens_details": map[string]any{"reasoning_tokens": a.thoughts}},
		})
	case ollama:
		writeJSON(w, http.StatusOK, map[string]any{
			"model": c.model, "created_at": time.Now().UTC().Format(time.RFC3339Nano), "response": text,
			"done": true, "done_reason": finish, "prompt_eval_count": in, "eval_count": a.out,
		})
	}
}

// writeInvalid refuses a request the API does not take, with 400 in its
// own shape (only OpenAI's reasoning models' max_tokens so far).
func (d dialect) writeInvalid(w http.ResponseWriter, message string) {
	writeJSON(w, http.StatusBadRequest, map[string]any{"error": map[string]any{
		"message": message, "type": "invalid_request_error", "param": "max_tokens", "code": "unsupported_parameter"}})
}

// openAIReasoning reports whether a (lower-case) OpenAI model is a
// reasoning model: o1, o3, o4-mini, GPT-5 and later.
func openAIReasoning(model string) bool {
	for _, prefix := range []string{"o1", "o3", "o4", "gpt-5"} {
		if model == prefix || strings.HasPrefix(model, prefix+"-") || strings.HasPrefix(model, prefix+".") {
			return true
		}
	}
	return false
}

// writeError answers status in the API's own error shape. For 429 it sets
// Retry-After in whole seconds, rounded up, as the real services do.
func (d dialect) writeError(w http.ResponseWriter, status int, retryAfter time.Duration) {
	secs := int(math.Ceil(retryAfter.Seconds()))
	if status == http.StatusTooManyRequests {
		w.Header().Set("Retry-After", strconv.Itoa(max(1, secs)))
	}
	switch d {
	case gemini:
		body := map[string]any{"code": status, "message": geminiMessage(status), "status": geminiStatus(status)}
		switch status {
		case http.StatusTooManyRequests:
			body["details"] = []any{map[string]any{"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": fmt.Sprintf("%ds", max(1, secs))}}
		case http.StatusUnauthorized: // Gemini answers a bad key with 400 INVALID_ARGUMENT
			status = http.StatusBadRequest
			body["code"], body["status"] = status, "INVALID_ARGUMENT"
			body["details"] = []any{map[string]any{"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "API_KEY_INVALID", "domain": "googleapis.com"}}
		}
		writeJSON(w, status, map[string]any{"error": body})
	case anthropic:
		writeJSON(w, status, map[string]any{"type": "error", "error": map[string]any{"type": anthropicType(status), "message": http.StatusText(status)}})
	case openai:
		code := map[int]any{http.StatusTooManyRequests: "rate_limit_exceeded", http.StatusUnauthorized: "invalid_api_key"}[status]
		writeJSON(w, status, map[string]any{"error": map[string]any{"message": openAIMessage(status), "type": openAIType(status), "param": nil, "code": code}})
	case ollama:
		writeJSON(w, status, map[string]any{"error": strings.ToLower(http.StatusText(status))})
	}
}

func (d dialect) writeLimits(h http.Header, limit, remaining int, reset time.Duration, now time.Time) {
	switch d {
	case anthropic:
		h.Set("anthropic-ratelimit-requests-limit", strconv.Itoa(limit))
		h.Set("anthropic-ratelimit-requests-remaining", strconv.Itoa(remaining))
		h.Set("anthropic-ratelimit-requests-reset", now.Add(reset).UTC().Format(time.RFC3339))
	case openai:
		h.Set("x-ratelimit-limit-requests", strconv.Itoa(limit))
		h.Set("x-ratelimit-remaining-requests", strconv.Itoa(remaining))
		h.Set("x-ratelimit-reset-requests", reset.Round(time.Millisecond).String())
	}
}

func geminiStatus(status int) string {
	switch status {
	case http.StatusTooManyRequests:
		return "RESOURCE_EXHAUSTED"
	case http.StatusServiceUnavailable, 529:
		return "UNAVAILABLE"
	case http.StatusBadRequest:
		return "INVALID_ARGUMENT"
	case http.StatusGatewayTimeout:
		return "DEADLINE_EXCEEDED"
	}
	return "INTERNAL"
}

func geminiMessage(status int) string {
	switch status {
	case http.StatusTooManyRequests:
		return "You exceeded your current quota, please check your plan and billing details."
	case http.StatusServiceUnavailable, 529:
		return "The model is overloaded. Please try again later."
	case http.StatusUnauthorized:
		return "API key not valid. Please pass a valid API key."
	}
	return "An internal error has occurred. Please retry or report in https://developers.generativeai.google/guide/troubleshooting"
}

func anthropicType(status int) string {
	switch status {
	case http.StatusTooManyRequests:
		return "rate_limit_error"
	case 529:
		return "overloaded_error"
	case http.StatusUnauthorized:
		return "authentication_error"
	case http.StatusBadRequest:
		return "invalid_request_error"
	}
	return "api_error"
}

func openAIType(status int) string {
	switch status {
	case http.StatusTooManyRequests:
		return "requests"
	case http.StatusUnauthorized, http.StatusBadRequest:
		return "invalid_request_error"
	}
	return "server_error"
}

func openAIMessage(status int) string {
	switch status {
	case http.StatusTooManyRequests:
		return "Rate limit reached for requests. Please try again later."
	case http.StatusUnauthorized:
		return "Incorrect API key provided."
	}
	return "The server had an error while processing your request. Sorry about that!"
}

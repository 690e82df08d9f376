package emulator

import (
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
	case strings.HasPrefix(p, "/v1beta/models/") && strings.HasSuffix(p, ":generateContent"):
		var body struct {
			Contents []struct {
				Parts []struct {
					Text string `json:"text"`
				} `json:"parts"`
			} `json:"contents"`
			GenerationConfig struct {
				MaxOutputTokens int `json:"maxOutputTokens"`
			} `json:"generationConfig"`
		}
		c := call{api: gemini, key: r.Header.Get("x-goog-api-key"),
			model: strings.TrimSuffix(strings.TrimPrefix(p, "/v1beta/models/"), ":generateContent")}
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
		}
		return c, true
	case p == "/v1/messages":
		var body struct {
			Model     string `json:"model"`
			MaxTokens int    `json:"max_tokens"`
			Messages  []struct {
				Content string `json:"content"`
			} `json:"messages"`
		}
		c := call{api: anthropic, key: r.Header.Get("x-api-key")}
		if decodeJSON(r, &body) {
			c.model, c.maxTokens = body.Model, body.MaxTokens
			for _, m := range body.Messages {
				c.prompt += m.Content
			}
		}
		return c, true
	case p == "/v1/chat/completions":
		var body struct {
			Model     string `json:"model"`
			MaxTokens int    `json:"max_tokens"`
			Messages  []struct {
				Role    string `json:"role"`
				Content string `json:"content"`
			} `json:"messages"`
		}
		c := call{api: openai, key: bearer(r.Header.Get("Authorization"))}
		if decodeJSON(r, &body) {
			c.model, c.maxTokens = body.Model, body.MaxTokens
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
			Options struct {
				NumPredict int `json:"num_predict"`
			} `json:"options"`
		}
		c := call{api: ollama, key: "ollama"}
		if decodeJSON(r, &body) {
			c.model, c.prompt, c.maxTokens = body.Model, body.Prompt, body.Options.NumPredict
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

func (d dialect) writeSuccess(w http.ResponseWriter, c call, text string, in, out int) {
	switch d {
	case gemini:
		writeJSON(w, http.StatusOK, map[string]any{
			"candidates": []any{map[string]any{
				"content":      map[string]any{"role": "model", "parts": []any{map[string]any{"text": text}}},
				"finishReason": "STOP", "index": 0,
			}},
			"usageMetadata": map[string]any{"promptTokenCount": in, "candidatesTokenCount": out, "totalTokenCount": in + out},
			"modelVersion":  c.model,
		})
	case anthropic:
		writeJSON(w, http.StatusOK, map[string]any{
			"id": "msg_emulated", "type": "message", "role": "assistant", "model": c.model,
			"content":     []any{map[string]any{"type": "text", "text": text}},
			"stop_reason": "end_turn", "stop_sequence": nil,
			"usage": map[string]any{"input_tokens": in, "output_tokens": out},
		})
	case openai:
		writeJSON(w, http.StatusOK, map[string]any{
			"id": "chatcmpl-emulated", "object": "chat.completion", "model": c.model,
			"choices": []any{map[string]any{"index": 0, "finish_reason": "stop",
				"message": map[string]any{"role": "assistant", "content": text}}},
			"usage": map[string]any{"prompt_tokens": in, "completion_tokens": out, "total_tokens": in + out},
		})
	case ollama:
		writeJSON(w, http.StatusOK, map[string]any{
			"model": c.model, "created_at": time.Now().UTC().Format(time.RFC3339Nano), "response": text,
			"done": true, "done_reason": "stop", "prompt_eval_count": in, "eval_count": out,
		})
	}
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

package provider

import (
	"context"
	"fmt"
	"time"
)

// Type names an API.
type Type string

// The APIs this package speaks.
const (
	Gemini    Type = "Gemini"
	Anthropic Type = "Anthropic"
	OpenAI    Type = "OpenAI"
	Ollama    Type = "Ollama"
)

// Request is one generation call.
type Request struct {
	// Model to call; required.
	Model string
	// Prompt is the user text; required.
	Prompt string
	// System is optional system text.
	System string
	// History holds the earlier turns of a conversation, oldest first,
	// sent before Prompt (a gateway call's messages); batches send none.
	History []Turn
	// MaxTokens bounds the output; 0 leaves the API's default (Anthropic
	// requires one, so 1024 is sent there).
	MaxTokens int32
	// Temperature is a decimal string such as "0.2"; empty leaves the default.
	Temperature string
	// ThinkingBudget, when set, is Gemini's thinkingConfig.thinkingBudget:
	// the most tokens a thinking model may think (0 turns thinking off
	// where the model allows it, -1 lets the model decide). Thinking
	// tokens are billed as output and counted in OutputTokens.
	ThinkingBudget *int32
}

// Turn is one earlier message of a conversation.
type Turn struct {
	// Assistant is true for the model's own earlier answers, false for the user's messages.
	Assistant bool
	Text      string
}

// Chars is the length in bytes of everything a request sends as input,
// each earlier turn counted TurnTemplateBytes longer for the template the
// API wraps it in: the base of the conservative token estimates that quota
// and budgets reserve (cost.WorstInputTokens).
func (r Request) Chars() int {
	n := len(r.Prompt) + len(r.System)
	for _, t := range r.History {
		n += len(t.Text) + TurnTemplateBytes
	}
	return n
}

// TurnTemplateBytes bounds the tokens a chat template adds around one
// message (role markers, separators: 3 to 8 tokens in the APIs' templates).
const TurnTemplateBytes = 16

// Response is a successful call's result.
type Response struct {
	Text         string
	InputTokens  int64
	OutputTokens int64
	Latency      time.Duration
	// FinishReason is the API's own word (stop, end_turn, STOP, length...);
	// Finish says it in one vocabulary.
	FinishReason string
	// Model is the model that answered, as the API names it (OpenAI's and
	// Anthropic's model, Gemini's modelVersion); empty when it did not say.
	Model string
	// RateLimit is what the server said about the remaining quota.
	RateLimit RateLimit
	// UsageEstimated is true when a streamed answer came without usage
	// and InputTokens and OutputTokens are bounds from its lengths.
	UsageEstimated bool
}

// RateLimit is what a server's rate-limit headers said. Remaining is -1
// when the server did not say.
type RateLimit struct {
	RequestsRemaining int64
	RequestsReset     time.Time
	TokensRemaining   int64
	TokensReset       time.Time
}

// Class classifies a failed call.
type Class string

// The classes of failure.
const (
	// ClassRateLimited: the server refused for quota (HTTP 429); RetryAt says until when.
	ClassRateLimited Class = "RateLimited"
	// ClassServerError: HTTP 5xx or 529 overloaded, or a malformed success body.
	ClassServerError Class = "ServerError"
	// ClassTimeout: no answer before the deadline.
	ClassTimeout Class = "Timeout"
	// ClassConnection: the connection failed or was reset.
	ClassConnection Class = "ConnectionFailed"
	// ClassBadRequest: the server refused the request itself (4xx); not retried.
	ClassBadRequest Class = "BadRequest"
	// ClassAuth: the key was refused or the account cannot pay (401, 403,
	// insufficient quota); not retried, surfaces as a provider condition.
	ClassAuth Class = "AuthFailed"
	// ClassContextTooLong: the prompt is longer than the model takes; not retried.
	ClassContextTooLong Class = "ContextTooLong"
	// ClassCanceled: the caller canceled the call.
	ClassCanceled Class = "Canceled"
)

// Error is a classified failure. Its message never contains the API key.
type Error struct {
	Class Class
	// StatusCode is the HTTP status, 0 when none was received.
	StatusCode int
	// Message is the server's or transport's explanation, key redacted.
	Message string
	// RetryAt is when the server allows the next call (RateLimited), zero if unsaid.
	RetryAt time.Time
	// RateLimit is what the server's headers said, if anything.
	RateLimit RateLimit
}

func (e *Error) Error() string {
	if e.StatusCode != 0 {
		return fmt.Sprintf("%s (HTTP %d): %s", e.Class, e.StatusCode, e.Message)
	}
	return fmt.Sprintf("%s: %s", e.Class, e.Message)
}

// Retryable reports whether sending the same request again can succeed.
func (e *Error) Retryable() bool {
	switch e.Class {
	case ClassRateLimited, ClassServerError, ClassTimeout, ClassConnection:
		return true
	}
	return false
}

// Client calls one provider API.
type Client interface {
	// Generate runs one call. A failure is always an *Error.
	Generate(ctx context.Context, req Request) (*Response, error)
}

// role names a turn's author in an API's words: the model's own is
// assistant (Gemini says model), the caller's is user.
func role(t Turn, assistant string) string {
	if t.Assistant {
		return assistant
	}
	return "user"
}

// Finish is why an answer ended, in one vocabulary for every API.
type Finish string

// The finishes.
const (
	// FinishStop: the model ended its answer (or hit a stop sequence).
	FinishStop Finish = "stop"
	// FinishLength: the answer was cut at the output cap (maxTokens).
	FinishLength Finish = "length"
	// FinishSafety: the provider withheld or cut the answer for its
	// content policy.
	FinishSafety Finish = "safety"
	// FinishOther: any other reason the API gave; FinishReason has it.
	FinishOther Finish = "other"
)

// Finish maps the API's finish reason to one vocabulary.
func (r *Response) Finish() Finish {
	switch r.FinishReason {
	case "stop", "STOP", "end_turn", "stop_sequence", "tool_use", "tool_calls", "":
		return FinishStop
	case "length", "MAX_TOKENS", "max_tokens", "model_context_window_exceeded":
		return FinishLength
	case "content_filter", "SAFETY", "RECITATION", "BLOCKLIST", "PROHIBITED_CONTENT", "SPII", "IMAGE_SAFETY", "refusal":
		return FinishSafety
	}
	return FinishOther
}

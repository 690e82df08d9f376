package emulator

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Limit is a quota of Requests per rolling Period, per API key.
type Limit struct {
	Requests int
	Period   time.Duration
}

// TokenLimit is a quota of Tokens per rolling Period, per API key. A
// request is charged its cap when it arrives, as the real APIs count it
// (Anthropic's OTPM its max_tokens; OpenAI's TPM its prompt and
// max_tokens), with its answer's length where it sends no cap, and
// corrected to what it used when it is answered.
type TokenLimit struct {
	Tokens int
	Period time.Duration
}

// Fault is an injected failure.
type Fault string

// The faults the emulator injects.
const (
	FaultNone        Fault = ""
	FaultRateLimit   Fault = "429"
	FaultServerError Fault = "500"
	FaultUnavailable Fault = "503"
	FaultOverloaded  Fault = "529"
	FaultHang        Fault = "hang"
	FaultReset       Fault = "reset"
	FaultMalformed   Fault = "malformed"
	// FaultCut starts the answer and drops the connection in its middle:
	// after the first event of a stream, halfway through a JSON body.
	FaultCut Fault = "cut"
)

// FaultRates are the probabilities, each in [0, 1], that a request within
// quota gets each fault. They are drawn in this order from one number.
type FaultRates struct {
	RateLimit, ServerError, Unavailable, Overloaded, Hang, Reset, Malformed, Cut float64
}

// Config configures a Server.
type Config struct {
	// Limits are enforced per API key (Ollama requests share one key).
	Limits []Limit
	// OutputTokenLimits, TokenLimits and InputTokenLimits are enforced per
	// API key too, over output tokens, prompt and output tokens, and prompt
	// tokens: a request that does not fit is refused with 429, as a full
	// window is.
	OutputTokenLimits, TokenLimits, InputTokenLimits []TokenLimit
	// Latency delays every answer.
	Latency time.Duration
	// Faults are injected at random with these rates.
	Faults FaultRates
	// Script injects these faults into the first requests within quota, in
	// order, before the random rates apply ("" means no fault).
	Script []Fault
	// RetryAfter is what an injected 429 asks the client to wait; default 2s.
	RetryAfter time.Duration
	// HangFor bounds a hang; default 30s. A client timeout ends it sooner.
	HangFor time.Duration
	// Keys, when set, are the only API keys accepted; otherwise any non-empty key is.
	Keys []string
	// Seed makes the random faults repeatable.
	Seed uint64
	// Now reads the clock; nil uses time.Now.
	Now func() time.Time
	// OnRequest, when set, sees every request's record as it is logged, in
	// log order (the emulator's --log-requests streams them to stdout).
	OnRequest func(Record)
	// ChunkDelay spaces a stream's events, as a model writes its tokens.
	ChunkDelay time.Duration
	// BeforeChunk, when set, is called before each event of a stream after
	// the first, with the request's context (tests hold a stream there
	// until its first piece has reached its reader, or watch it end).
	BeforeChunk func(ctx context.Context, chunk int)
	// NoStreamUsage leaves the usage out of every stream, as some
	// OpenAI-compatible servers do.
	NoStreamUsage bool
}

// ParseLimits parses "10/10s,600/1h" into Limits.
func ParseLimits(s string) ([]Limit, error) {
	var out []Limit
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		n, per, ok := strings.Cut(part, "/")
		if !ok {
			return nil, fmt.Errorf("limit %q: want N/duration, such as 10/1m", part)
		}
		requests, err := strconv.Atoi(n)
		if err != nil || requests < 1 {
			return nil, fmt.Errorf("limit %q: %q is not a positive count", part, n)
		}
		period, err := time.ParseDuration(per)
		if err != nil || period <= 0 {
			return nil, fmt.Errorf("limit %q: %q is not a positive duration", part, per)
		}
		out = append(out, Limit{Requests: requests, Period: period})
	}
	return out, nil
}

// ParseScript parses "429,500,,hang" into Faults.
func ParseScript(s string) ([]Fault, error) {
	if s == "" {
		return nil, nil
	}
	var out []Fault
	for _, f := range strings.Split(s, ",") {
		switch fault := Fault(strings.TrimSpace(f)); fault {
		case FaultNone, FaultRateLimit, FaultServerError, FaultUnavailable, FaultOverloaded, FaultHang, FaultReset, FaultMalformed, FaultCut:
			out = append(out, fault)
		default:
			return nil, fmt.Errorf("unknown fault %q (want 429, 500, 503, 529, hang, reset, malformed, cut or empty)", f)
		}
	}
	return out, nil
}

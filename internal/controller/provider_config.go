package controller

import (
	"math/big"
	"time"

	"k8s.io/utils/ptr"

	llmv1 "github.com/llmquota/llmquota/api/v1alpha1"
	"github.com/llmquota/llmquota/internal/cost"
	"github.com/llmquota/llmquota/internal/dispatch"
	"github.com/llmquota/llmquota/internal/ratewindow"
)

// Window names used in the quota engine and in status.
const (
	windowMinute = "minute"
	windowHour   = "hour"
	windowDay    = "day"
	windowTokens = "tokensPerMinute"
	// The further token windows, named as their fields and status entries.
	windowTokensPerDay    = "tokensPerDay"
	windowInputPerMinute  = "inputTokensPerMinute"
	windowOutputPerMinute = "outputTokensPerMinute"
)

// circuitThreshold consecutive failures send new items to the fallback.
const circuitThreshold = 5

// degradedThreshold consecutive failures raise the Degraded condition.
const degradedThreshold = 3

// dispatchConfig turns an LLMProvider's spec into the dispatcher's config
// (without the client and the persistence hook, which need I/O).
func dispatchConfig(p *llmv1.LLMProvider) dispatch.Config {
	spec := &p.Spec
	lim := ratewindow.Config{Windows: requestWindows(spec.Limits.RequestsPerMinute, spec.Limits.RequestsPerHour, spec.Limits.RequestsPerDay),
		Tokens:       tokensWindow(spec.Limits.TokensPerMinute),
		TokenWindows: tokenWindows(spec.Limits.TokensPerDay, spec.Limits.InputTokensPerMinute, spec.Limits.OutputTokensPerMinute)}
	lim.MinInterval = llmv1.Milliseconds(spec.Limits.MinIntervalMilliseconds, 0)
	lim.MaxConcurrency = int(max(1, spec.Limits.MaxConcurrency))
	maxRetries, rateLimitedWait := 3, time.Hour
	lim.InitialBackoff, lim.MaxBackoff = 2*time.Second, 60*time.Second
	if r := spec.Retry; r != nil {
		if r.MaxRetries != nil {
			maxRetries = int(*r.MaxRetries)
		}
		if r.MaxRateLimitedWaitSeconds != nil {
			rateLimitedWait = time.Duration(*r.MaxRateLimitedWaitSeconds) * time.Second
		}
		lim.InitialBackoff = llmv1.Milliseconds(r.InitialBackoffMilliseconds, lim.InitialBackoff)
		lim.MaxBackoff = llmv1.Milliseconds(r.MaxBackoffMilliseconds, lim.MaxBackoff)
	}
	lim.MaxBackoff = max(lim.MaxBackoff, lim.InitialBackoff)
	lim.Jitter = 0.2

	cfg := dispatch.Config{
		Name: p.Name, Limits: lim, DefaultModel: spec.Model, MaxRetries: maxRetries, MaxRateLimitedWait: rateLimitedWait,
		CircuitThreshold: circuitThreshold, ReserveBlock: reserveBlock(lim), LearnLimits: spec.Limits.Adaptive == llmv1.AdaptiveLimitsAIMD,
		// OpenAI's TPM counts max_tokens when a call starts (Anthropic's
		// OTPM does too: windows of output alone are charged the whole cap
		// for every provider); Gemini's TPM counts input.
		CapCountedAtStart: spec.Type == llmv1.ProviderOpenAI,
		CrashRepay:        crashRepayOf(spec.CrashRepay),
	}
	if s := spec.Shares; s != nil {
		cfg.Shares.DefaultWeight = ptr.Deref(s.DefaultWeight, 1)
		cfg.Shares.DefaultBudgets = budgetsOf(s.DefaultBudgets)
		cfg.Shares.DefaultLimits = scopeLimits(s.DefaultLimits)
		cfg.Shares.Weights = make(map[string]int32, len(s.Namespaces))
		cfg.Shares.Budgets = map[string]cost.Budgets{}
		cfg.Shares.Limits = map[string]*ratewindow.Config{}
		for _, n := range s.Namespaces {
			if n.Weight != nil {
				cfg.Shares.Weights[n.Namespace] = *n.Weight
			}
			if n.Budgets != nil {
				cfg.Shares.Budgets[n.Namespace] = budgetsOf(n.Budgets)
			}
			if n.Limits != nil {
				cfg.Shares.Limits[n.Namespace] = scopeLimits(n.Limits)
			}
		}
	}
	if len(spec.ModelLimits) > 0 {
		cfg.ModelLimits = make(map[string]*ratewindow.Config, len(spec.ModelLimits))
		for _, m := range spec.ModelLimits {
			cfg.ModelLimits[m.Model] = scopeLimits(&m.Limits)
		}
	}
	if i := spec.Interactive; i != nil {
		cfg.InteractiveReserve = int(ptr.Deref(i.ReservedPercent, 0))
		cfg.StandbyCalls = int(ptr.Deref(i.StandbyCalls, 0))
	}
	if spec.MaxPromptLength != nil {
		cfg.MaxPromptLength = int(*spec.MaxPromptLength)
	}
	if spec.Fallback != nil {
		cfg.Fallback = string(spec.Fallback.Name)
	}
	if c := spec.Cost; c != nil {
		cfg.Prices = cost.Prices{InputPerMillion: string(c.InputPerMillionTokens), OutputPerMillion: string(c.OutputPerMillionTokens), PerRequest: string(c.PerRequest)}
		cfg.Budgets = budgetsOf(&c.Budgets)
	}
	return cfg
}

// scopeLimits turns a namespace's or a model's limits into its own quota
// windows; nil without limits.
func scopeLimits(l *llmv1.ScopeLimits) *ratewindow.Config {
	if l == nil {
		return nil
	}
	return &ratewindow.Config{MaxConcurrency: int(ptr.Deref(l.MaxConcurrency, 0)),
		Windows: requestWindows(l.RequestsPerMinute, l.RequestsPerHour, l.RequestsPerDay), Tokens: tokensWindow(l.TokensPerMinute),
		TokenWindows: tokenWindows(l.TokensPerDay, l.InputTokensPerMinute, l.OutputTokensPerMinute)}
}

// requestWindows are the rolling minute, hour and day windows of the
// limits that are set.
func requestWindows(perMinute, perHour, perDay *int32) []ratewindow.Window {
	var ws []ratewindow.Window
	for _, w := range []struct {
		name   string
		n      *int32
		period time.Duration
	}{{windowMinute, perMinute, time.Minute}, {windowHour, perHour, time.Hour}, {windowDay, perDay, 24 * time.Hour}} {
		if w.n != nil {
			ws = append(ws, ratewindow.Window{Name: w.name, Limit: int64(*w.n), Period: w.period})
		}
	}
	return ws
}

// tokensWindow is the rolling minute of tokens, nil when unset.
func tokensWindow(perMinute *int64) *ratewindow.Window {
	if perMinute == nil {
		return nil
	}
	return &ratewindow.Window{Name: windowTokens, Limit: *perMinute, Period: time.Minute}
}

// tokenWindows are the token windows beside tokens per minute: tokens
// per day, input and output tokens per minute, those that are set.
func tokenWindows(perDay, inputPerMinute, outputPerMinute *int64) []ratewindow.TokenWindow {
	var ws []ratewindow.TokenWindow
	for _, w := range []struct {
		name   string
		n      *int64
		period time.Duration
		kind   ratewindow.TokenKind
	}{{windowTokensPerDay, perDay, 24 * time.Hour, ratewindow.TokensTotal},
		{windowInputPerMinute, inputPerMinute, time.Minute, ratewindow.TokensInput},
		{windowOutputPerMinute, outputPerMinute, time.Minute, ratewindow.TokensOutput}} {
		if w.n != nil {
			ws = append(ws, ratewindow.TokenWindow{Window: ratewindow.Window{Name: w.name, Limit: *w.n, Period: w.period}, Kind: w.kind})
		}
	}
	return ws
}

// maxReserveBlock caps a quota reservation: each block costs one status
// write, so at 10,000 calls a block a provider at 1,000 calls/s writes
// once every 10 s, and a 100,000-item batch costs 10 writes.
const maxReserveBlock = 10_000

// reserveBlock sizes the quota reservation: a fifth of the smallest window
// (so a crash loses at most that much of any window), between 1 and
// maxReserveBlock calls.
func reserveBlock(lim ratewindow.Config) int64 {
	smallest := int64(5 * maxReserveBlock)
	for _, w := range lim.Windows {
		smallest = min(smallest, w.Limit)
	}
	return max(1, min(maxReserveBlock, smallest/5))
}

func thresholds(p *llmv1.LLMProvider) cost.Thresholds {
	if p.Spec.Cost == nil {
		return cost.Thresholds{}
	}
	return cost.Thresholds{Daily: string(p.Spec.Cost.Alerts.Daily), Monthly: string(p.Spec.Cost.Alerts.Monthly)}
}

func budgetsOf(b *llmv1.CostBudgets) cost.Budgets {
	if b == nil {
		return cost.Budgets{}
	}
	return cost.Budgets{Daily: string(b.Daily), Monthly: string(b.Monthly)}
}

// crashRepayOf is spec.crashRepay as the runtime bounds it; a cost the API
// server let through but that does not parse bounds nothing.
func crashRepayOf(r *llmv1.CrashRepay) dispatch.RepayBound {
	if r == nil {
		return dispatch.RepayBound{}
	}
	b := dispatch.RepayBound{Calls: int(ptr.Deref(r.MaxCalls, 0))}
	if c, ok := new(big.Rat).SetString(string(r.MaxCost)); ok && r.MaxCost != "" {
		b.Cost = c
	}
	return b
}

package dispatch

import (
	"context"
	"math/big"
	"time"

	"github.com/llmquota/llmquota/internal/cost"
	"github.com/llmquota/llmquota/internal/provider"
	"github.com/llmquota/llmquota/internal/ratewindow"
)

// Item is one prompt to send.
type Item struct {
	ID     string
	Prompt string
	// Attempts made so far (across restarts it starts again at 0).
	Attempts int
	// requeued is when a failed attempt put the item back in the queue.
	requeued time.Time
	// waits counts the attempts answered "come back at T" (waitedOut),
	// which spend no retry; firstWait is the first of them.
	waits     int
	firstWait time.Time
}

// Params are the generation parameters of a batch.
type Params struct {
	Model, System string
	MaxTokens     int32
	Temperature   string
	// ThinkingBudget bounds a thinking model's thinking (Gemini); nil
	// leaves the model's default.
	ThinkingBudget *int32
	// TruncatedFails fails an answer cut at the output cap (Truncated).
	TruncatedFails bool
}

// Result is an item's final outcome.
type Result struct {
	ID string
	// Prompt is the prompt sent (the item's own string, not a copy).
	Prompt       string
	Succeeded    bool
	Output       string
	TokensIn     int64
	TokensOut    int64
	Attempts     int
	Latency      time.Duration
	Provider     string
	ErrorClass   string
	ErrorMessage string
	// Model is the model that answered, as the provider named it.
	Model string
	// Finish is why the answer ended (stop, length, safety, other).
	Finish provider.Finish
	// Cost is the answer's cost at the provider's prices; nil when failed.
	Cost *big.Rat
}

// Batch is the work of one InferenceBatch handed to a dispatcher.
type Batch struct {
	// Key identifies the batch ("namespace/name").
	Key       string
	Namespace string
	Priority  int32
	// Size and Delay shape the batch's flow: Size items are sent, then the
	// next Size wait until those finished and Delay passed.
	Size  int
	Delay time.Duration
	// GroupsDone counts groups finished before this submission (a restart).
	GroupsDone int
	Params     Params
	// Items are the items still to send, in order. Submit takes the slice
	// over: the caller must not use it afterwards.
	Items []Item
	// Feed, when set, brings more items after Items, in order, until it is
	// closed: a large input is read as the batch runs instead of being held
	// whole. Its sender calls Wake after each send, so that a sleeping
	// dispatcher sees the item.
	Feed <-chan Item
	// OnResult receives each item's final result, from any goroutine.
	OnResult func(Result)
	// OnChange, when set, is called (from the dispatcher's goroutine, never
	// under its lock) when what holds the batch back changes: a quota
	// window fills or frees, a backoff or Retry-After starts or ends, the
	// Ollama pool loses or regains its last warm endpoint; and once when
	// the dispatcher stops with the batch still in it. Progress is pushed
	// to its owner this way instead of being polled.
	OnChange func()
}

// Config is what a dispatcher needs to know about its provider.
type Config struct {
	// Name of the LLMProvider.
	Name string
	// Limits are the quota; RequireReservation is set by the dispatcher.
	Limits ratewindow.Config
	// ModelLimits are models' own windows, tokens and concurrency, under
	// Limits (which still hold for all models together), keyed by the
	// model a call names (DefaultModel when it names none).
	ModelLimits map[string]*ratewindow.Config
	// CapCountedAtStart says the provider counts a call's whole output cap
	// against its token windows when the call starts (OpenAI's TPM counts
	// max_tokens): batch items are then charged their whole cap in every
	// window that counts output, not the typicalOutput estimate. Windows
	// of output tokens alone are charged the whole cap in any case, as
	// Anthropic counts OTPM.
	CapCountedAtStart bool
	// LearnLimits lowers the request windows and concurrency in use when
	// the provider answers 429 to calls they allowed, and raises them
	// again per clean window, never above Limits (internal/aimd).
	LearnLimits bool
	// Client calls the provider.
	Client provider.Client
	// Endpoints, when set, replace Client: each call goes to the next warm
	// endpoint of the pool, and none is sent while no endpoint is warm.
	Endpoints *Endpoints
	// DefaultModel is used when a batch names no model.
	DefaultModel string
	// Shares weighs namespaces against each other when they compete for
	// the provider (see fairness).
	Shares Shares
	// InteractiveReserve is the percent of every limit batches leave to
	// interactive calls (Acquire), which may use everything.
	InteractiveReserve int
	// StandbyCalls bounds the standby grants one Lend gives (see Lend);
	// 0 lends none.
	StandbyCalls int
	// MaxRetries bounds the retries of one item after its first attempt.
	// A rate-limit answer that says when to come back does not count
	// (waitedOut), for up to MaxRateLimitedWait from the first.
	MaxRetries int
	// MaxRateLimitedWait bounds how long an item waits through rate-limit
	// answers without spending retries; 0 means an hour.
	MaxRateLimitedWait time.Duration
	// MaxPromptLength sends longer prompts to the fallback; 0 means no limit.
	MaxPromptLength int
	// Fallback names the provider that takes what this one cannot serve.
	Fallback string
	// CircuitThreshold is how many consecutive failures open the circuit,
	// sending new items to the fallback while the backoff holds.
	CircuitThreshold int
	// Prices price the calls.
	Prices cost.Prices
	// CallTimeout bounds one call.
	CallTimeout time.Duration
	// ReserveBlock is how many calls are reserved, and persisted, at once.
	ReserveBlock int64
	// Budgets are hard spending limits (see cost.Meter.Admit); with any set,
	// PersistCost must be set too.
	Budgets cost.Budgets
	// CrashRepay bounds the answers of the provider's batches whose
	// results may wait for their write at once (spec.crashRepay); the
	// batches' runtime reads it (Dispatcher.CrashRepay).
	CrashRepay RepayBound
	// PersistCost writes the spend committed under Budgets before calls
	// beyond the last commitment are sent.
	PersistCost func(ctx context.Context, committed cost.Period) error
	// PersistNamespaceCost writes a namespace's committed spend under its
	// budgets (Shares) before its calls beyond it are sent; nil keeps it
	// in memory (tests).
	PersistNamespaceCost func(ctx context.Context, namespace string, committed cost.Period) error
	// OnCall, when set, sees each call as it settles: its outcome
	// ("Succeeded" or the failure class) and how long it took. It is called
	// from the call's goroutine, never under the dispatcher's lock.
	OnCall func(outcome string, took time.Duration)
	// OnSend, when set, sees how long each call waited before it was sent:
	// from when the batch's pacing (batchSize, batchDelay) let the item go,
	// or its retry was queued, to the call's start. The wait is the quota,
	// backoff, concurrency, fairness and suspension. Called outside the lock.
	OnSend func(waited time.Duration)
	// OnUsage, when set, sees the tokens and cost of each answered call,
	// with the namespace it was made for (the batch's, or the gateway
	// caller's) and its lane. Called under the dispatcher's lock: it must
	// not call the dispatcher (a metric's increment).
	OnUsage func(Usage)
	// OnInteractive, when set, sees each decision of the interactive lane:
	// granted or refused. It is called under the dispatcher's lock and
	// must not call the dispatcher (a metric's increment).
	OnInteractive func(granted bool)
	// Persist writes a quota snapshot before its reserved calls are spent.
	// Nil disables reservation (tests, or a deliberately ephemeral provider).
	Persist func(ctx context.Context, snapshot []byte) error
}

// Lookup finds another provider's dispatcher (for fallbacks).
type Lookup func(name string) *Dispatcher

// Lanes a call is made in.
const (
	LaneBatch       = "batch"
	LaneInteractive = "interactive"
)

// Usage is what one answered call used, for whom.
type Usage struct {
	// Namespace is the batch's, or the gateway caller's ("" for a caller
	// that is not a ServiceAccount).
	Namespace string
	// Lane is LaneBatch or LaneInteractive.
	Lane                      string
	InputTokens, OutputTokens int64
	// Cost is at the provider's prices; 0 when it has none.
	Cost *big.Rat
}

// RepayBound bounds what a crash may pay for twice: the answers whose
// results wait for their write, in calls and in money. A zero Calls and a
// nil Cost bound nothing.
type RepayBound struct {
	Calls int
	Cost  *big.Rat
}

// Reached reports whether calls answers costing cost reach the bound.
func (b RepayBound) Reached(calls int, cost *big.Rat) bool {
	return (b.Calls > 0 && calls >= b.Calls) || (b.Cost != nil && cost != nil && cost.Cmp(b.Cost) >= 0)
}

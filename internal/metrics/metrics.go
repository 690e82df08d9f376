// Package metrics defines llmquota's Prometheus metrics, registered in
// controller-runtime's registry so the manager's /metrics serves them.
package metrics

import (
	"github.com/prometheus/client_golang/prometheus"
	"sigs.k8s.io/controller-runtime/pkg/metrics"
)

var (
	// RequestsTotal counts provider calls as they settle, by provider and
	// outcome (Succeeded, RateLimited, ServerError, Timeout,
	// ConnectionFailed, BadRequest, AuthFailed, ContextTooLong, Canceled).
	// A counter of the process: a provider edit or a new dispatcher does not
	// reset it.
	RequestsTotal = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "llmquota_provider_requests_total",
		Help: "Provider calls made by this manager, counted as they settle, by provider and outcome (Succeeded, RateLimited, ServerError, Timeout, ConnectionFailed, BadRequest, AuthFailed, ContextTooLong, Canceled).",
	}, []string{"provider", "outcome"})
	// CallDuration is how long provider calls take, by provider and outcome.
	CallDuration = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "llmquota_provider_call_duration_seconds",
		Help:    "Duration of provider calls in seconds, from send to answer (or failure), by provider and outcome.",
		Buckets: prometheus.ExponentialBuckets(0.05, 2, 12), // 50 ms to about 100 s
	}, []string{"provider", "outcome"})
	// QueueWait is how long calls waited to be sent once their batch's
	// pacing let them go (see dispatch.Config.OnSend).
	QueueWait = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "llmquota_queue_wait_seconds",
		Help:    "Seconds each call waited for the provider's quota, backoff, concurrency or its turn, from when its batch's pacing (batchSize, batchDelay) let it go to its send, by provider.",
		Buckets: []float64{0.01, 0.1, 0.5, 1, 5, 15, 30, 60, 120, 300, 900, 3600, 14400, 86400},
	}, []string{"provider"})
	// AdmissionWait is how long batches waited to be admitted, from their
	// creation to the status write that admits them: the manager's part of
	// what a user waits for, queue and status write included, and any wait
	// for the provider (ProviderNotReady, ProviderNotFound).
	AdmissionWait = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "llmquota_batch_admission_wait_seconds",
		Help:    "Seconds from an InferenceBatch's creation to the status write that admits it, by provider; observed once per batch. creationTimestamp has whole seconds, so each wait reads up to 1 s long.",
		Buckets: []float64{1, 2, 5, 10, 30, 60, 300, 900, 3600, 14400, 86400},
	}, []string{"provider"})
	// WindowUsedRequests is the calls in each request-count window.
	WindowUsedRequests = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "llmquota_window_used_requests",
		Help: "Calls in each rolling request window, by provider and window (minute, hour, day).",
	}, []string{"provider", "window"})
	// WindowLimitRequests is each request-count window's limit.
	WindowLimitRequests = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "llmquota_window_limit_requests",
		Help: "Limit of each rolling request window, by provider and window (minute, hour, day).",
	}, []string{"provider", "window"})
	// WindowUsedTokens is the tokens in the tokens-per-minute window.
	WindowUsedTokens = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "llmquota_window_used_tokens",
		Help: "Tokens charged to each rolling token window (estimated at admission, corrected by the provider's usage), by provider and window (minute and day: input and output together; input_minute, output_minute).",
	}, []string{"provider", "window"})
	// WindowLimitTokens is the token window's limit.
	WindowLimitTokens = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "llmquota_window_limit_tokens",
		Help: "Limit of each rolling token window, by provider and window (minute, day, input_minute, output_minute).",
	}, []string{"provider", "window"})
	// LearnedLimitRatio is the part of the declared request limits in use.
	LearnedLimitRatio = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "llmquota_learned_limit_ratio",
		Help: "Part of the declared request windows and concurrency in use, by provider: 1 as declared, less where spec.limits.adaptive learned the provider takes less.",
	}, []string{"provider"})
	// PoolEndpointConcurrency is each Ollama pod's learned limit of calls
	// at once (spec.limits.adaptive).
	PoolEndpointConcurrency = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "llmquota_pool_endpoint_concurrency_limit",
		Help: "Calls at once the manager sends each warm pod of an Ollama pool, learned from the answers' pace and the pod's GPU memory under spec.limits.adaptive: AIMD, by provider and pod.",
	}, []string{"provider", "ollama_pod"})
	// BackoffSeconds is how long the provider is held back.
	BackoffSeconds = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "llmquota_backoff_seconds",
		Help: "Seconds until the provider's failure backoff or Retry-After hold ends (0 when none), by provider.",
	}, []string{"provider"})
	// ConsecutiveFailures per provider.
	ConsecutiveFailures = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "llmquota_consecutive_failures",
		Help: "Failed calls since the last success, by provider.",
	}, []string{"provider"})
	// CostUSD is the cost per provider and period.
	CostUSD = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "llmquota_cost_usd",
		Help: "Cost of calls in USD by provider and period (today, month), UTC.",
	}, []string{"provider", "period"})
	// CostAlert is 1 while a provider's cost is past a threshold.
	CostAlert = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "llmquota_cost_alert",
		Help: "1 while the provider's cost is past its threshold for the period (day, month), else 0.",
	}, []string{"provider", "period"})
	// CostLimitUSD is the spend each cost alert or budget allows.
	CostLimitUSD = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "llmquota_cost_limit_usd",
		Help: "USD a provider's spec allows per period (day, month) before an alert (kind=alert) or a hard stop (kind=budget); absent where not set.",
	}, []string{"provider", "period", "kind"})
	// BatchItems counts a batch's items by state.
	BatchItems = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "llmquota_batch_items",
		Help: "Items of each InferenceBatch by state (total, filtered, pending, running, succeeded, failed, cached).",
		// batch_namespace, not namespace: a ServiceMonitor sets namespace
		// to the manager's own, renaming ours exported_namespace.
	}, []string{"batch_namespace", "batch", "state"})
	// BatchFailed marks the batches that failed, with why.
	BatchFailed = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "llmquota_batch_failed",
		Help: "1 for each InferenceBatch whose Failed condition is True, by its reason (ItemsFailed, DeadlineExceeded, ...); absent otherwise.",
	}, []string{"batch_namespace", "batch", "reason"})
)

// InteractiveDecisions counts the quota decisions for gateway calls on the
// leader, by provider and outcome (granted, refused).
var InteractiveDecisions = prometheus.NewCounterVec(prometheus.CounterOpts{
	Name: "llmquota_interactive_decisions_total",
	Help: "Quota decisions for gateway calls on the leader, by provider and outcome (granted, refused).",
}, []string{"provider", "outcome"})

// The quota authority's grants beyond acquire and release: reclaimed ones,
// a new leader's count of the calls in flight it inherited, and its wait
// for the gateways to tell them.
var (
	GrantsReclaimed = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "llmquota_authority_grants_reclaimed_total",
		Help: "Gateway grants the leader ended without their release, by reason: lease (not released within their lease), restart (their gateway's process restarted).",
	}, []string{"reason"})
	CallsAdopted = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "llmquota_authority_calls_adopted_total",
		Help: "Gateway calls in flight that a previous leader granted, told by the gateways and counted by this leader in its concurrency.",
	})
	WaitingForGateways = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "llmquota_authority_waiting_for_gateways",
		Help: "1 while this leader admits nothing, waiting for the gateway pods to tell their calls in flight (at most --gateway-checkin-timeout); 0 otherwise.",
	})
)

// AuthorityObserver counts the quota authority's grants in the metrics
// above (authority.Observer).
type AuthorityObserver struct{}

// Reclaimed counts n grants ended without their release, for reason.
func (AuthorityObserver) Reclaimed(reason string, n int) {
	GrantsReclaimed.WithLabelValues(reason).Add(float64(n))
}

// Adopted counts n calls in flight of a previous leader.
func (AuthorityObserver) Adopted(n int) { CallsAdopted.Add(float64(n)) }

// Waiting says whether the leader waits for the gateways.
func (AuthorityObserver) Waiting(waiting bool) {
	v := 0.0
	if waiting {
		v = 1
	}
	WaitingForGateways.Set(v)
}

// Usage per namespace: what each team used of each provider, batches and
// gateway calls alike. tenant_namespace is the batch's namespace or the
// gateway caller's ("" for a caller that is not a ServiceAccount).
var (
	UsageTokens = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "llmquota_usage_tokens_total",
		Help: "Tokens of answered calls, by provider, tenant namespace, lane (batch, interactive) and direction (input, output).",
	}, []string{"provider", "tenant_namespace", "lane", "direction"})
	UsageCostUSD = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "llmquota_usage_cost_usd_total",
		Help: "Cost in USD of answered calls at the provider's prices, by provider, tenant namespace and lane (batch, interactive).",
	}, []string{"provider", "tenant_namespace", "lane"})
)

// JournalWrites counts the writes of each provider's results journal, by
// result: written, or failed (tried again a second later while batch calls
// wait once twice the bound's answers do).
var JournalWrites = prometheus.NewCounterVec(prometheus.CounterOpts{
	Name: "llmquota_results_journal_writes_total",
	Help: "Writes of each provider's results journal (the answers of its batches waiting for their results' write, kept so a crash does not pay for them twice), by provider and result (written, failed).",
}, []string{"provider", "result"})

// All are the manager's metrics.
var All = []prometheus.Collector{JournalWrites, RequestsTotal, CallDuration, QueueWait, AdmissionWait, WindowUsedRequests, WindowLimitRequests, LearnedLimitRatio, PoolEndpointConcurrency, WindowUsedTokens,
	WindowLimitTokens, BackoffSeconds, ConsecutiveFailures, CostUSD, CostAlert, CostLimitUSD, BatchItems, BatchFailed, InteractiveDecisions, UsageTokens, UsageCostUSD,
	GrantsReclaimed, CallsAdopted, WaitingForGateways}

func init() {
	metrics.Registry.MustRegister(All...)
}

package controller

import (
	"math/big"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	llmv1 "github.com/llmquota/llmquota/api/v1alpha1"
	"github.com/llmquota/llmquota/internal/dispatch"
	"github.com/llmquota/llmquota/internal/metrics"
)

// publishCostLimits exports the spec's cost alerts and budgets, so a
// dashboard draws the spend against them.
func publishCostLimits(p *llmv1.LLMProvider) {
	c := p.Spec.Cost
	if c == nil {
		c = &llmv1.CostPolicy{}
	}
	for _, l := range []struct {
		period, kind string
		value        llmv1.Decimal
	}{{"day", "alert", c.Alerts.Daily}, {"month", "alert", c.Alerts.Monthly}, {"day", "budget", c.Budgets.Daily}, {"month", "budget", c.Budgets.Monthly}} {
		if l.value == "" {
			metrics.CostLimitUSD.DeleteLabelValues(p.Name, l.period, l.kind)
			continue
		}
		metrics.CostLimitUSD.WithLabelValues(p.Name, l.period, l.kind).Set(decimalToFloat(string(l.value)))
	}
}

func publishProviderMetrics(name string, s dispatch.Stats, now time.Time) {
	for _, w := range s.Quota.Windows {
		metrics.WindowUsedRequests.WithLabelValues(name, w.Name).Set(float64(w.Used))
		metrics.WindowLimitRequests.WithLabelValues(name, w.Name).Set(float64(w.Limit))
	}
	if t := s.Quota.Tokens; t != nil {
		metrics.WindowUsedTokens.WithLabelValues(name, windowMinute).Set(float64(t.Used))
		metrics.WindowLimitTokens.WithLabelValues(name, windowMinute).Set(float64(t.Limit))
	}
	for _, t := range s.Quota.TokenWindows {
		window := tokenWindowLabels[t.Name]
		metrics.WindowUsedTokens.WithLabelValues(name, window).Set(float64(t.Used))
		metrics.WindowLimitTokens.WithLabelValues(name, window).Set(float64(t.Limit))
	}
	metrics.LearnedLimitRatio.WithLabelValues(name).Set(s.LearnedScale)
	hold := later(s.Quota.BackoffUntil, s.Quota.RetryAfterUntil)
	metrics.BackoffSeconds.WithLabelValues(name).Set(max(0, hold.Sub(now).Seconds()))
	metrics.ConsecutiveFailures.WithLabelValues(name).Set(float64(s.Quota.ConsecutiveFailures))
	metrics.CostUSD.WithLabelValues(name, "today").Set(decimalToFloat(s.Cost.Today))
	metrics.CostUSD.WithLabelValues(name, "month").Set(decimalToFloat(s.Cost.ThisMonth))
	metrics.CostAlert.WithLabelValues(name, "day").Set(boolToFloat(s.Cost.DailyExceeded))
	metrics.CostAlert.WithLabelValues(name, "month").Set(boolToFloat(s.Cost.MonthlyExceeded))
}

func boolToFloat(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

func forgetProviderMetrics(name string) {
	for _, v := range []*prometheus.GaugeVec{metrics.WindowUsedRequests, metrics.WindowLimitRequests, metrics.WindowUsedTokens, metrics.WindowLimitTokens, metrics.LearnedLimitRatio, metrics.PoolEndpointConcurrency, metrics.BackoffSeconds, metrics.ConsecutiveFailures, metrics.CostUSD, metrics.CostAlert, metrics.CostLimitUSD} {
		v.DeletePartialMatch(prometheus.Labels{"provider": name})
	}
	metrics.RequestsTotal.DeletePartialMatch(prometheus.Labels{"provider": name})
	metrics.CallDuration.DeletePartialMatch(prometheus.Labels{"provider": name})
	metrics.QueueWait.DeletePartialMatch(prometheus.Labels{"provider": name})
	metrics.AdmissionWait.DeletePartialMatch(prometheus.Labels{"provider": name})
	metrics.UsageTokens.DeletePartialMatch(prometheus.Labels{"provider": name})
	metrics.UsageCostUSD.DeletePartialMatch(prometheus.Labels{"provider": name})
}

// admissionWait is how long a batch being admitted (its start time set,
// not yet written) waited since its creation; ok is false for any other.
// Read before the write: the object the API server answers with has the
// start time in whole seconds.
func admissionWait(orig, b *llmv1.InferenceBatch) (waited time.Duration, ok bool) {
	if orig.Status.StartTime != nil || b.Status.StartTime == nil {
		return 0, false
	}
	return b.Status.StartTime.Sub(b.CreationTimestamp.Time), true
}

// observeAdmission records a batch's admission wait.
func observeAdmission(provider string, waited time.Duration) {
	metrics.AdmissionWait.WithLabelValues(provider).Observe(waited.Seconds())
}

// observeSend records how long a call waited to be sent.
func observeSend(provider string) func(time.Duration) {
	h := metrics.QueueWait.WithLabelValues(provider)
	return func(waited time.Duration) { h.Observe(waited.Seconds()) }
}

// observeInteractive counts the interactive lane's decisions.
func observeInteractive(provider string) func(granted bool) {
	granted, refused := metrics.InteractiveDecisions.WithLabelValues(provider, "granted"), metrics.InteractiveDecisions.WithLabelValues(provider, "refused")
	return func(ok bool) {
		if ok {
			granted.Inc()
		} else {
			refused.Inc()
		}
	}
}

// observeUsage counts the tokens and cost of answered calls per tenant.
func observeUsage(provider string) func(dispatch.Usage) {
	return func(u dispatch.Usage) {
		metrics.UsageTokens.WithLabelValues(provider, u.Namespace, u.Lane, "input").Add(float64(u.InputTokens))
		metrics.UsageTokens.WithLabelValues(provider, u.Namespace, u.Lane, "output").Add(float64(u.OutputTokens))
		usd, _ := u.Cost.Float64()
		metrics.UsageCostUSD.WithLabelValues(provider, u.Namespace, u.Lane).Add(usd)
	}
}

// observeCall counts one settled provider call and its duration.
func observeCall(provider string) func(outcome string, took time.Duration) {
	return func(outcome string, took time.Duration) {
		metrics.RequestsTotal.WithLabelValues(provider, outcome).Inc()
		metrics.CallDuration.WithLabelValues(provider, outcome).Observe(took.Seconds())
	}
}

func publishBatchMetrics(b *llmv1.InferenceBatch) {
	c := b.Status.Counts
	for state, n := range map[string]int32{"total": c.Total, "filtered": c.Filtered, "pending": c.Pending, "running": c.Running,
		"succeeded": c.Succeeded, "failed": c.Failed, "cached": c.Cached} {
		metrics.BatchItems.WithLabelValues(b.Namespace, b.Name, state).Set(float64(n))
	}
	ours := prometheus.Labels{"batch_namespace": b.Namespace, "batch": b.Name}
	if failed := meta.FindStatusCondition(b.Status.Conditions, llmv1.ConditionFailed); failed != nil && failed.Status == metav1.ConditionTrue {
		metrics.BatchFailed.With(prometheus.Labels{"batch_namespace": b.Namespace, "batch": b.Name, "reason": failed.Reason}).Set(1)
	} else {
		metrics.BatchFailed.DeletePartialMatch(ours)
	}
}

func forgetBatchMetrics(namespace, name string) {
	ours := prometheus.Labels{"batch_namespace": namespace, "batch": name}
	metrics.BatchItems.DeletePartialMatch(ours)
	metrics.BatchFailed.DeletePartialMatch(ours)
}

// decimalToFloat converts for Prometheus only; the API keeps exact decimals.
func decimalToFloat(s string) float64 {
	r, ok := new(big.Rat).SetString(s)
	if !ok {
		return 0
	}
	f, _ := r.Float64()
	return f
}

// tokenWindowLabels are the window label of each further token window in
// llmquota_window_*_tokens (tokens per minute is "minute").
var tokenWindowLabels = map[string]string{windowTokensPerDay: "day", windowInputPerMinute: "input_minute", windowOutputPerMinute: "output_minute"}

// publishEndpointLimits exports each warm pod's learned limit of calls at
// once, and drops the series of pods no longer warm (or of a pool no
// longer learning).
func publishEndpointLimits(provider string, limits map[string]int) {
	metrics.PoolEndpointConcurrency.DeletePartialMatch(prometheus.Labels{"provider": provider})
	for pod, l := range limits {
		if pod == "" { // spec.endpoint: the pool's Service, one endpoint for all its pods
			pod = "(service)"
		}
		metrics.PoolEndpointConcurrency.WithLabelValues(provider, pod).Set(float64(l))
	}
}

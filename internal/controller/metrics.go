package controller

import (
	"math/big"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	llmv1 "github.com/llmquota/llmquota/api/v1alpha1"
	"github.com/llmquota/llmquota/internal/dispatch"
	"github.com/llmquota/llmquota/internal/metrics"
)

func publishProviderMetrics(name string, s dispatch.Stats, now time.Time) {
	for _, w := range s.Quota.Windows {
		metrics.WindowUsed.WithLabelValues(name, w.Name).Set(float64(w.Used))
		metrics.WindowLimit.WithLabelValues(name, w.Name).Set(float64(w.Limit))
	}
	if t := s.Quota.Tokens; t != nil {
		metrics.WindowUsed.WithLabelValues(name, t.Name).Set(float64(t.Used))
		metrics.WindowLimit.WithLabelValues(name, t.Name).Set(float64(t.Limit))
	}
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
	for _, v := range []*prometheus.GaugeVec{metrics.WindowUsed, metrics.WindowLimit, metrics.BackoffSeconds, metrics.ConsecutiveFailures, metrics.CostUSD, metrics.CostAlert} {
		v.DeletePartialMatch(prometheus.Labels{"provider": name})
	}
	metrics.RequestsTotal.DeletePartialMatch(prometheus.Labels{"provider": name})
	metrics.CallDuration.DeletePartialMatch(prometheus.Labels{"provider": name})
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
}

func forgetBatchMetrics(namespace, name string) {
	metrics.BatchItems.DeletePartialMatch(prometheus.Labels{"namespace": namespace, "batch": name})
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

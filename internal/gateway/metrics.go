package gateway

import (
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/llmquota/llmquota/internal/authority"
)

// Metrics are the gateway's Prometheus metrics. Labels: provider,
// caller_namespace (the calling ServiceAccount's namespace; a label
// ServiceMonitor relabelling leaves alone, unlike namespace) and code (the
// HTTP status answered).
type Metrics struct {
	requests *prometheus.CounterVec
	tokens   *prometheus.CounterVec
	wait     *prometheus.HistogramVec
	added    *prometheus.HistogramVec
	// estimated counts answered calls whose usage the provider did not say
	// (a stream without its usage event): their tokens are bounds.
	estimated *prometheus.CounterVec
	// cache counts the cache's lookups, by result (hit, miss).
	cache *prometheus.CounterVec
}

// NewMetrics registers the gateway's metrics with reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "llmquota_gateway_requests_total",
			Help: "Gateway calls by provider, calling namespace and the HTTP status answered."}, []string{"provider", "caller_namespace", "code"}),
		tokens: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "llmquota_gateway_tokens_total",
			Help: "Tokens of answered gateway calls, by direction (in, out)."}, []string{"provider", "caller_namespace", "direction"}),
		wait: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "llmquota_gateway_quota_wait_seconds",
			Help:    "How long gateway calls waited for quota from the leader (its round trip included).",
			Buckets: []float64{0.0005, 0.001, 0.0025, 0.005, 0.01, 0.05, 0.25, 1, 5, 30}}, []string{"provider"}),
		added: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "llmquota_gateway_added_latency_seconds",
			Help:    "What the gateway added to answered calls: their whole time less the provider's.",
			Buckets: []float64{0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.05, 0.25, 1, 5, 30}}, []string{"provider"}),
		estimated: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "llmquota_gateway_usage_estimated_total",
			Help: "Answered gateway calls whose provider sent no usage: their tokens and cost are bounds from the lengths."}, []string{"provider"}),
	}
	m.cache = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "llmquota_gateway_cache_lookups_total",
		Help: "Lookups of gateway calls in the answer cache (spec.interactive.cache), by result: a hit took no quota and no provider call."},
		[]string{"provider", "result"})
	reg.MustRegister(m.requests, m.tokens, m.wait, m.added, m.estimated, m.cache)
	return m
}

// recorder measures one call.
type recorder struct {
	m     *Metrics
	start time.Time
}

func (m *Metrics) start(now time.Time) recorder { return recorder{m: m, start: now} }

// done records a call's answer.
func (r recorder) done(c call, out outcome, status int, now time.Time) {
	if r.m == nil {
		return
	}
	provider := c.label(out.found)
	r.m.requests.WithLabelValues(provider, c.caller.namespace, strconv.Itoa(status)).Inc()
	if out.waited > 0 {
		r.m.wait.WithLabelValues(provider).Observe(out.waited.Seconds())
	}
	if out.resp == nil || out.cached { // a reused answer spent no tokens
		return
	}
	r.m.tokens.WithLabelValues(provider, c.caller.namespace, "in").Add(float64(out.resp.InputTokens))
	r.m.tokens.WithLabelValues(provider, c.caller.namespace, "out").Add(float64(out.resp.OutputTokens))
	r.m.added.WithLabelValues(provider).Observe((now.Sub(r.start) - out.upstream).Seconds())
	if out.resp.UsageEstimated {
		r.m.estimated.WithLabelValues(provider).Inc()
	}
}

// cacheLookup counts one lookup in the answer cache.
func (m *Metrics) cacheLookup(provider string, hit bool) {
	if m == nil {
		return
	}
	result := "miss"
	if hit {
		result = "hit"
	}
	m.cache.WithLabelValues(provider, result).Inc()
}

// SpareCounter counts spare grants (authority.Spares).
type SpareCounter interface {
	Stats() authority.SpareStats
}

// RegisterSpares registers llmquota_gateway_spare_grants_total with reg,
// read from spares: spares used by calls, and spares given back unsent
// (quota the windows counted and no call used).
func RegisterSpares(reg prometheus.Registerer, spares SpareCounter) {
	desc := prometheus.NewDesc("llmquota_gateway_spare_grants_total",
		"Spare grants by result: used by a call with no round trip to the leader, or returned unsent (counted in the windows, used by no call).",
		[]string{"result"}, nil)
	reg.MustRegister(spareCollector{desc: desc, spares: spares})
}

type spareCollector struct {
	desc   *prometheus.Desc
	spares SpareCounter
}

func (c spareCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

func (c spareCollector) Collect(ch chan<- prometheus.Metric) {
	s := c.spares.Stats()
	ch <- prometheus.MustNewConstMetric(c.desc, prometheus.CounterValue, float64(s.Used), "used")
	ch <- prometheus.MustNewConstMetric(c.desc, prometheus.CounterValue, float64(s.Returned), "returned")
}

// StandbyCounter reads the standby grants a gateway used, gave back and
// holds (authority.Standby).
type StandbyCounter interface{ Stats() authority.StandbyStats }

// RegisterStandby registers llmquota_gateway_standby_grants_total and
// llmquota_gateway_standby_grants_held with reg, read from standby.
func RegisterStandby(reg prometheus.Registerer, standby StandbyCounter) {
	reg.MustRegister(standbyCollector{
		total: prometheus.NewDesc("llmquota_gateway_standby_grants_total",
			"Standby grants by result: used by a call while no quota authority answered, or returned unsent.", []string{"result"}, nil),
		held: prometheus.NewDesc("llmquota_gateway_standby_grants_held",
			"Standby grants held: calls this replica may send while no manager leads.", nil, nil),
		standby: standby,
	})
}

type standbyCollector struct {
	total, held *prometheus.Desc
	standby     StandbyCounter
}

func (c standbyCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.total; ch <- c.held }

func (c standbyCollector) Collect(ch chan<- prometheus.Metric) {
	s := c.standby.Stats()
	ch <- prometheus.MustNewConstMetric(c.total, prometheus.CounterValue, float64(s.Used), "used")
	ch <- prometheus.MustNewConstMetric(c.total, prometheus.CounterValue, float64(s.Returned), "returned")
	ch <- prometheus.MustNewConstMetric(c.held, prometheus.GaugeValue, float64(s.Held))
}

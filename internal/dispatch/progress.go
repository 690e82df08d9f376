package dispatch

import (
	"time"

	"github.com/llmquota/llmquota/internal/cost"
	"github.com/llmquota/llmquota/internal/ratewindow"
)

// Progress is a batch's state in the dispatcher.
type Progress struct {
	// Queued items wait to be sent (retries included); InFlight are being sent.
	Queued, InFlight int
	// GroupsDone counts finished groups of Size items.
	GroupsDone int
	// Retries counts retried attempts.
	Retries int
	// Limit is the provider's decision holding the batch back (Allowed when none).
	Limit ratewindow.Decision
	// BackingOff is true while failures hold the provider back.
	BackingOff bool
	// NoWarmEndpoint is true while the batch's items wait because no
	// endpoint of the Ollama pool is warm (and no fallback runs to take them).
	NoWarmEndpoint bool
}

// Progress returns a batch's progress; ok is false if it is not submitted.
func (d *Dispatcher) Progress(key string) (p Progress, ok bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	b, ok := d.batches[key]
	if !ok {
		return Progress{}, false
	}
	p = Progress{Queued: len(b.queue), InFlight: b.inFlight, GroupsDone: b.groupsDone, Retries: b.retries}
	p.NoWarmEndpoint = b.more() && !b.suspended && d.noneWarm() && d.fallback() == nil
	p.Limit = ratewindow.Decision{Allowed: true}
	switch mine := d.tenantHold(b, d.clock.Now()); {
	case !b.more() || b.suspended:
	case !mine.Allowed:
		p.Limit = mine
	default:
		p.Limit = d.shownLimit()
		p.BackingOff = p.Limit.Reason == ratewindow.ReasonBackoff
	}
	return p, true
}

// Stats is the provider's state for its status and metrics.
type Stats struct {
	Quota ratewindow.Stats
	Cost  cost.Totals
	// AuthError is the last auth failure's message, until a call succeeds.
	AuthError string
	// Held is what held the last call back when the dispatcher's own
	// budget did (Reason ratewindow.ReasonBudget); otherwise Allowed.
	Held ratewindow.Decision
	// Teams is what the namespaces used this month, the most expensive
	// first (see TopTeams).
	Teams []TeamUsage
	// Interactive and Batch are the two lanes' use, side by side.
	Interactive, Batch LaneStats
	// LearnedScale is the part of the declared request limits in use (1
	// unless spec.limits.adaptive learned less).
	LearnedScale float64
}

// Stats returns the provider's state at now against the cost thresholds.
func (d *Dispatcher) Stats(thresholds cost.Thresholds) Stats {
	now := d.clock.Now()
	d.mu.Lock()
	defer d.mu.Unlock()
	s := Stats{Quota: d.limiter.Stats(now), Cost: d.meter.Totals(now, thresholds), AuthError: d.authErr, Teams: d.teamUsage(now)}
	s.Interactive, s.Batch = d.laneStats(now)
	s.LearnedScale = 1
	if d.learner != nil {
		s.LearnedScale = d.learner.Scale()
	}
	s.Held = ratewindow.Decision{Allowed: true}
	if d.limited.Reason == ratewindow.ReasonBudget && now.Before(d.limited.RetryAt) {
		s.Held = d.limited
	}
	return s
}

// Quota returns the provider's quota state now: what Stats reports of it,
// without the cost totals and the walk over every batch (a batch's status
// needs only this, for its ETA).
func (d *Dispatcher) Quota() ratewindow.Stats { return d.limiter.Stats(d.clock.Now()) }

// SeedCost restores cost totals persisted in the provider's status.
func (d *Dispatcher) SeedCost(totals, committed cost.Period) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.meter.Seed(d.clock.Now(), totals, committed)
}

// Snapshot returns the quota state to persist (see ratewindow.Snapshot).
func (d *Dispatcher) Snapshot() []byte { return d.limiter.Snapshot(d.clock.Now(), nil) }

// ETA estimates when n more calls can have been admitted, when the quota
// is the only limit: each window admits its limit per period, the interval
// spaces calls, and groups of size wait delay between them.
func ETA(now time.Time, n int, q ratewindow.Stats, minInterval time.Duration, size int, delay time.Duration) time.Time {
	if n <= 0 {
		return now
	}
	var need time.Duration
	for _, w := range q.Windows {
		free := max(0, w.Limit-w.Used)
		if rest := int64(n) - free; rest > 0 {
			periods := (rest + w.Limit - 1) / w.Limit
			need = max(need, time.Duration(periods)*w.Period)
		}
	}
	need = max(need, time.Duration(n-1)*minInterval)
	if size > 0 {
		need += time.Duration((n-1)/size) * delay
	}
	if !q.Next.Allowed && !q.Next.RetryAt.IsZero() && q.Next.RetryAt.After(now) {
		need += q.Next.RetryAt.Sub(now)
	}
	return now.Add(need)
}

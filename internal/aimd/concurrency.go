package aimd

import (
	"math"
	"time"
)

// Defaults of a Concurrency learner.
const (
	// Tolerance is how many times slower than the server's unloaded pace
	// (per output token) a call may be before it counts as queued: the
	// server was given more calls at once than it runs side by side.
	Tolerance = 2.0
	// ConcurrencyDecrease is the factor a queued call, or a failure that
	// says the server is overloaded, cuts the limit by.
	ConcurrencyDecrease = 0.7
	// PressureWatermark is the part of its GPU memory a server may use
	// before its limit stops growing and falls to the calls it has in
	// flight: one more call there may not fit beside the model.
	PressureWatermark = 0.95
	// baseDrift lets the unloaded pace rise by this part with each call
	// that reads as unloaded, so a pace measured once on a lucky call, or
	// before the model changed, does not hold the limit down for ever.
	baseDrift = 0.01
	// driftBand is how much slower than the base a call may be and still
	// count as unloaded for the drift: a tenth. A call slowed by sharing
	// the server with others is slower than that.
	driftBand = 1.1
)

// Concurrency learns how many calls one server (an Ollama pod) takes at
// once before it slows down or runs short of GPU memory: the original
// report's "adjust batch size based on GPU health", per server. It starts
// at the declared limit and never goes above it nor below one call. A call
// whose pace per output token is more than Tolerance times the fastest
// seen cuts the limit by ConcurrencyDecrease (once for the calls sent
// before the cut, which were sent under the old limit); a call at normal
// pace that was sent while the server was at its limit adds one call per
// limit's worth of such calls (one a round, additive). It holds no clock.
type Concurrency struct {
	max      int
	limit    float64
	base     float64   // the unloaded pace, seconds per output token
	cut      time.Time // when the limit was last cut
	pressure bool      // GPU memory over PressureWatermark
}

// NewConcurrency returns a learner at max calls at once (at least one).
func NewConcurrency(limit int) *Concurrency {
	limit = max(1, limit)
	return &Concurrency{max: limit, limit: float64(limit)}
}

// Limit is how many calls the server may have at once now.
func (c *Concurrency) Limit() int { return max(1, int(math.Floor(c.limit))) }

// Declared is the limit it never goes above.
func (c *Concurrency) Declared() int { return c.max }

// SetDeclared changes the declared limit; the learned one is kept under it.
func (c *Concurrency) SetDeclared(limit int) {
	c.max = max(1, limit)
	c.limit = min(c.limit, float64(c.max))
}

// Answered learns from a call sent at sent and answered at now with
// output tokens; atLimit says the server had as many calls in flight as
// its limit when it was sent. It reports whether the limit changed.
func (c *Concurrency) Answered(now, sent time.Time, output int64, atLimit bool) bool {
	pace := now.Sub(sent).Seconds() / float64(max(1, output))
	switch {
	case c.base == 0 || pace < c.base:
		c.base = pace
	case pace <= driftBand*c.base || c.Limit() == 1:
		// Only a call that reads as unloaded moves the base up: one near
		// the base, or any call while the server has one at a time (so a
		// model that got slower is learned there). Calls slowed by
		// queueing under sustained load would walk it up until queueing
		// looked normal and the limit climbed back to the declared one.
		c.base *= 1 + baseDrift
	}
	if pace > Tolerance*c.base {
		return c.Overloaded(now, sent)
	}
	if !atLimit || c.pressure || c.limit >= float64(c.max) {
		return false
	}
	before := c.Limit()
	c.limit = min(float64(c.max), c.limit+1/c.limit)
	return c.Limit() != before
}

// Overloaded cuts the limit for a call sent at sent that the server could
// not serve in time (a timeout, a 5xx) or served slowly. A call sent
// before the last cut changes nothing.
func (c *Concurrency) Overloaded(now, sent time.Time) bool {
	if sent.Before(c.cut) {
		return false
	}
	before := c.Limit()
	c.limit = max(1, c.limit*ConcurrencyDecrease)
	c.cut = now
	return c.Limit() != before
}

// Pressure takes the server's GPU memory in use, as a part of its total
// (from the node agent's report), with inFlight calls on it: when it
// passes PressureWatermark the limit falls to the calls in flight, and
// stops growing until the memory is back under it. Reports that it is
// still over do not cut again: the calls in flight then were sent under
// the cut limit.
func (c *Concurrency) Pressure(used float64, inFlight int) bool {
	was := c.pressure
	c.pressure = used >= PressureWatermark
	if !c.pressure || was {
		return false
	}
	before := c.Limit()
	c.limit = max(1, min(c.limit, float64(inFlight)))
	return c.Limit() != before
}

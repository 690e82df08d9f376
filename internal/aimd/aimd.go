// Package aimd learns how much of its declared limits a provider really
// takes, from the 429s the declared limits did not predict: a
// multiplicative decrease on such a 429, an additive increase per clean
// period, never above the declared limits (the original report's adaptive
// batch sizing, as the llm-d batch gateway does it). It holds no clock and
// imports nothing of Kubernetes: the caller passes the time.
package aimd

import "time"

// Defaults of a Learner.
const (
	// DefaultDecrease is the factor a 429 cuts the scale by when there are
	// no request windows to measure against (see RateLimited).
	DefaultDecrease = 0.9
	// MaxCut bounds one decrease: the scale never falls below this part of
	// what it was, whatever one 429 suggests.
	MaxCut = 0.5
	// DefaultIncrease is what a clean period adds back, as a part of the
	// declared limits.
	DefaultIncrease = 0.05
	// DefaultFloor is the lowest scale: the provider always gets this part
	// of its declared limits (at least one call a window), so a storm of
	// 429s that are not about quota slows calls down but never stops them.
	DefaultFloor = 0.1
)

// Config shapes a Learner; zero fields take the defaults.
type Config struct {
	// Period is a clean period's length: the shortest request window.
	Period   time.Duration
	Decrease float64
	Increase float64
	Floor    float64
}

// Learner holds the learned scale: the part of the declared limits the
// provider takes, in [Floor, 1].
type Learner struct {
	cfg   Config
	scale float64
	// cut is when the scale was last decreased: a 429 for a call sent
	// before it answers traffic the decrease already accounted for.
	cut time.Time
	// cleanSince starts the current clean period.
	cleanSince time.Time
}

// New returns a Learner at the declared limits (scale 1), its first clean
// period starting at now.
func New(cfg Config, now time.Time) *Learner {
	if cfg.Decrease <= 0 || cfg.Decrease >= 1 {
		cfg.Decrease = DefaultDecrease
	}
	if cfg.Increase <= 0 {
		cfg.Increase = DefaultIncrease
	}
	if cfg.Floor <= 0 || cfg.Floor > 1 {
		cfg.Floor = DefaultFloor
	}
	if cfg.Period <= 0 {
		cfg.Period = time.Minute
	}
	return &Learner{cfg: cfg, scale: 1, cleanSince: now}
}

// Period is the length of a clean period, the window RateLimited's
// counts are taken over.
func (l *Learner) Period() time.Duration { return l.cfg.Period }

// Scale is the part of the declared limits to use now.
func (l *Learner) Scale() float64 { return l.scale }

// RateLimited learns from a 429 the limits did not predict, answered at
// now for a call sent at sent. sentBefore is how many calls were sent in
// the period before it, and allowed how many the scaled limits allowed
// there: the provider took no more than sentBefore, so the scale is cut to
// sentBefore/allowed of itself, halved at most (MaxCut): one 429 for a
// call sent with room to spare may be about something else than this
// key's rate. Without request windows (allowed 0) the cut is Decrease. A
// 429 for a call sent before the last cut changes nothing. It reports
// whether the scale changed.
func (l *Learner) RateLimited(now, sent time.Time, sentBefore, allowed int64) bool {
	if sent.Before(l.cut) {
		return false
	}
	f := l.cfg.Decrease
	if allowed > 0 && sentBefore < allowed {
		f = float64(sentBefore) / float64(allowed)
	}
	next := max(l.cfg.Floor, l.scale*max(f, MaxCut))
	l.cut, l.cleanSince = now, now
	changed := next != l.scale
	l.scale = next
	return changed
}

// Tick adds Increase back for each clean period that ended by now, up to
// the declared limits. It reports whether the scale changed.
func (l *Learner) Tick(now time.Time) bool {
	if l.scale >= 1 {
		l.cleanSince = now
		return false
	}
	periods := int(now.Sub(l.cleanSince) / l.cfg.Period)
	if periods <= 0 {
		return false
	}
	l.cleanSince = l.cleanSince.Add(time.Duration(periods) * l.cfg.Period)
	l.scale = min(1, l.scale+float64(periods)*l.cfg.Increase)
	return true
}

// NextIncrease is when Tick will next raise the scale (zero at scale 1).
func (l *Learner) NextIncrease() time.Time {
	if l.scale >= 1 {
		return time.Time{}
	}
	return l.cleanSince.Add(l.cfg.Period)
}

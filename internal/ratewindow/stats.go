package ratewindow

import "time"

// WindowStats is the use of one window at a moment.
type WindowStats struct {
	Name   string
	Used   int64
	Limit  int64
	Period time.Duration
	// Learned is the limit in use when it is less than Limit (SetScale);
	// 0 when the declared limit is.
	Learned int64
}

// Stats is the state of a Limiter at a moment, for status and metrics.
type Stats struct {
	// Windows holds each request window, in Config order.
	Windows []WindowStats
	// Tokens is the tokens window, when configured.
	Tokens *WindowStats
	// TokenWindows holds each of Config.TokenWindows, in Config order.
	TokenWindows []WindowStats
	// InFlight counts admitted calls not yet released.
	InFlight int
	// ConsecutiveFailures counts failures since the last success.
	ConsecutiveFailures int
	// BackoffUntil is when the failure hold ends (zero when none).
	BackoffUntil time.Time
	// RetryAfterUntil is when the server's hold ends (zero when none).
	RetryAfterUntil time.Time
	// Next is the decision for a call without token cost at the moment asked.
	Next Decision
	// ReservedCalls and ReservedTokens are what is left of the reservation.
	ReservedCalls, ReservedTokens int64
	// LearnedConcurrency is the concurrency limit in use when it is less
	// than the declared one (SetScale); 0 when the declared one is.
	LearnedConcurrency int
}

// Stats returns the Limiter's state at now.
func (l *Limiter) Stats(now time.Time) Stats {
	l.mu.Lock()
	defer l.mu.Unlock()
	t := now.UnixNano()
	s := Stats{
		Windows:             make([]WindowStats, len(l.cfg.Windows)),
		InFlight:            l.inFlight,
		ConsecutiveFailures: l.failures,
		Next:                l.decide(t, Cost{}, 0),
		ReservedCalls:       l.reservedCalls,
		ReservedTokens:      l.reservedToken.Total(),
	}
	for i, w := range l.cfg.Windows {
		used := l.admitted.countSince(int(w.Limit), t-int64(w.Period)) + l.deferredSince(t-int64(w.Period))
		s.Windows[i] = WindowStats{Name: w.Name, Used: int64(used), Limit: w.Limit, Period: w.Period}
		if l.scale != 0 {
			s.Windows[i].Learned = l.scaled(w.Limit)
		}
	}
	if tw := l.cfg.Tokens; tw != nil {
		s.Tokens = &WindowStats{Name: tw.Name, Used: usedSince(&l.tokens, t-int64(tw.Period)) + l.deferredTokens(t-int64(tw.Period), Cost.Total), Limit: tw.Limit, Period: tw.Period}
	}
	for i, tw := range l.cfg.TokenWindows {
		s.TokenWindows = append(s.TokenWindows, WindowStats{Name: tw.Name, Used: usedSince(&l.more[i], t-int64(tw.Period)) + l.deferredTokens(t-int64(tw.Period), tw.Kind.of), Limit: tw.Limit, Period: tw.Period})
	}
	if l.scale != 0 && l.cfg.MaxConcurrency > 0 {
		s.LearnedConcurrency = int(l.scaled(int64(l.cfg.MaxConcurrency)))
	}
	if l.backoffUntil > t {
		s.BackoffUntil = time.Unix(0, l.backoffUntil)
	}
	if l.retryAfter > t {
		s.RetryAfterUntil = time.Unix(0, l.retryAfter)
	}
	return s
}

// usedSince sums a token window's entries after cutoff.
func usedSince(r *costRing, cutoff int64) int64 {
	used := int64(0)
	for i := 0; i < r.n; i++ {
		if at, c := r.at(i); at > cutoff {
			used += c
		}
	}
	return used
}

package ratewindow

import (
	"cmp"
	"math"
	"slices"
	"time"
)

// An admission is counted from when it is made. A call held to be sent
// later, up to some deadline (a gateway's standby grant, used only while
// no quota authority answers), would reach the provider after its entry
// left the windows; Defer counts it instead until its deadline has left
// them. Such entries are stamped in the future, so they cannot join the
// sorted rings: they are kept apart, few, and merged into each decision.

// deferred is an admission counted at t, later than it was made, with its
// token cost.
type deferred struct {
	t    int64
	cost Cost
}

// MaxDeferred bounds the deferred calls a caller should keep in one
// Limiter (Deferred tells how many count), and a snapshot may hold: each
// decision merges them in.
const MaxDeferred = 4096

// Defer moves the call admitted at at with cost to until: it is counted in
// every request and token window from its admission until until has left
// them, so the call may be sent any time up to until. A time not after at
// changes nothing. Unadmit (at until) takes a deferred call out again.
func (l *Limiter) Defer(at time.Time, cost Cost, until time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	t, u := at.UnixNano(), until.UnixNano()
	l.dropExpiredDeferred(t)
	if u <= t {
		return
	}
	l.admitted.remove(t)
	l.reduceTokens(t, cost)
	i, _ := slices.BinarySearchFunc(l.deferred, u, func(d deferred, u int64) int { return cmp.Compare(d.t, u) })
	l.deferred = slices.Insert(l.deferred, i, deferred{t: u, cost: cost})
}

// Deferred counts the deferred calls that still count at now.
func (l *Limiter) Deferred(now time.Time) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.dropExpiredDeferred(now.UnixNano())
	return len(l.deferred)
}

// undefer takes one deferred call at t out, and reports whether one was
// there (called under l.mu).
func (l *Limiter) undefer(t int64) bool {
	i, found := slices.BinarySearchFunc(l.deferred, t, func(d deferred, t int64) int { return cmp.Compare(d.t, t) })
	if found {
		l.deferred = slices.Delete(l.deferred, i, i+1)
	}
	return found
}

// dropExpiredDeferred forgets the deferred calls no window counts at now
// (called under l.mu).
func (l *Limiter) dropExpiredDeferred(now int64) {
	if len(l.deferred) == 0 {
		return
	}
	cutoff := now - int64(l.longestPeriod())
	i := 0
	for i < len(l.deferred) && l.deferred[i].t <= cutoff {
		i++
	}
	l.deferred = slices.Delete(l.deferred, 0, i)
}

// longestPeriod is the longest of the request and token windows.
func (l *Limiter) longestPeriod() time.Duration {
	var p time.Duration
	for _, w := range l.cfg.Windows {
		p = max(p, w.Period)
	}
	if l.cfg.Tokens != nil {
		p = max(p, l.cfg.Tokens.Period)
	}
	for _, tw := range l.cfg.TokenWindows {
		p = max(p, tw.Period)
	}
	return p
}

// kthNewest is the k-th newest of the ring's entries and the deferred
// calls together (k >= 1, at most as many as there are): the k-th largest
// of two sorted lists is the largest, over j of them taken from the
// deferred, of the smaller of the ring's (k-j)-th newest and the
// deferred's j-th newest. There are few deferred calls, so this takes as
// many steps.
func (l *Limiter) kthNewest(k int) int64 {
	n, s := l.admitted.n, len(l.deferred)
	if s == 0 {
		return l.admitted.newest(k)
	}
	best := int64(math.MinInt64)
	for j := max(0, k-n); j <= min(k, s); j++ {
		v := int64(math.MaxInt64)
		if k-j > 0 {
			v = l.admitted.newest(k - j)
		}
		if j > 0 {
			v = min(v, l.deferred[s-j].t)
		}
		best = max(best, v)
	}
	return best
}

// deferredSince counts the deferred calls after cutoff (called under l.mu).
func (l *Limiter) deferredSince(cutoff int64) int {
	i, _ := slices.BinarySearchFunc(l.deferred, cutoff+1, func(d deferred, t int64) int { return cmp.Compare(d.t, t) })
	return len(l.deferred) - i
}

// deferredTokens sums the part of the deferred calls' costs that a window
// counting of counts, after cutoff (called under l.mu).
func (l *Limiter) deferredTokens(cutoff int64, of func(Cost) int64) int64 {
	sum := int64(0)
	for _, d := range l.deferred {
		if d.t > cutoff {
			sum += of(d.cost)
		}
	}
	return sum
}

// tokensFreeAtDeferred is tokensFreeAt with the deferred calls' costs of
// the window (of) merged into its entries by time.
func (l *Limiter) tokensFreeAtDeferred(r *costRing, period time.Duration, now, cost, limit int64, of func(Cost) int64) (int64, bool) {
	cutoff := now - int64(period)
	used, i := r.unexpired(cutoff)
	used += l.deferredTokens(cutoff, of)
	if used+cost <= limit {
		return 0, true
	}
	j := 0 // the ring's (i) and the deferred's (j) next entry, oldest first
	for i < r.n || j < len(l.deferred) {
		var t, c int64
		if rt, rc := r.atOr(i); j >= len(l.deferred) || i < r.n && rt <= l.deferred[j].t {
			t, c = rt, rc
			i++
		} else {
			t, c = l.deferred[j].t, of(l.deferred[j].cost)
			j++
		}
		if t <= cutoff {
			continue // already left the window: not in used
		}
		if used -= c; used+cost <= limit {
			return t + int64(period), false
		}
	}
	return math.MaxInt64, false // unreachable: cost <= limit frees once all expire
}

// atOr is at(i), or zeros past the end.
func (c *costRing) atOr(i int) (int64, int64) {
	if i >= c.n {
		return 0, 0
	}
	return c.at(i)
}

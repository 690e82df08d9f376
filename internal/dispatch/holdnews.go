package dispatch

import (
	"time"

	"github.com/llmquota/llmquota/internal/ratewindow"
)

// HoldLinger is how long a hold the batches were told of is still shown
// after the provider last held a call back, and how long one hold shown
// stays before another replaces it. A provider at its limit is held back
// and freed with every call (a window frees one place, a call takes it):
// told each time, every waiting batch would write its status twice per
// call, all of them, so a cluster's batches on a saturated provider would
// write as fast as the provider answers. Shown with this linger, a batch
// hears that a wait began at once, and at most one change of it every
// HoldLinger after: its RateLimited condition is at most that late to
// clear, and a batch's status writes do not grow with the call rate.
const HoldLinger = 5 * time.Second

// holdState is what a batch's owner shows of the dispatcher's state.
type holdState struct {
	allowed  bool
	reason   ratewindow.Reason
	window   string
	noneWarm bool
}

// shownHold is what the batches were last told (OnChange) and what
// Progress reports of the provider's hold.
type shownHold struct {
	state holdState
	dec   ratewindow.Decision // the decision behind state, for Progress
	at    time.Time           // when state was last told
	// clearSince is when the provider was first seen free of the shown
	// hold, zero while it holds.
	clearSince time.Time
}

// tellChanges calls OnChange of every batch with items waiting when what
// holds them back changed since they were last told, as HoldLinger allows,
// and of a namespace's batches when its budget began to hold them. It
// returns how soon a change it held back is due (0: none waits).
func (d *Dispatcher) tellChanges() (recheck time.Duration) {
	d.mu.Lock()
	now := d.clock.Now()
	cur, dec := d.holdNow()
	switch {
	case !cur.allowed:
		d.shown.clearSince = time.Time{}
	case !d.shown.state.allowed && d.shown.clearSince.IsZero():
		d.shown.clearSince = now
	}
	tell := d.tell // a namespace's budget began to hold its batches (holdTenant)
	d.tell = nil
	due := d.shown.dueAt(cur)
	switch {
	case cur == d.shown.state:
		if !cur.allowed {
			d.shown.dec = dec // the same hold, its newest RetryAt
		}
	case now.Before(due):
		recheck = due.Sub(now)
	default:
		d.shown = shownHold{state: cur, dec: dec, at: now}
		for _, b := range d.batches {
			if b.OnChange != nil && b.more() {
				tell = append(tell, b.OnChange)
			}
		}
	}
	d.mu.Unlock()
	for _, f := range tell {
		f()
	}
	return recheck
}

// holdNow is what holds the provider's batches back now, as batches show
// it (called under d.mu). The pace of a minimum interval and a full set
// of concurrency slots change with every call and are not shown.
func (d *Dispatcher) holdNow() (holdState, ratewindow.Decision) {
	if d.limited.Allowed || !shownReason(d.limited.Reason) {
		return holdState{allowed: true, noneWarm: d.noneWarm()}, ratewindow.Decision{Allowed: true}
	}
	return holdState{reason: d.limited.Reason, window: d.limited.Window, noneWarm: d.noneWarm()}, d.limited
}

// shownReason says whether batches show a hold of this reason.
func shownReason(r ratewindow.Reason) bool {
	switch r {
	case ratewindow.ReasonWindow, ratewindow.ReasonTokens, ratewindow.ReasonBackoff, ratewindow.ReasonRetryAfter, ratewindow.ReasonBudget:
		return true
	}
	return false
}

// dueAt is when cur may replace what is shown: at once when nothing was
// held or the Ollama pool's warm endpoints changed; a hold's end once the
// provider was free of holds for HoldLinger; another hold HoldLinger after
// the shown one was told.
func (s *shownHold) dueAt(cur holdState) time.Time {
	switch {
	case s.state.allowed || cur.noneWarm != s.state.noneWarm:
		return time.Time{}
	case cur.allowed:
		return s.clearSince.Add(HoldLinger)
	default:
		return s.at.Add(HoldLinger)
	}
}

// shownLimit is the provider's hold as a batch's Progress reports it: the
// hold batches were told of while one is shown, else the pace of the
// moment (called under d.mu).
func (d *Dispatcher) shownLimit() ratewindow.Decision {
	if !d.shown.state.allowed || shownReason(d.limited.Reason) {
		return d.shown.dec
	}
	return d.limited
}

package dispatch

import (
	"cmp"
	"context"
	"fmt"
	"time"

	"github.com/llmquota/llmquota/internal/ratewindow"
)

// Standby grants let a gateway replica keep serving while no manager leads
// (docs/gateway.md, "Serving through an election"). A standby grant is a
// spare that may be held for StandbyFor: it is counted in every window
// from when it is lent until StandbyFor later has left the window
// (ratewindow's Defer), so a call sent at any moment up to then stays
// inside the provider's windows; it holds its concurrency slot and its
// budget reservation until it ends, as any grant does; and the quota
// state that counts it is persisted before it is lent, so a new leader
// counts it too.

// StandbyFor is how long after it is lent a standby grant may be sent.
const StandbyFor = time.Minute

// Lend gives up to n standby grants (at most Config.StandbyCalls) for
// calls like ask, and the time they must be sent by. Each is admitted as
// a spare is: at once, never from the last SpareKeepPercent of a window or
// of the concurrency slots, and none where SpareUse is zero (a minimum
// interval, a short window, a pool), while an interactive call waits, or
// while the dispatcher is held (HoldUntil). Each ends like any grant: Done
// when sent, Cancel when given back unsent (it then leaves the windows),
// Expire when its holder vanished. The error is the persist's; then no
// grant is lent.
func (d *Dispatcher) Lend(ctx context.Context, ask Ask, n int) ([]*Grant, time.Time, error) {
	grants, until, noReservation := d.lend(ask, n)
	if noReservation { // reserve (and persist) a block of calls, as the lane does, and try again
		d.reserve(ctx, d.tokensFor(ask.InputChars, ask.MaxTokens))
		grants, until, _ = d.lend(ask, n)
	}
	if len(grants) == 0 || d.cfg.Persist == nil {
		return grants, until, nil
	}
	if err := d.persistQuota(ctx); err != nil {
		for _, g := range grants {
			g.Cancel()
		}
		return nil, until, fmt.Errorf("persisting the quota of %d standby grants: %w", len(grants), err)
	}
	return grants, until, nil
}

// lend admits and defers what Lend gives; noReservation says a
// reservation was what refused the first.
func (d *Dispatcher) lend(ask Ask, n int) (grants []*Grant, until time.Time, noReservation bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	now := d.clock.Now()
	until = now.Add(StandbyFor)
	n = min(n, d.cfg.StandbyCalls, ratewindow.MaxDeferred-d.limiter.Deferred(now))
	if n <= 0 || d.spareUse == 0 || !d.admitting() || d.draining || len(d.lane) > 0 {
		return nil, until, false
	}
	model := cmp.Or(ask.Model, d.cfg.DefaultModel)
	est, nsCost := d.tokensFor(ask.InputChars, ask.MaxTokens), tokenCost(ask.InputChars, ask.MaxTokens)
	for len(grants) < n {
		g, dec := d.spareGrant(now, ask, model, est, nsCost)
		if g == nil {
			noReservation = len(grants) == 0 && dec.Reason == ratewindow.ReasonReservation
			break
		}
		g.standbyUntil = until
		d.standbyOut++
		d.limiter.Defer(now, est, until)
		d.scopeDefer(now, ask.Namespace, model, nsCost, until)
		grants = append(grants, g)
	}
	return grants, until, noReservation
}

// windowAt is when the grant's place in the windows is counted: its
// deadline for a standby grant, its grant for any other.
func (g *Grant) windowAt() time.Time {
	if !g.standbyUntil.IsZero() {
		return g.standbyUntil
	}
	return g.at
}

// scopeDefer moves a standby grant's admission in its scopes to until, as
// Lend does in the provider's windows (called under d.mu).
func (d *Dispatcher) scopeDefer(now time.Time, namespace, model string, tokens ratewindow.Cost, until time.Time) {
	if t := d.tenants[namespace]; t != nil && t.scope.limiter != nil {
		t.scope.limiter.Defer(now, tokens, until)
	}
	if m := d.models[model]; m != nil && m.limiter != nil {
		m.limiter.Defer(now, tokens, until)
	}
}

// StandbyCalls is how many standby grants one Lend gives at most.
func (d *Dispatcher) StandbyCalls() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.spareUse == 0 {
		return 0
	}
	return d.cfg.StandbyCalls
}

package dispatch

import (
	"cmp"
	"context"
	"sync"
	"time"

	"github.com/llmquota/llmquota/internal/provider"
	"github.com/llmquota/llmquota/internal/ratewindow"
)

// Ask is an interactive call's request for quota: a gateway call that
// sends on its own once granted. Interactive calls have a lane of their
// own, served before any batch item: while an Ask waits, no batch item is
// admitted, so a batch yields at its next step.
type Ask struct {
	// Namespace is the caller's namespace.
	Namespace string
	// Model is the model the call names ("" for the provider's default).
	Model string
	// InputChars is the length of everything the call sends as input.
	InputChars int
	// MaxTokens is the output cap the call sends: the bound its token and
	// budget reservations rest on. It must be positive.
	MaxTokens int64
	// MaxWait bounds how long the call waits for quota. An Ask whose wait
	// would end later is refused at once with the exact time quota frees.
	MaxWait time.Duration
	// Prefetch asks for up to this many spare grants besides the call's
	// own, for calls of the same namespace, model and cost at most that
	// the holder expects within SpareUse (Grant.Spares). Spares are given
	// only as they are admissible at once, after the call's own grant, and
	// never from the last SpareKeepPercent of a window or of the
	// concurrency slots. None are given for a provider with a minimum
	// interval.
	Prefetch int
}

// Grant is the quota one interactive call holds: its admission in every
// window, a concurrency slot, its tokens and its budget reservation. Exactly
// one of Done (the call was sent) or Cancel (it was not) ends it.
type Grant struct {
	d         *Dispatcher
	namespace string          // the caller's, for Usage and fairness
	at        time.Time       // when it was granted: when the call was sent, near enough
	charged   int64           // what fairness charged at the grant
	est       ratewindow.Cost // the provider's tokens charged at the grant
	nsCost    ratewindow.Cost // the tokens its namespace's and model's own limits charged
	model     string          // the model it calls, for the model's own limits
	res       *reservation
	// endpoint is the pool's server the call goes to (an Ollama pod);
	// empty for a provider of one endpoint.
	endpoint Endpoint
	// writing is set for a provider with a minimum interval: nothing more
	// is admitted until the holder says the call was written (Wrote), and
	// the interval counts from then.
	writing bool
	wrote   sync.Once
	once    sync.Once
	// spares are the spare grants given with this one (Ask.Prefetch);
	// spare is set on each of them.
	spares []*Grant
	spare  bool
	// standbyUntil is when a standby grant (Lend) must have been sent by:
	// its place in the windows counts from there (Limiter.Defer); zero
	// for any other grant.
	standbyUntil time.Time
	// adopted is set on a call a previous leader granted (Adopt): its end
	// frees its slots and settles nothing else.
	adopted bool
}

// ReportsWrite says the grant's holder must call Wrote when the call's
// request reaches the connection (the provider has a minimum interval):
// until then, or until the grant ends, nothing more is admitted.
func (g *Grant) ReportsWrite() bool { return g.writing }

// Wrote says the call's request reached the connection, now: the minimum
// interval to the next call counts from here, as a batch's does from its
// own write (see Dispatcher.wrote). Later calls do nothing; a grant that
// ends first counts its end as the write.
func (g *Grant) Wrote() {
	if !g.writing {
		return
	}
	g.wrote.Do(func() {
		g.d.limiter.Wrote(g.d.clock.Now())
		g.d.poke()
	})
}

// Endpoint is the server of a pool the call must be sent to (its Name
// and Address); zero for a provider of one endpoint, whose own address
// the caller knows.
func (g *Grant) Endpoint() Endpoint {
	return Endpoint{Name: g.endpoint.Name, Address: g.endpoint.Address, Version: g.endpoint.Version}
}

// waiter is an Ask in the interactive lane.
type waiter struct {
	ask      Ask
	deadline time.Time
	done     chan struct{} // closed once grant or refusal is set
	grant    *Grant
	refusal  ratewindow.Decision
	// held is what it waits for, while it waits at the lane's head.
	held ratewindow.Decision
}

// InteractiveStats counts the interactive lane's decisions.
type InteractiveStats struct {
	Granted, Refused int64
	// Waiting are the Asks in the lane now.
	Waiting int
}

// laneAction is I/O the lane needs done outside the lock before it can go on.
type laneAction struct {
	reserve bool            // reserve (and persist) a block of calls
	tokens  ratewindow.Cost // the token cost of each call of the block
	commit  *commitment     // persist a budget commitment
}

// Acquire asks for quota for one interactive call. It returns a Grant, or
// the Decision that refused it: RetryAt is when the refusing constraint
// frees, exact from the windows when nothing else is admitted before. The
// error is ctx's when the caller gave up while waiting.
func (d *Dispatcher) Acquire(ctx context.Context, ask Ask) (*Grant, ratewindow.Decision, error) {
	w := &waiter{ask: ask, deadline: d.clock.Now().Add(max(0, ask.MaxWait)), done: make(chan struct{})}
	d.mu.Lock()
	if !d.admitting() {
		// A new leader still learning the calls in flight (HoldUntil):
		// refused at once, as by a full slot; the quota authority answers
		// its callers before they get here.
		d.counted(false)
		d.mu.Unlock()
		return nil, ratewindow.Decision{Reason: ratewindow.ReasonConcurrency}, nil
	}
	if head := d.headHeld(); ask.MaxWait <= 0 && head.Reason != ratewindow.ReasonNone {
		// A call that will not wait is not queued behind one that does:
		// what holds the head holds it too, and it learns so at once.
		d.counted(false)
		d.mu.Unlock()
		return nil, head, nil
	}
	d.lane = append(d.lane, w)
	now := d.clock.Now()
	d.relearn(now)
	d.serveLane(now) // at once when it can; I/O it needs is the loop's
	d.mu.Unlock()
	d.poke() // the loop serves the lane from now on, and recomputes its sleep
	select {
	case <-w.done:
		return w.grant, w.refusal, nil
	case <-ctx.Done():
	}
	d.mu.Lock()
	select {
	case <-w.done: // granted while giving up: not sent, so given back
		d.mu.Unlock()
		if w.grant != nil {
			w.grant.Cancel()
		}
	default:
		d.dropWaiter(w)
		d.mu.Unlock()
	}
	return nil, ratewindow.Decision{}, ctx.Err()
}

// serveLane grants or refuses the lane's Asks in order (called under d.mu).
// blocked is true while an Ask still waits: batches must not take what it
// waits for. The wait is when to look again (-1: at once, after act).
func (d *Dispatcher) serveLane(now time.Time) (wait time.Duration, blocked bool, act laneAction) {
	for len(d.lane) > 0 {
		w := d.lane[0]
		w.held = ratewindow.Decision{} // until hold says again
		if d.draining {
			d.refuse(w, ratewindow.Decision{Reason: ratewindow.ReasonConcurrency})
			continue
		}
		if d.noneWarm() { // refused at once: no wait for quota brings a pod up
			d.refuse(w, ratewindow.Decision{Reason: ratewindow.ReasonNoEndpoint})
			continue
		}
		if !d.endpointRoom() { // every warm endpoint is at its learned limit: a call's end frees one
			if wait, ok := d.hold(w, ratewindow.Decision{Reason: ratewindow.ReasonConcurrency}, now); ok {
				return wait, true, laneAction{}
			}
			continue
		}
		res, hold := d.budgetFor(now, w.ask.Namespace, w.ask.InputChars, w.ask.MaxTokens)
		if hold != nil {
			if hold.Commit {
				c := d.toCommit(hold)
				return -1, true, laneAction{commit: &c}
			}
			if wait, ok := d.hold(w, hold.decision(), now); ok {
				return wait, true, laneAction{}
			}
			continue
		}
		est, nsCost := d.tokensFor(w.ask.InputChars, w.ask.MaxTokens), tokenCost(w.ask.InputChars, w.ask.MaxTokens)
		model := cmp.Or(w.ask.Model, d.cfg.DefaultModel)
		if dec, full := d.scopeCheck(now, w.ask.Namespace, model, nsCost); full != nil {
			// Refused at once, with when its namespace's or model's window
			// frees: an Ask waiting here would hold every other call back.
			d.unbudget(now, res)
			d.refuse(w, dec)
			continue
		}
		dec := d.limiter.Admit(now, est)
		if dec.Allowed {
			g := d.granted(now, w.ask, model, est, nsCost, res)
			if g == nil { // the last endpoint went cold just now; the slot stays spent
				d.refuse(w, ratewindow.Decision{Reason: ratewindow.ReasonNoEndpoint})
				continue
			}
			g.spares = d.prefetch(now, w.ask, model, est, nsCost)
			d.answer(w, g, dec)
			continue
		}
		d.unbudget(now, res)
		d.limited = dec
		if dec.Reason == ratewindow.ReasonReservation {
			return -1, true, laneAction{reserve: true, tokens: est}
		}
		if wait, ok := d.hold(w, dec, now); ok {
			return wait, true, laneAction{}
		}
	}
	return 0, false, laneAction{}
}

// granted makes the Grant of a call the limiter just admitted: it picks
// the pool's endpoint and charges the call's scopes and fairness. Nil when
// no endpoint is warm: then the admission's slot and the budget come back
// (the window keeps the admission). Called under d.mu.
func (d *Dispatcher) granted(now time.Time, ask Ask, model string, est, nsCost ratewindow.Cost, res *reservation) *Grant {
	ep, ok := d.pickEndpoint()
	if !ok {
		d.limiter.Release(now, ratewindow.Result{Outcome: ratewindow.OutcomeNeutral})
		d.unbudget(now, res)
		return nil
	}
	d.scopeAdmit(now, ask.Namespace, model, nsCost)
	d.fair.charge(ask.Namespace, inputEstimate(ask.InputChars))
	writing := d.cfg.Limits.MinInterval > 0
	if writing { // before the next admission: see Grant.Wrote
		d.limiter.Writing()
	}
	return &Grant{d: d, at: now, namespace: ask.Namespace, model: model, charged: inputEstimate(ask.InputChars),
		est: est, nsCost: nsCost, res: res, endpoint: ep, writing: writing}
}

// headHeld is what the lane's head waits for; none when no Ask waits, or
// its wait has passed (called under d.mu).
func (d *Dispatcher) headHeld() ratewindow.Decision {
	if len(d.lane) == 0 {
		return ratewindow.Decision{}
	}
	h := d.lane[0].held
	if !h.RetryAt.IsZero() && !h.RetryAt.After(d.clock.Now()) {
		return ratewindow.Decision{}
	}
	return h
}

// hold keeps the lane's head waiting for dec, or refuses it when dec
// cannot free before its deadline; ok is true while it waits.
func (d *Dispatcher) hold(w *waiter, dec ratewindow.Decision, now time.Time) (time.Duration, bool) {
	switch {
	case dec.Reason == ratewindow.ReasonTooLarge:
	case dec.RetryAt.IsZero() && now.Before(w.deadline): // concurrency: a release pokes the loop
		w.held = dec
		return w.deadline.Sub(now), true
	case !dec.RetryAt.IsZero() && !dec.RetryAt.After(w.deadline):
		w.held = dec
		return dec.RetryAt.Sub(now), true
	}
	d.refuse(w, dec)
	return 0, false
}

// refuse ends the lane's head with dec (called under d.mu).
func (d *Dispatcher) refuse(w *waiter, dec ratewindow.Decision) { d.answer(w, nil, dec) }

// answer takes the lane's head out with its grant, or, when g is nil, the
// decision that refused it, counts the decision and wakes its caller
// (called under d.mu).
func (d *Dispatcher) answer(w *waiter, g *Grant, dec ratewindow.Decision) {
	d.lane[0] = nil
	d.lane = d.lane[1:]
	if g != nil {
		w.grant = g
		d.grantsOut++
	} else {
		w.refusal = dec
	}
	d.counted(g != nil)
	close(w.done)
}

// counted counts a decision of the lane (called under d.mu).
func (d *Dispatcher) counted(granted bool) {
	if granted {
		d.lanes.Granted++
	} else {
		d.lanes.Refused++
		d.laneUse[laneIndexInteractive].refusal(d.clock.Now())
	}
	if d.cfg.OnInteractive != nil {
		d.cfg.OnInteractive(granted)
	}
}

// dropWaiter takes a waiter that gave up out of the lane (called under d.mu).
func (d *Dispatcher) dropWaiter(w *waiter) {
	for i, x := range d.lane {
		if x == w {
			d.lane = append(d.lane[:i], d.lane[i+1:]...)
			return
		}
	}
}

// act does what the lane asked for outside the lock.
func (d *Dispatcher) act(ctx context.Context, a laneAction) {
	switch {
	case a.commit != nil:
		d.commitCost(ctx, *a.commit)
	case a.reserve:
		d.reserve(ctx, a.tokens)
	}
}

// Interactive returns the interactive lane's counts.
func (d *Dispatcher) Interactive() InteractiveStats {
	d.mu.Lock()
	defer d.mu.Unlock()
	s := d.lanes
	s.Waiting = len(d.lane)
	return s
}

// Done ends a grant whose call was sent: resp is its answer, or err its
// failure. The slot is freed, the limiter learns from the answer, and the
// budget is settled from the usage (the worst case when the outcome is
// unknown). Later calls of Done, Cancel or Expire do nothing.
func (g *Grant) Done(resp *provider.Response, err error) {
	if g.adopted {
		g.end(g.endAdopted)
		return
	}
	g.end(func(d *Dispatcher, now time.Time) {
		pe := d.releaseSlot(now, g.est, resp, err)
		d.endpointDone(g.endpoint, g.at, now, resp, pe, true)
		d.learn(now, g.at, pe)
		d.mu.Lock()
		defer d.mu.Unlock()
		d.scopeRelease(now, g.namespace, g.model, extraTokens(resp, pe, g.nsCost))
		d.book(now, Usage{Namespace: g.namespace, Lane: LaneInteractive}, g.charged, g.res, resp, pe)
	})
}

// Cancel ends a grant whose call was never sent: its slot and budget
// reservation come back. A call's own grant stays counted in the windows
// (its caller may have been told, and the windows cannot tell); a spare
// given back unused leaves them too (Limiter.Unadmit), so spares a replica
// did not need cost the others nothing.
func (g *Grant) Cancel() {
	if g.adopted {
		g.end(g.endAdopted)
		return
	}
	g.end(func(d *Dispatcher, now time.Time) {
		if g.spare {
			d.limiter.Unadmit(g.windowAt(), g.est)
		} else {
			d.limiter.Release(now, ratewindow.Result{Outcome: ratewindow.OutcomeNeutral})
		}
		d.endpointDone(g.endpoint, g.at, now, nil, nil, false)
		d.mu.Lock()
		defer d.mu.Unlock()
		if g.spare {
			d.scopeUnadmit(g.windowAt(), g.namespace, g.model, g.nsCost)
		} else {
			d.scopeRelease(now, g.namespace, g.model, ratewindow.Cost{})
		}
		d.unbudget(now, g.res)
	})
}

// Expire ends a grant whose holder vanished (a gateway that died, or never
// reported): the call may have been sent and billed, so its budget is
// charged the worst case; the slot comes back without teaching the backoff
// anything.
func (g *Grant) Expire() {
	if g.adopted {
		g.end(g.endAdopted)
		return
	}
	g.end(func(d *Dispatcher, now time.Time) {
		d.limiter.Release(now, ratewindow.Result{Outcome: ratewindow.OutcomeNeutral})
		d.endpointDone(g.endpoint, g.at, now, nil, nil, false)
		d.mu.Lock()
		defer d.mu.Unlock()
		d.scopeRelease(now, g.namespace, g.model, ratewindow.Cost{})
		if g.res != nil {
			d.settleBudget(now, g.res, nil, &provider.Error{Class: provider.ClassCanceled})
		}
	})
}

// end settles the grant once, for the first of Done, Cancel and Expire,
// and wakes the loop: a slot or budget may have come back.
func (g *Grant) end(settle func(d *Dispatcher, now time.Time)) {
	g.Wrote() // not said before: the end is the latest the request was written
	g.once.Do(func() {
		d := g.d
		settle(d, d.clock.Now())
		d.mu.Lock()
		d.grantsOut--
		if !g.standbyUntil.IsZero() {
			d.standbyOut--
		}
		d.mu.Unlock()
		d.poke()
	})
}

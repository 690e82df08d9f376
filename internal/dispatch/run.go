package dispatch

import (
	"context"
	"errors"
	"fmt"
	"net/http/httptrace"
	"slices"
	"sync"
	"time"

	"github.com/llmquota/llmquota/internal/provider"
	"github.com/llmquota/llmquota/internal/ratewindow"
)

// Run serves the batches until ctx ends. On the way out it gives back the
// unused reservation and persists the final quota state.
func (d *Dispatcher) Run(ctx context.Context) {
	defer d.shutdown()
	for ctx.Err() == nil {
		began := d.clock.Now()
		wait := d.step(ctx)
		if recheck := d.tellChanges(); recheck > 0 && wait >= 0 {
			wait = min(wait, recheck) // news of a hold's end is due then
		}
		d.steps.Add(1)
		if wait < 0 {
			continue
		}
		// The wait counts from when step read the clock: a slow step, or a
		// clock that moved meanwhile, shortens it.
		timer := d.clock.NewTimer(max(0, wait-d.clock.Since(began)))
		select {
		case <-ctx.Done():
		case <-d.wake:
		case <-timer.C():
		case <-d.readyChan(): // nil, never ready, unless held
		}
		timer.Stop()
	}
}

// idle is how long the loop sleeps with nothing to do; a poke wakes it sooner.
const idle = time.Minute

// step starts at most one call. It returns how long to wait before the next
// step, or -1 to step again at once. It decides under the dispatcher's lock
// (plan) and acts outside it: no network call, Kubernetes write or other
// dispatcher's lock is ever taken while this one is held.
func (d *Dispatcher) step(ctx context.Context) time.Duration {
	m := d.plan(d.clock.Now())
	switch {
	case m.lane != nil:
		d.act(ctx, *m.lane)
	case m.fallback != nil:
		d.sendToFallback(m.fallback, m.batch, m.item)
	case m.commit != nil:
		d.commitCost(ctx, *m.commit)
	case m.reserve != nil:
		d.reserve(ctx, *m.reserve)
	case m.failed != nil:
		m.batch.OnResult(*m.failed)
	case m.call != nil:
		if m.call.onSend != nil {
			m.call.onSend(m.call.waited)
		}
		go d.call(ctx, m.batch, m.item, m.call)
	}
	return m.wait
}

// move is what a step does once it lets go of the lock: at most one
// action, then wait (idle, -1 to step again at once, or a time).
type move struct {
	wait     time.Duration
	lane     *laneAction
	fallback *Dispatcher // the fallback that takes batch's item
	commit   *commitment
	reserve  *ratewindow.Cost
	failed   *Result // an item that can never be sent, reported to batch
	call     *callPlan
	batch    *batch
	item     Item
}

// callPlan is an admitted call, read under the lock.
type callPlan struct {
	params  Params
	est     ratewindow.Cost
	res     *reservation
	target  Endpoint
	timeout time.Duration
	wire    bool
	waited  time.Duration
	onSend  func(time.Duration)
}

// plan decides the step under the lock: serve the interactive lane first,
// else the next batch item, through the fallback, the budget, the
// namespace's and model's limits and the provider's windows, in that
// order; each that holds the item says how long to wait.
func (d *Dispatcher) plan(now time.Time) move {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.relearn(now)
	if !d.admitting() { // a new leader learning the calls in flight: readyChan wakes the loop
		return move{wait: idle}
	}
	if len(d.lane) > 0 { // interactive calls first: no batch item starts while one waits
		if wait, blocked, act := d.serveLane(now); blocked {
			return move{wait: wait, lane: &act}
		}
	}
	if d.draining {
		return move{wait: idle}
	}
	b, gate := d.next(now)
	if b == nil {
		d.limited = ratewindow.Decision{Allowed: true}
		if gate.IsZero() {
			return move{wait: idle}
		}
		return move{wait: gate.Sub(now)}
	}
	if d.writesHeld {
		// The answers waiting for their results' write reached
		// spec.crashRepay: no batch call starts until they are written
		// (HoldForWrites), so a crash pays at most that twice.
		return move{wait: idle}
	}
	it := b.queue[0]
	if fb := d.divert(it); fb != nil {
		b.take()
		return move{wait: -1, fallback: fb, batch: b, item: it}
	}
	if d.noneWarm() {
		// No warm endpoint and no fallback to take the item: hold it until
		// an endpoint is warm (Endpoints.Set pokes the loop).
		d.limited = ratewindow.Decision{Allowed: true}
		return move{wait: idle}
	}
	if !d.endpointRoom() {
		// Every warm endpoint has as many calls as it takes now (adaptive
		// limits): checked before admission, so no window is spent on a
		// call with nowhere to go; a call's end pokes the loop.
		d.limited = ratewindow.Decision{Reason: ratewindow.ReasonConcurrency}
		return move{wait: idle}
	}
	res, hold := d.budget(now, b, it)
	if hold != nil {
		return d.planHold(now, hold)
	}
	return d.planCall(now, b, it, res)
}

// planHold is the move of an item the budget holds: commit spend first,
// wait for the namespace's budget while the others go on, or wait for the
// provider's.
func (d *Dispatcher) planHold(now time.Time, hold *budgetHold) move {
	switch {
	case hold.Commit:
		c := d.toCommit(hold)
		return move{wait: -1, commit: &c}
	case hold.namespace != "": // this namespace waits; the others go on
		d.holdTenant(hold)
		return move{wait: -1}
	}
	d.limited = hold.decision()
	return move{wait: hold.Until.Sub(now)}
}

// planCall admits the item under the namespace's, the model's and the
// provider's limits, or says why it waits.
func (d *Dispatcher) planCall(now time.Time, b *batch, it Item, res *reservation) move {
	est := d.estimate(b, it)
	nsCost, model := d.cost(b, it), d.modelOf(b)
	if dec, full := d.scopeCheck(now, b.Namespace, model, nsCost); full != nil { // this namespace or model waits; the others go on
		d.unbudget(now, res)
		if dec.Reason == ratewindow.ReasonTooLarge {
			return d.refuseTooLarge(now, b, it, nsCost, dec)
		}
		d.holdScope(full, dec)
		return move{wait: -1}
	}
	dec := d.limiter.AdmitKeeping(now, est, d.cfg.InteractiveReserve)
	if !dec.Allowed {
		d.unbudget(now, res)
		if dec.Reason == ratewindow.ReasonTooLarge {
			return d.refuseTooLarge(now, b, it, est, dec)
		}
		d.limited = dec
		switch dec.Reason {
		case ratewindow.ReasonReservation:
			return move{wait: -1, reserve: &est}
		case ratewindow.ReasonConcurrency:
			return move{wait: idle} // a release pokes the loop
		}
		return move{wait: dec.RetryAt.Sub(now)}
	}
	// The endpoint is chosen only once the call is admitted, so refusals
	// do not skew the round robin.
	target, ok := d.pickEndpoint()
	if !ok { // the last endpoint went cold just now; the slot stays spent
		d.limiter.Release(now, ratewindow.Result{Outcome: ratewindow.OutcomeNeutral})
		d.unbudget(now, res)
		return move{wait: idle}
	}
	d.limited = dec
	d.scopeAdmit(now, b.Namespace, model, nsCost)
	// The config is read under the lock: Reconfigure may change it.
	c := &callPlan{est: est, res: res, target: target, wire: d.cfg.Limits.MinInterval > 0,
		timeout: d.cfg.CallTimeout, onSend: d.cfg.OnSend, waited: max(0, now.Sub(later(b.openedAt, it.requeued)))}
	if c.wire { // before the next step can admit: see wrote
		d.limiter.Writing()
	}
	d.fair.charge(b.Namespace, inputEstimate(len(it.Prompt)+len(b.Params.System)))
	b.take()
	b.inFlight++
	d.inFlight++
	c.params = b.Params
	if c.params.Model == "" {
		c.params.Model = d.cfg.DefaultModel
	}
	d.calls.Add(1) // under the lock, so Drain sees every call it must wait for
	return move{wait: -1, call: c, batch: b, item: it}
}

// ErrorTooLarge is the error class of an item that can never be sent: its
// token cost alone is more than one of the token windows holds.
const ErrorTooLarge = "TooLarge"

// refuseTooLarge fails an item whose token cost alone (cost) is more than
// the window dec names holds: no wait lets it through, and waiting for it
// would hold every batch behind it. Its result is reported outside the lock.
func (d *Dispatcher) refuseTooLarge(now time.Time, b *batch, it Item, cost ratewindow.Cost, dec ratewindow.Decision) move {
	b.take()
	d.finish(b, now)
	r := Result{ID: it.ID, Prompt: it.Prompt, Attempts: it.Attempts, Provider: d.cfg.Name, ErrorClass: ErrorTooLarge,
		ErrorMessage: fmt.Sprintf("its token cost (about %d input tokens, its prompt and system text at 4 characters a token, and %d output) "+
			"is more than the %s window of LLMProvider %s holds, so no wait lets it through: shorten the prompt or lower spec.maxTokens",
			cost.Input, cost.Output, dec.Window, d.cfg.Name)}
	return move{wait: -1, failed: &r, batch: b}
}

// estimate is the token cost charged at admission: the prompt at ~4
// characters a token, and the output bound.
func (d *Dispatcher) estimate(b *batch, it Item) ratewindow.Cost {
	if !d.countsTokens() {
		return ratewindow.Cost{}
	}
	return d.cost(b, it)
}

// cost is an item's token cost at admission, whether or not the provider
// counts tokens (a namespace's own limits may): its output is estimated at
// the cap sent, up to typicalOutput, and corrected from the answer's
// usage. The whole cap is charged where the provider counts it when the
// call starts (CapCountedAtStart), and wherever a window of output tokens
// alone counts the call (Anthropic's OTPM counts the request's
// max_tokens): less would let a burst of calls past the window at the
// provider.
func (d *Dispatcher) cost(b *batch, it Item) ratewindow.Cost {
	out := int64(outputCap(b.Params))
	if !d.cfg.CapCountedAtStart && !d.countsOutputAlone(b.Namespace, d.modelOf(b)) {
		out = min(out, typicalOutput)
	}
	return tokenCost(len(it.Prompt)+len(b.Params.System), out)
}

// countsOutputAlone reports whether the provider's limits, the model's or
// the namespace's have a window of output tokens alone.
func (d *Dispatcher) countsOutputAlone(namespace, model string) bool {
	for _, c := range []*ratewindow.Config{&d.cfg.Limits, d.cfg.ModelLimits[model], d.cfg.Shares.limitsOf(namespace)} {
		if c != nil && slices.ContainsFunc(c.TokenWindows, func(w ratewindow.TokenWindow) bool { return w.Kind == ratewindow.TokensOutput }) {
			return true
		}
	}
	return false
}

// typicalOutput bounds a batch item's output estimate at admission: a cap
// of thousands charged in full to the token windows would hold most of
// them idle (the answer's usage corrects the estimate upward when it is
// longer).
const typicalOutput = 256

// tokensFor is the token cost charged at admission for inputChars of input
// and an output bound; none when the provider has no token window.
func (d *Dispatcher) tokensFor(inputChars int, output int64) ratewindow.Cost {
	if !d.countsTokens() {
		return ratewindow.Cost{}
	}
	return tokenCost(inputChars, output)
}

// countsTokens reports whether the provider has a token window of any kind.
func (d *Dispatcher) countsTokens() bool {
	return d.cfg.Limits.Tokens != nil || len(d.cfg.Limits.TokenWindows) > 0
}

// reserve sets aside the next block of calls and persists it before any is
// spent, so a crash cannot lose track of them.
func (d *Dispatcher) reserve(ctx context.Context, est ratewindow.Cost) {
	d.limiter.Reserve(d.cfg.ReserveBlock, ratewindow.Cost{Input: d.cfg.ReserveBlock * est.Input, Output: d.cfg.ReserveBlock * est.Output})
	if err := d.persistQuota(ctx); err != nil {
		d.limiter.Unreserve()
		if ctx.Err() == nil {
			d.log.Error(err, "Persisting quota reservation; retrying")
			select {
			case <-ctx.Done():
			case <-d.clock.After(time.Second):
			}
		}
	}
}

func (d *Dispatcher) shutdown() {
	d.mu.Lock()
	d.draining = true // no interactive call waits on a dispatcher that stopped
	d.serveLane(d.clock.Now())
	var tell []func()
	for _, b := range d.batches {
		if b.OnChange != nil {
			tell = append(tell, b.OnChange)
		}
	}
	d.mu.Unlock()
	// Each batch left is told: it runs in no dispatcher now (its provider
	// is not Ready, or was edited or deleted), and its owner must show that.
	for _, f := range tell {
		f()
	}
	if d.cfg.Persist == nil {
		return
	}
	if calls, _ := d.limiter.Unreserve(); calls == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := d.persistQuota(ctx); err != nil {
		d.log.Error(err, "Giving back the unused quota reservation")
	}
}

// persistQuota writes the quota state as it is now. Reservations (the
// loop), standby lends (gateway requests) and the shutdown write from
// their own goroutines; one at a time, each snapshot taken when its turn
// comes, a write never replaces a newer state with an older one (which
// could drop a reservation or a lend from what a new leader counts).
func (d *Dispatcher) persistQuota(ctx context.Context) error {
	d.persisting.Lock()
	defer d.persisting.Unlock()
	return d.cfg.Persist(ctx, d.limiter.Snapshot(d.clock.Now(), nil))
}

// call runs one attempt as c planned it and settles its outcome.
func (d *Dispatcher) call(ctx context.Context, b *batch, it Item, c *callPlan) {
	defer d.calls.Done() // after the result is reported: see Drain
	it.Attempts++
	params, target := c.params, c.target
	cctx, cancel := context.WithTimeout(ctx, c.timeout)
	if c.wire {
		var done func()
		cctx, done = d.wrote(cctx)
		defer done()
	}
	started := d.clock.Now()
	resp, err := target.Client.Generate(cctx, provider.Request{
		Model: params.Model, Prompt: it.Prompt, System: params.System,
		MaxTokens: outputCap(params), Temperature: params.Temperature, ThinkingBudget: params.ThinkingBudget,
	})
	cancel()
	now := d.clock.Now()

	pe := d.releaseSlot(now, c.est, resp, err)
	d.learn(now, started, pe)

	d.endpointDone(target, started, now, resp, pe, true)
	if d.cfg.OnCall != nil {
		outcome := "Succeeded"
		if pe != nil {
			outcome = string(pe.Class)
		}
		d.cfg.OnCall(outcome, now.Sub(started))
	}
	if r, report := d.settle(b, it, params.Model, resp, pe, c.res, now); report != nil {
		report(r)
	}
	d.poke()
}

// wrote tells the limiter when the call's request reached the connection
// (httptrace's WroteRequest), so that the minimum interval counts from
// there: CPU load between admission and the write then cannot bring two
// arrivals at the provider closer than the interval, and the guard only
// covers the network. done reports a call that ended without a write (a
// refused connection), so the next call is not held for ever.
func (d *Dispatcher) wrote(ctx context.Context) (context.Context, func()) {
	var once sync.Once
	report := func() {
		once.Do(func() {
			d.limiter.Wrote(d.clock.Now())
			d.poke()
		})
	}
	return httptrace.WithClientTrace(ctx, &httptrace.ClientTrace{WroteRequest: func(httptrace.WroteRequestInfo) { report() }}), report
}

// releaseSlot gives back a sent call's concurrency slot and teaches the
// limiter what the answer said (extra tokens, a failure, a Retry-After).
// It returns the failure as a classified error, nil on success.
func (d *Dispatcher) releaseSlot(now time.Time, est ratewindow.Cost, resp *provider.Response, err error) *provider.Error {
	var pe *provider.Error
	switch {
	case err == nil:
		d.limiter.Release(now, ratewindow.Result{Outcome: ratewindow.OutcomeSuccess,
			Extra: extraTokens(resp, nil, est), RetryAfter: exhausted(resp.RateLimit, now)})
	case errors.As(err, &pe):
		d.limiter.Release(now, ratewindow.Result{Outcome: outcomeOf(pe), RetryAfter: pe.RetryAt})
	default:
		pe = &provider.Error{Class: provider.ClassConnection, Message: err.Error()}
		d.limiter.Release(now, ratewindow.Result{Outcome: ratewindow.OutcomeFailure})
	}
	return pe
}

// settle books a finished attempt: a retry goes back to the front of its
// batch; otherwise it returns the item's final result and where to report
// it. report is nil when there is nothing to report (retried, batch
// removed, manager stopping).
func (d *Dispatcher) settle(b *batch, it Item, model string, resp *provider.Response, pe *provider.Error, res *reservation, now time.Time) (r Result, report func(Result)) {
	d.mu.Lock()
	defer d.mu.Unlock()
	b.inFlight--
	d.inFlight--
	d.scopeRelease(now, b.Namespace, model, extraTokens(resp, pe, d.cost(b, it)))
	paid := d.book(now, Usage{Namespace: b.Namespace, Lane: LaneBatch}, inputEstimate(len(it.Prompt)+len(b.Params.System)), res, resp, pe)
	switch {
	case pe == nil:
		d.authErr = ""
	case pe.Class == provider.ClassAuth:
		d.authErr = pe.Message
	}
	if b.removed || (pe != nil && pe.Class == provider.ClassCanceled) {
		// Removed, or the manager is stopping: no result, so the item is
		// sent again if the batch is admitted again.
		return Result{}, nil
	}
	if d.waitedOut(&it, pe, now) || (pe != nil && pe.Retryable() && it.Attempts-it.waits <= d.cfg.MaxRetries) {
		it.requeued = now
		b.queue = append([]Item{it}, b.queue...)
		b.groupUnsen++
		b.retries++
		return Result{}, nil
	}
	r = Result{ID: it.ID, Prompt: it.Prompt, Attempts: it.Attempts, Provider: d.cfg.Name}
	if pe == nil {
		r.Succeeded, r.Output, r.TokensIn, r.TokensOut, r.Latency = true, resp.Text, resp.InputTokens, resp.OutputTokens, resp.Latency
		r.Model, r.Finish, r.Cost = resp.Model, resp.Finish(), paid
		if r.Finish == provider.FinishLength && b.Params.TruncatedFails {
			r.Succeeded, r.ErrorClass = false, ErrorTruncated
			r.ErrorMessage = fmt.Sprintf("the answer was cut at the output cap of %d tokens (treatTruncatedAs: Failed)", outputCap(b.Params))
		}
	} else {
		r.ErrorClass, r.ErrorMessage = string(pe.Class), pe.Message
	}
	d.finish(b, now)
	return r, b.OnResult
}

// ErrorTruncated is the error class of an answer cut at the output cap
// when its batch says treatTruncatedAs: Failed.
const ErrorTruncated = "Truncated"

// outputCap is the output cap sent with a call: the batch's maxTokens, or
// the default the budgets reserve, so a call never spends more output
// than was set aside for it.
func outputCap(p Params) int32 {
	if p.MaxTokens > 0 {
		return p.MaxTokens
	}
	return defaultWorstOutput
}

// waitedOut reports whether an attempt's failure is the provider asking
// for time, not a failure: a 429 or 503 that said when to come back
// (Retry-After, Gemini's retryDelay). Such an attempt spends no retry,
// for up to MaxRateLimitedWait from the item's first; the provider is
// held until then (releaseSlot), so the retry waits without a call.
func (d *Dispatcher) waitedOut(it *Item, pe *provider.Error, now time.Time) bool {
	if pe == nil || pe.RetryAt.IsZero() || (pe.Class != provider.ClassRateLimited && pe.Class != provider.ClassServerError) {
		return false
	}
	if it.firstWait.IsZero() {
		it.firstWait = now
	}
	bound := d.cfg.MaxRateLimitedWait
	if bound == 0 {
		bound = time.Hour
	}
	if now.Sub(it.firstWait) > bound {
		return false
	}
	it.waits++
	return true
}

// finish counts an item of the current group as done and opens the next
// group once the whole group is.
func (d *Dispatcher) finish(b *batch, now time.Time) {
	b.groupLeft--
	if b.groupLeft <= 0 && b.groupUnsen == 0 {
		b.groupsDone++
		b.startGroup(now)
	}
}

// outcomeOf maps a failure to the backoff: provider trouble backs off, a
// refusal of this request does not, and a 429 holds by its own Retry-After
// (or backs off when it gave none).
func outcomeOf(e *provider.Error) ratewindow.Outcome {
	switch e.Class {
	case provider.ClassServerError, provider.ClassTimeout, provider.ClassConnection:
		return ratewindow.OutcomeFailure
	case provider.ClassRateLimited:
		if e.RetryAt.IsZero() {
			return ratewindow.OutcomeFailure
		}
	}
	return ratewindow.OutcomeNeutral
}

// exhausted turns "0 requests remaining until T" into a hold until T.
func exhausted(rl provider.RateLimit, now time.Time) time.Time {
	if rl.RequestsRemaining == 0 && rl.RequestsReset.After(now) {
		return rl.RequestsReset
	}
	return time.Time{}
}

func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

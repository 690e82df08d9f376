package dispatch

import (
	"cmp"
	"time"

	"github.com/llmquota/llmquota/internal/ratewindow"
)

// A new leader learns, before it admits anything, the gateway calls the
// previous leader granted that are still in flight: the windows, tokens and
// budgets carry over in the persisted quota state, but the calls in flight
// do not, and without them the new leader would hand out concurrency slots
// that are taken at the provider. The quota authority collects them from
// the gateways (Adopt), and holds every dispatcher until it has
// (HoldUntil).

// HoldUntil makes the dispatcher admit nothing, batch item or interactive
// call, until ready is closed. Call it before Run.
func (d *Dispatcher) HoldUntil(ready <-chan struct{}) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.ready = ready
}

// admitting says the dispatcher may admit calls: nothing holds it, or
// what held it let go (called under d.mu).
func (d *Dispatcher) admitting() bool {
	if d.ready == nil {
		return true
	}
	select {
	case <-d.ready:
		d.ready = nil
		return true
	default:
		return false
	}
}

// readyChan is what Run waits on besides its timer while the dispatcher
// is held; nil once it is not.
func (d *Dispatcher) readyChan() <-chan struct{} {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.admitting() {
		return nil
	}
	return d.ready
}

// Adopt counts a gateway call that a previous leader granted and that is
// still in flight, for the namespace and model it named and the pool
// server it went to (its address; "" for a provider of one endpoint). It
// takes a concurrency slot in the provider's limits, in the namespace's
// and the model's, and on the pool server, even past their limits, since
// the call is already at the provider; and nothing in the windows, tokens
// or budgets, which the previous leader counted and persisted before it
// granted the call. Done, Cancel or Expire of the Grant frees the slots
// and settles nothing else.
func (d *Dispatcher) Adopt(namespace, model, endpoint string) *Grant {
	now := d.clock.Now()
	model = cmp.Or(model, d.cfg.DefaultModel)
	var ep Endpoint
	if d.cfg.Endpoints != nil && endpoint != "" {
		ep = d.cfg.Endpoints.occupy(endpoint)
	}
	d.limiter.Occupy()
	d.mu.Lock()
	defer d.mu.Unlock()
	if cfg := d.cfg.Shares.limitsOf(namespace); cfg != nil {
		d.tenant(namespace).scope.occupy(cfg)
	}
	if m := d.model(model); m != nil {
		m.occupy(d.cfg.ModelLimits[model])
	}
	d.grantsOut++
	return &Grant{d: d, at: now, namespace: namespace, model: model, endpoint: ep, adopted: true}
}

// endAdopted frees what Adopt took (Grant.end's settle).
func (g *Grant) endAdopted(d *Dispatcher, now time.Time) {
	d.limiter.Release(now, ratewindow.Result{Outcome: ratewindow.OutcomeNeutral})
	d.endpointDone(g.endpoint, g.at, now, nil, nil, false)
	d.mu.Lock()
	defer d.mu.Unlock()
	d.scopeRelease(now, g.namespace, g.model, ratewindow.Cost{})
}

// occupy counts a call in flight that this scope did not admit (Adopt).
func (s *scoped) occupy(cfg *ratewindow.Config) {
	if l := s.use(cfg); l != nil {
		l.Occupy()
	}
}

// occupy counts a call in flight on the warm server at address that this
// dispatcher did not send (Adopt); zero when no warm server has it (the
// pod went cold: nothing left to count).
func (e *Endpoints) occupy(address string) Endpoint {
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, ep := range e.list {
		if ep.Address == address {
			e.loadOf(ep.Name).inFlight++
			return ep
		}
	}
	return Endpoint{}
}

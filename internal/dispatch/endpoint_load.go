package dispatch

import (
	"time"

	"github.com/llmquota/llmquota/internal/aimd"
	"github.com/llmquota/llmquota/internal/provider"
)

// endpointLoad is one pool endpoint's calls in flight and, with adaptive
// limits, the learner of how many it takes at once.
type endpointLoad struct {
	inFlight int
	learner  *aimd.Concurrency
}

// room says the endpoint takes one more call: always without adaptive
// limits (the provider's own concurrency limit holds), else under the
// learned limit.
func (l *endpointLoad) room(adaptive bool) bool {
	return !adaptive || l.learner == nil || l.inFlight < l.learner.Limit()
}

// take counts a call sent to it and says whether that filled its limit.
func (l *endpointLoad) take(adaptive bool) (atLimit bool) {
	l.inFlight++
	return adaptive && l.learner != nil && l.inFlight >= l.learner.Limit()
}

// configure turns the learning of each endpoint's concurrency on or off,
// under declared calls at once per endpoint (the provider's limit).
func (e *Endpoints) configure(adaptive bool, declared int) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.adaptive, e.declared = adaptive, max(1, declared)
	for _, l := range e.load {
		switch {
		case !adaptive:
			l.learner = nil
		case l.learner == nil:
			l.learner = aimd.NewConcurrency(e.declared)
		default:
			l.learner.SetDeclared(e.declared)
		}
	}
}

// loadOf returns the load of the endpoint name, made on first use (called
// under e.mu).
func (e *Endpoints) loadOf(name string) *endpointLoad {
	if e.load == nil {
		e.load = map[string]*endpointLoad{}
	}
	l, ok := e.load[name]
	if !ok {
		l = &endpointLoad{}
		if e.adaptive {
			l.learner = aimd.NewConcurrency(e.declared)
		}
		e.load[name] = l
	}
	return l
}

// keepLoad keeps the load of the endpoints still listed, forgets the
// others', and applies the memory each reports (called under e.mu).
func (e *Endpoints) keepLoad(list []Endpoint) {
	kept := make(map[string]*endpointLoad, len(list))
	for _, ep := range list {
		l := e.loadOf(ep.Name)
		if l.learner != nil && ep.GPUMemoryUsed > 0 {
			l.learner.Pressure(ep.GPUMemoryUsed, l.inFlight)
		}
		kept[ep.Name] = l
	}
	e.load = kept
}

// hasRoom says some warm endpoint takes one more call now.
func (e *Endpoints) hasRoom() bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, ep := range e.list {
		if e.loadOf(ep.Name).room(e.adaptive) {
			return true
		}
	}
	return false
}

// done ends a call to ep sent at sent: it leaves the endpoint's calls in
// flight and, with adaptive limits, teaches its learner: an answer by its
// pace, an overload (5xx, timeout) by a cut. A call that was never answered
// (cancelled, reclaimed) teaches nothing.
func (e *Endpoints) done(ep Endpoint, sent, now time.Time, resp *provider.Response, pe *provider.Error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	l, ok := e.load[ep.Name]
	if !ok {
		return // no longer warm: forgotten
	}
	l.inFlight = max(0, l.inFlight-1)
	if l.learner == nil {
		return
	}
	switch {
	case pe != nil && (pe.Class == provider.ClassServerError || pe.Class == provider.ClassTimeout):
		l.learner.Overloaded(now, sent)
	case pe == nil && resp != nil:
		l.learner.Answered(now, sent, resp.OutputTokens, ep.atLimit)
	}
}

// Limits returns each warm endpoint's learned limit of calls at once; nil
// without adaptive limits.
func (e *Endpoints) Limits() map[string]int {
	e.mu.Lock()
	defer e.mu.Unlock()
	if !e.adaptive {
		return nil
	}
	out := make(map[string]int, len(e.list))
	for _, ep := range e.list {
		if l := e.loadOf(ep.Name); l.learner != nil {
			out[ep.Name] = l.learner.Limit()
		}
	}
	return out
}

// endpointRoom says the call about to be admitted has an endpoint to go
// to: always for a provider of one endpoint.
func (d *Dispatcher) endpointRoom() bool {
	return d.cfg.Endpoints == nil || d.cfg.Endpoints.hasRoom()
}

// endpointDone ends a call to a pool endpoint (see Endpoints.done) and
// counts its outcome for the cleanup requests (observeEndpoint); answered
// is false for a call never sent or never heard back from.
func (d *Dispatcher) endpointDone(ep Endpoint, sent, now time.Time, resp *provider.Response, pe *provider.Error, answered bool) {
	if d.cfg.Endpoints == nil {
		return
	}
	if !answered {
		resp, pe = nil, nil
	} else {
		d.observeEndpoint(ep, pe)
	}
	d.cfg.Endpoints.done(ep, sent, now, resp, pe)
}

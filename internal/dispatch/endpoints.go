package dispatch

import (
	"slices"
	"sync"

	"github.com/llmquota/llmquota/internal/provider"
)

// Endpoint is one warm server of a pool (an Ollama pod).
type Endpoint struct {
	// Name identifies it (the pod's name).
	Name string
	// Address is its base URL.
	Address string
	// Client calls it.
	Client provider.Client
	// Version says how Client is configured (the pool's context length):
	// a new version replaces the client even at the same address.
	Version string
	// GPUMemoryUsed is the part of its GPU memory the server's node uses
	// (the node agent's report), 0 when unknown: under adaptive limits,
	// memory near full stops the server's calls from growing.
	GPUMemoryUsed float64

	// atLimit says the server had as many calls in flight as its learned
	// limit when this call was sent to it (set by pick).
	atLimit bool
}

// Endpoints is the set of warm endpoints a pool's calls go to, round
// robin. The LLMProvider reconciler keeps it current from the pods' warm
// condition; a dispatcher with an empty set holds its items (or sends them
// to its fallback) until an endpoint is warm. It also counts each
// endpoint's consecutive server errors, so the manager can ask the node
// agent to clean up a pod that keeps failing.
type Endpoints struct {
	mu       sync.Mutex
	list     []Endpoint
	next     int
	failures map[string]int
	onChange func()
	// load is each endpoint's calls in flight and, with adaptive limits,
	// how many it takes at once (endpoint_load.go).
	load     map[string]*endpointLoad
	adaptive bool
	declared int
}

// Set replaces the warm endpoints. Endpoints whose name and address are
// unchanged keep their position and failure count.
func (e *Endpoints) Set(list []Endpoint) {
	e.mu.Lock()
	same := slices.EqualFunc(e.list, list, func(a, b Endpoint) bool { return a.Name == b.Name && a.Address == b.Address && a.Version == b.Version })
	if !same {
		e.list = slices.Clone(list)
		kept := map[string]int{}
		for _, ep := range list {
			if n, ok := e.failures[ep.Name]; ok {
				kept[ep.Name] = n
			}
		}
		e.failures = kept
	}
	e.keepLoad(list)
	notify := e.onChange
	e.mu.Unlock()
	if !same && notify != nil {
		notify() // a dispatcher holding items for want of an endpoint goes on
	}
}

// Len is the number of warm endpoints.
func (e *Endpoints) Len() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return len(e.list)
}

// pick returns the next endpoint in turn that has room for one more call
// (with adaptive limits), and counts the call in flight there; false when
// none is warm or none has room.
func (e *Endpoints) pick() (Endpoint, bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	for range len(e.list) {
		ep := e.list[e.next%len(e.list)]
		e.next++
		if l := e.loadOf(ep.Name); l.room(e.adaptive) {
			ep.atLimit = l.take(e.adaptive)
			return ep, true
		}
	}
	return Endpoint{}, false
}

// observe counts a call's outcome: a server error adds to the endpoint's
// consecutive failures, anything else clears them.
func (e *Endpoints) observe(name string, serverError bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.failures == nil {
		e.failures = map[string]int{}
	}
	if serverError {
		e.failures[name]++
	} else {
		delete(e.failures, name)
	}
}

// Failing returns the endpoints with at least threshold consecutive server
// errors and starts their counts again, so each run of failures is
// reported once.
func (e *Endpoints) Failing(threshold int) []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	var out []string
	for name, n := range e.failures {
		if n >= threshold {
			out = append(out, name)
			delete(e.failures, name)
		}
	}
	slices.Sort(out)
	return out
}

func (e *Endpoints) watch(poke func()) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.onChange = poke
}

// pickEndpoint is where an admitted call goes: the next warm endpoint of a
// pool with room, or the provider's one client; false when the pool has
// none warm or none with room.
func (d *Dispatcher) pickEndpoint() (Endpoint, bool) {
	if d.cfg.Endpoints == nil {
		return Endpoint{Client: d.cfg.Client}, true
	}
	return d.cfg.Endpoints.pick()
}

// observeEndpoint counts a call's outcome against its pool endpoint: the
// manager asks the node agent to clean up a pod that keeps failing.
func (d *Dispatcher) observeEndpoint(ep Endpoint, pe *provider.Error) {
	if d.cfg.Endpoints != nil && ep.Name != "" {
		d.cfg.Endpoints.observe(ep.Name, pe != nil && (pe.Class == provider.ClassServerError || pe.Class == provider.ClassTimeout))
	}
}

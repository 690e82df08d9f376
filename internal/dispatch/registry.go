package dispatch

import (
	"context"
	"sync"
)

// Registry holds the running dispatchers, one per provider.
type Registry struct {
	mu      sync.Mutex
	running map[string]*entry
}

type entry struct {
	d      *Dispatcher
	cancel context.CancelFunc
	done   chan struct{}
	// version identifies the provider configuration the dispatcher runs.
	version string
}

// NewRegistry returns an empty registry.
func NewRegistry() *Registry { return &Registry{running: map[string]*entry{}} }

// Get returns a provider's dispatcher, or nil.
func (r *Registry) Get(name string) *Dispatcher {
	r.mu.Lock()
	defer r.mu.Unlock()
	if e, ok := r.running[name]; ok {
		return e.d
	}
	return nil
}

// Version returns the configuration version a provider's dispatcher runs.
func (r *Registry) Version(name string) (string, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	e, ok := r.running[name]
	if !ok {
		return "", false
	}
	return e.version, true
}

// Start runs d under ctx. Stop the provider's previous dispatcher first and
// build d from its final Snapshot, so the quota carries over; batches of
// the previous one are resubmitted by their owners when they notice.
func (r *Registry) Start(ctx context.Context, d *Dispatcher, version string) {
	r.Stop(d.Name())
	ctx, cancel := context.WithCancel(ctx)
	e := &entry{d: d, cancel: cancel, done: make(chan struct{}), version: version}
	r.mu.Lock()
	r.running[d.Name()] = e
	r.mu.Unlock()
	go func() {
		defer close(e.done)
		d.Run(ctx)
	}()
}

// Stop stops a provider's dispatcher, waits until it has persisted its
// final quota state, and returns it (nil if none ran).
func (r *Registry) Stop(name string) *Dispatcher {
	r.mu.Lock()
	e := r.running[name]
	delete(r.running, name)
	r.mu.Unlock()
	if e == nil {
		return nil
	}
	e.cancel()
	<-e.done
	return e.d
}

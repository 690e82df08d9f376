package dispatch

import (
	"context"
	"sync"
)

// Registry holds the running dispatchers, one per provider. It is a
// manager Runnable that needs leader election: dispatchers run only while
// their manager leads, under the context Start receives, and Start returns
// only after every dispatcher stopped and persisted its final quota state,
// so a clean shutdown gives back the unused part of each reservation.
type Registry struct {
	started chan struct{}
	ctx     context.Context

	mu       sync.Mutex
	running  map[string]*entry
	stopping bool
	// ready holds each dispatcher run until it is closed (HoldUntil).
	ready <-chan struct{}
	// beforeRun sees each dispatcher before it is served (BeforeRun).
	beforeRun func(*Dispatcher)
}

type entry struct {
	d      *Dispatcher
	cancel context.CancelFunc
	done   chan struct{}
	// version identifies the provider configuration the dispatcher runs.
	version string
}

// NewRegistry returns an empty registry; dispatchers run once it is started.
func NewRegistry() *Registry {
	return &Registry{running: map[string]*entry{}, started: make(chan struct{})}
}

// Start runs the registry until ctx ends, then stops every dispatcher and
// waits until each persisted its final quota state.
func (r *Registry) Start(ctx context.Context) error {
	r.ctx = ctx
	close(r.started)
	<-ctx.Done()
	r.mu.Lock()
	r.stopping = true
	names := make([]string, 0, len(r.running))
	for name := range r.running {
		names = append(names, name)
	}
	r.mu.Unlock()
	for _, name := range names {
		r.Stop(name)
	}
	return nil
}

// HoldUntil holds every dispatcher the registry runs from admitting
// anything until ready is closed (Dispatcher.HoldUntil): the quota
// authority closes it once it knows the calls the previous leader's
// gateways still have in flight. Call it before Start.
func (r *Registry) HoldUntil(ready <-chan struct{}) { r.ready = ready }

// BeforeRun has fn see each dispatcher the registry runs before Get finds
// it or it admits anything: the quota authority counts in it the calls in
// flight that gateways told before it started. Call it before Start.
func (r *Registry) BeforeRun(fn func(*Dispatcher)) { r.beforeRun = fn }

// NeedLeaderElection says dispatchers run on the leader only.
func (r *Registry) NeedLeaderElection() bool { return true }

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

// SetVersion records that a provider's running dispatcher now runs
// version (after Reconfigure).
func (r *Registry) SetVersion(name, version string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if e, ok := r.running[name]; ok {
		e.version = version
	}
}

// Run runs d until the registry stops (it waits until the registry has
// started). Stop the provider's previous dispatcher first and build d from
// its final Snapshot, so the quota carries over; batches of the previous
// one are resubmitted by their owners when they notice. A registry that is
// stopping runs nothing new.
func (r *Registry) Run(d *Dispatcher, version string) {
	<-r.started
	r.Stop(d.Name())
	if r.ready != nil {
		d.HoldUntil(r.ready)
	}
	if r.beforeRun != nil {
		r.beforeRun(d)
	}
	ctx, cancel := context.WithCancel(r.ctx)
	e := &entry{d: d, cancel: cancel, done: make(chan struct{}), version: version}
	r.mu.Lock()
	if r.stopping {
		r.mu.Unlock()
		cancel()
		return
	}
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

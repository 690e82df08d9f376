package dispatch

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"k8s.io/utils/clock"

	"github.com/llmquota/llmquota/internal/emulator"
	"github.com/llmquota/llmquota/internal/ratewindow"
)

// TestRegistryStopPersistsQuota: when the manager stops, the registry's
// Start returns only after each dispatcher gave back the unused part of
// its reservation (persisted), so a clean restart loses no quota.
func TestRegistryStopPersistsQuota(t *testing.T) {
	_, c := emulated(t, emulator.Config{})
	var persisted atomic.Int32
	d, err := New(Config{Name: "p", Client: c, DefaultModel: "m", ReserveBlock: 10,
		Limits:  ratewindow.Config{MaxConcurrency: 1, Windows: []ratewindow.Window{{Name: "minute", Limit: 100, Period: time.Minute}}},
		Persist: func(context.Context, []byte) error { persisted.Add(1); return nil },
	}, nil, clock.RealClock{}, logr.Discard(), nil)
	if err != nil {
		t.Fatal(err)
	}
	r := NewRegistry()
	ctx, cancel := context.WithCancel(context.Background())
	stopped := make(chan struct{})
	go func() { _ = r.Start(ctx); close(stopped) }()
	r.Run(d, "v1")
	col := newCollector(1)
	d.Submit(Batch{Key: "a/b", Namespace: "a", Size: 1, Items: items("x", 1), OnResult: col.add})
	col.wait(t, 10*time.Second)
	reserved := persisted.Load()
	if reserved != 1 {
		t.Fatalf("%d persists for one call of a 10-call block, want 1 (the reservation)", reserved)
	}
	cancel()
	<-stopped
	if got := persisted.Load(); got != reserved+1 {
		t.Fatalf("%d persists after stop, want %d: the unused 9 calls were not given back", got, reserved+1)
	}
	if r.Get("p") != nil {
		t.Fatal("a stopped registry still lists the dispatcher")
	}
	r.Run(d, "v2") // stopping: runs nothing new
	if r.Get("p") != nil {
		t.Fatal("a stopped registry started a dispatcher")
	}
}

// TestRegistryHoldsAndPreparesWhatItRuns: each dispatcher the registry
// runs is seen by BeforeRun before Get finds it, and admits nothing until
// HoldUntil's channel closes.
func TestRegistryHoldsAndPreparesWhatItRuns(t *testing.T) {
	r := NewRegistry()
	ready := make(chan struct{})
	r.HoldUntil(ready)
	var foundFirst atomic.Bool
	r.BeforeRun(func(d *Dispatcher) { foundFirst.Store(r.Get(d.Name()) != nil) })
	ctx, cancel := context.WithCancel(context.Background())
	stopped := make(chan struct{})
	go func() { _ = r.Start(ctx); close(stopped) }()
	t.Cleanup(func() { cancel(); <-stopped })
	d, err := New(Config{Name: "p", Client: &stubClient{}, Limits: ratewindow.Config{MaxConcurrency: 1}}, nil, clock.RealClock{}, logr.Discard(), nil)
	if err != nil {
		t.Fatal(err)
	}
	r.Run(d, "v1")
	if foundFirst.Load() || r.Get("p") != d {
		t.Fatalf("Get found the dispatcher before BeforeRun saw it (%v), or not after (%v)", foundFirst.Load(), r.Get("p"))
	}
	if g, _, _ := d.Acquire(ctx, Ask{Namespace: "app", MaxTokens: 8}); g != nil {
		t.Fatal("a dispatcher run before the registry's hold ended granted a call")
	}
	close(ready)
	if g, _, _ := d.Acquire(ctx, Ask{Namespace: "app", MaxTokens: 8}); g == nil {
		t.Fatal("no grant once the hold ended")
	} else {
		g.Cancel()
	}
}

package dispatch

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"k8s.io/utils/clock"

	"github.com/llmquota/llmquota/internal/ratewindow"
)

// TestHeldDispatcherAdmitsNothingUntilReady: a new leader's dispatcher,
// held while it learns the calls in flight, sends no batch item and grants
// no interactive call; once let go, it sends them all.
func TestHeldDispatcherAdmitsNothingUntilReady(t *testing.T) {
	stub := &stubClient{}
	d, err := New(Config{Name: "p", Client: stub, Limits: ratewindow.Config{MaxConcurrency: 2}}, nil, clock.RealClock{}, logr.Discard(), nil)
	if err != nil {
		t.Fatal(err)
	}
	ready := make(chan struct{})
	d.HoldUntil(ready)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { d.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })

	got := newCollector(3)
	d.Submit(Batch{Key: "ns/b", Namespace: "ns", Size: 3, Items: items("b", 3), OnResult: got.add})
	stepped(t, d)
	if n := stub.count(); n != 0 {
		t.Fatalf("a held dispatcher sent %d batch items", n)
	}
	if g, dec, _ := d.Acquire(ctx, Ask{Namespace: "app", MaxTokens: 8}); g != nil || dec.Reason != ratewindow.ReasonConcurrency {
		t.Fatalf("a held dispatcher answered an interactive call with %v, %+v; want refused", g != nil, dec)
	}
	close(ready)
	got.wait(t, 10*time.Second)
	if g, _, _ := d.Acquire(ctx, Ask{Namespace: "app", MaxTokens: 8}); g == nil {
		t.Fatal("no interactive grant once the dispatcher was let go")
	} else {
		g.Cancel()
	}
}

// TestAdoptedCallsHoldTheirSlots: a call a previous leader granted, adopted
// by the new one, holds a concurrency slot of the provider and of its
// model's own limits until it ends, and no place in the windows; its end
// settles nothing but the slots.
func TestAdoptedCallsHoldTheirSlots(t *testing.T) {
	minute := ratewindow.Window{Name: "minute", Period: time.Minute, Limit: 2}
	d, err := New(Config{Name: "p", Client: &stubClient{}, DefaultModel: "small",
		Limits:      ratewindow.Config{MaxConcurrency: 2, Windows: []ratewindow.Window{minute}},
		ModelLimits: map[string]*ratewindow.Config{"big": {MaxConcurrency: 1}}}, nil, clock.RealClock{}, logr.Discard(), nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	ask := func(model string) (*Grant, ratewindow.Decision) {
		g, dec, _ := d.Acquire(ctx, Ask{Namespace: "app", Model: model, MaxTokens: 8})
		return g, dec
	}
	adopted := d.Adopt("app", "big", "")
	if g, dec := ask("big"); g != nil || !strings.HasPrefix(dec.Window, ModelLimitWindow) {
		t.Fatalf("a call to the model whose one slot an adopted call holds: granted %v, %+v; want refused by the model's limit", g != nil, dec)
	}
	first, _ := ask("small")
	if first == nil {
		t.Fatal("no grant with one of the provider's two slots free")
	}
	if g, dec := ask("small"); g != nil || dec.Reason != ratewindow.ReasonConcurrency {
		t.Fatalf("a third call in flight: granted %v, %+v; want refused for concurrency", g != nil, dec)
	}
	adopted.Done(nil, nil)
	second, _ := ask("big")
	if second == nil {
		t.Fatal("the adopted call ended, and its slots stayed taken")
	}
	// The adopted call took no place in the minute window of 2: the two
	// grants filled it.
	first.Cancel()
	if g, dec := ask("small"); g != nil || dec.Reason != ratewindow.ReasonWindow {
		t.Fatalf("a third call in the minute: granted %v, %+v; want refused by the window", g != nil, dec)
	}
	second.Cancel()
}

package dispatch

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr"
	clocktesting "k8s.io/utils/clock/testing"

	"github.com/llmquota/llmquota/internal/provider"
	"github.com/llmquota/llmquota/internal/ratewindow"
)

// heldServer answers its calls only when the test releases them, in the
// order they came, each with 10 output tokens.
type heldServer struct {
	mu      sync.Mutex
	waiting []chan struct{}
}

func (h *heldServer) Generate(ctx context.Context, _ provider.Request) (*provider.Response, error) {
	ch := make(chan struct{})
	h.mu.Lock()
	h.waiting = append(h.waiting, ch)
	h.mu.Unlock()
	select {
	case <-ch:
		return &provider.Response{Text: "ok", InputTokens: 1, OutputTokens: 10}, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// release answers the i-th call (from 0) once it has arrived.
func (h *heldServer) release(t *testing.T, i int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		h.mu.Lock()
		if len(h.waiting) > i {
			close(h.waiting[i])
			h.mu.Unlock()
			return
		}
		h.mu.Unlock()
		if time.Now().After(deadline) {
			t.Fatalf("call %d never arrived", i)
		}
		time.Sleep(time.Millisecond)
	}
}

// TestPoolEndpointLearnsItsConcurrency: with adaptive limits, a pool
// endpoint whose answers slow down under load takes fewer calls at once:
// one answer at three times its unloaded pace cuts its limit from 4 to 2,
// the calls sent before the cut do not cut it again, and while the
// endpoint is at its limit the dispatcher holds the next call without
// spending a window admission on it.
func TestPoolEndpointLearnsItsConcurrency(t *testing.T) {
	t0 := time.Date(2026, 12, 7, 9, 0, 0, 0, time.UTC)
	fc := clocktesting.NewFakeClock(t0)
	srv := &heldServer{}
	eps := &Endpoints{}
	eps.Set([]Endpoint{{Name: "a", Address: "http://a", Client: srv}})
	d, err := New(Config{Name: "pool", Endpoints: eps, DefaultModel: "tiny", LearnLimits: true,
		Limits: ratewindow.Config{Windows: []ratewindow.Window{{Name: "minute", Limit: 100, Period: time.Minute}}, MaxConcurrency: 4}},
		nil, fc, logr.Discard(), nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go d.Run(ctx)
	col := newCollector(10)
	d.Submit(Batch{Key: "ns/b", Namespace: "ns", Size: 10, Items: items("p", 10), OnResult: col.add})

	sent := func(want int, what string) {
		t.Helper()
		stepped(t, d)
		if used := d.Quota().Windows[0].Used; used != int64(want) {
			t.Fatalf("%s: %d admitted in the window, want %d", what, used, want)
		}
	}
	sent(4, "the declared 4 at once")
	fc.Step(100 * time.Millisecond)
	srv.release(t, 0) // 100 ms for 10 tokens: the unloaded pace
	col.settled(t, 1)
	sent(5, "one more in its place")
	fc.Step(time.Second)
	srv.release(t, 1) // 1.1 s for 10 tokens: queued, cut to 2
	col.settled(t, 2)
	sent(5, "three in flight over a limit of 2: none more")
	if got := eps.Limits()["a"]; got != 2 {
		t.Fatalf("learned limit %d, want 2", got)
	}
	srv.release(t, 2) // slow too, but sent before the cut
	col.settled(t, 3)
	sent(5, "two in flight at the limit: none more")
	if got := eps.Limits()["a"]; got != 2 {
		t.Fatalf("a call sent before the cut cut again: limit %d, want 2", got)
	}
	srv.release(t, 3)
	col.settled(t, 4)
	sent(6, "one in flight under the limit of 2: one more")
}

// TestPoolEndpointPressure: GPU memory over the watermark in an endpoint's
// report brings its limit down to the calls it has in flight, and the
// limits are only learned when adaptive limits are on.
func TestPoolEndpointPressure(t *testing.T) {
	srv := &heldServer{}
	eps := &Endpoints{}
	eps.configure(true, 6)
	eps.Set([]Endpoint{{Name: "a", Client: srv}})
	for range 3 {
		if _, ok := eps.pick(); !ok {
			t.Fatal("no room under the declared 6")
		}
	}
	eps.Set([]Endpoint{{Name: "a", Client: srv, GPUMemoryUsed: 0.97}})
	if got := eps.Limits()["a"]; got != 3 {
		t.Fatalf("at 97%% of GPU memory with 3 in flight: limit %d, want 3", got)
	}
	if eps.hasRoom() {
		t.Fatal("room for a fourth call with GPU memory near full")
	}
	eps.configure(false, 6)
	if eps.Limits() != nil || !eps.hasRoom() {
		t.Fatal("without adaptive limits an endpoint takes what the provider's limit allows")
	}
}

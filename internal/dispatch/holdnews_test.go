package dispatch

import (
	"maps"
	"testing"
	"time"

	"github.com/go-logr/logr"
	clocktesting "k8s.io/utils/clock/testing"

	"github.com/llmquota/llmquota/internal/ratewindow"
)

// TestHoldNewsLingers: on a fake clock, a provider at its limit, held and
// freed with every call, tells a waiting batch once that the window holds
// it, not at every call (each tell is a status write of every waiting
// batch); the hold's end is told once the provider was free of holds for
// HoldLinger; a new hold on a free provider is told at once, and a change
// from one hold to another at most every HoldLinger. Told at every change,
// the saturated phase alone would count 200 tells.
func TestHoldNewsLingers(t *testing.T) {
	fc := clocktesting.NewFakeClock(time.Date(2026, 12, 7, 9, 0, 0, 0, time.UTC))
	d, err := New(Config{Name: "p", Client: &stubClient{}}, nil, fc, logr.Discard(), nil)
	if err != nil {
		t.Fatal(err)
	}
	told := 0
	// Not run: the item stays queued, and the test sets what holds it.
	d.Submit(Batch{Key: "ns/b", Namespace: "ns", Size: 1, Items: items("x", 1), OnResult: func(Result) {}, OnChange: func() { told++ }})
	window := func() ratewindow.Decision {
		return ratewindow.Decision{Reason: ratewindow.ReasonWindow, Window: "minute", RetryAt: fc.Now().Add(time.Second)}
	}
	free := ratewindow.Decision{Allowed: true}
	set := func(dec ratewindow.Decision) time.Duration {
		d.mu.Lock()
		d.limited = dec
		d.mu.Unlock()
		return d.tellChanges()
	}
	shows := func(step string, wantTold int, want ratewindow.Reason) {
		t.Helper()
		p, _ := d.Progress("ns/b")
		if told != wantTold || p.Limit.Reason != want {
			t.Fatalf("%s: told %d times, progress shows %q; want %d and %q", step, told, p.Limit.Reason, wantTold, want)
		}
	}

	set(window())
	shows("the window fills", 1, ratewindow.ReasonWindow)
	for range 100 { // saturated: every call frees a place and takes it
		fc.Step(20 * time.Millisecond)
		set(free)
		set(window())
	}
	shows("a hundred calls at the limit", 1, ratewindow.ReasonWindow)

	if recheck := set(free); recheck != HoldLinger {
		t.Fatalf("the hold's end is due in %v, want %v", recheck, HoldLinger)
	}
	fc.Step(HoldLinger - time.Millisecond)
	if recheck := set(free); recheck != time.Millisecond {
		t.Fatalf("the hold's end is due in %v, want 1ms", recheck)
	}
	shows("free for less than HoldLinger", 1, ratewindow.ReasonWindow)
	fc.Step(time.Millisecond)
	set(free)
	shows("free for HoldLinger", 2, ratewindow.ReasonNone)

	set(window())
	shows("a new hold on a free provider", 3, ratewindow.ReasonWindow)
	retry := ratewindow.Decision{Reason: ratewindow.ReasonRetryAfter, RetryAt: fc.Now().Add(time.Minute)}
	if recheck := set(retry); recheck != HoldLinger {
		t.Fatalf("another hold is due in %v, want %v", recheck, HoldLinger)
	}
	shows("another hold, at once", 3, ratewindow.ReasonWindow)
	fc.Step(HoldLinger)
	set(retry)
	shows("another hold, HoldLinger later", 4, ratewindow.ReasonRetryAfter)
}

// TestStoppedDispatcherTellsItsBatches: a dispatcher that stops (its
// provider is no longer Ready, or was edited or deleted) tells each batch
// still in it, once, so the batch's owner shows that it runs nowhere; a
// batch removed before is not told.
func TestStoppedDispatcherTellsItsBatches(t *testing.T) {
	fc := clocktesting.NewFakeClock(time.Date(2026, 12, 7, 9, 0, 0, 0, time.UTC))
	d, err := New(Config{Name: "p", Client: &stubClient{}}, nil, fc, logr.Discard(), nil)
	if err != nil {
		t.Fatal(err)
	}
	told := map[string]int{}
	for _, key := range []string{"ns/a", "ns/b", "ns/gone"} {
		d.Submit(Batch{Key: key, Namespace: "ns", Size: 1, Items: items("x", 1), OnResult: func(Result) {}, OnChange: func() { told[key]++ }})
	}
	d.Remove("ns/gone")
	d.shutdown()
	if want := map[string]int{"ns/a": 1, "ns/b": 1}; !maps.Equal(told, want) {
		t.Fatalf("told %v, want %v", told, want)
	}
}

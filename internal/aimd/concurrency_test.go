package aimd

import (
	"math/rand/v2"
	"testing"
	"time"
)

// TestConcurrencyLearnsFromPace: a server answering at its unloaded pace
// keeps the declared limit; slow answers cut it (once for the calls sent
// before the cut); normal answers at the limit grow it back by one a
// round; GPU memory over the watermark brings it down to what is in flight
// and stops its growth.
func TestConcurrencyLearnsFromPace(t *testing.T) {
	t0 := time.Date(2026, 12, 7, 9, 0, 0, 0, time.UTC)
	at := func(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }
	c := NewConcurrency(8)
	steps := []struct {
		name      string
		do        func() bool
		wantLimit int
	}{
		{"unloaded: 100 ms for 10 tokens", func() bool { return c.Answered(at(100), at(0), 10, false) }, 8},
		{"the same pace at the limit: already at the declared limit", func() bool { return c.Answered(at(200), at(100), 10, true) }, 8},
		{"three times slower: queued, cut to 5", func() bool { return c.Answered(at(600), at(300), 10, true) }, 5},
		{"slow, sent before the cut: no second cut", func() bool { return c.Answered(at(700), at(250), 10, true) }, 5},
		{"slow, sent after the cut: cut again", func() bool { return c.Answered(at(1300), at(900), 10, true) }, 3},
		{"normal pace, not at the limit: no growth", func() bool { return c.Answered(at(1400), at(1300), 10, false) }, 3},
		{"normal pace at the limit: grows by 1/limit (3.92 to 4.18)", func() bool { return c.Answered(at(1500), at(1400), 10, true) }, 4},
		{"GPU memory at 97% with 2 in flight: down to 2", func() bool { return c.Pressure(0.97, 2) }, 2},
		{"no growth under pressure", func() bool { return c.Answered(at(1600), at(1500), 10, true) }, 2},
		{"still at 97% with 1 in flight: no second cut", func() bool { return c.Pressure(0.97, 1) }, 2},
		{"memory back at 80%: nothing cut", func() bool { return c.Pressure(0.8, 2) }, 2},
		{"a timeout: overloaded, never below one", func() bool { c.Overloaded(at(2000), at(1900)); return c.Overloaded(at(3000), at(2900)) }, 1},
	}
	for _, s := range steps {
		s.do()
		if got := c.Limit(); got != s.wantLimit {
			t.Fatalf("%s: limit %d, want %d", s.name, got, s.wantLimit)
		}
	}
	for range 40 { // clean rounds at the limit grow it back, never past the declared limit
		c.Answered(at(5000), at(4900), 10, true)
	}
	if got := c.Limit(); got != 8 {
		t.Fatalf("after 40 clean calls at the limit: %d, want the declared 8", got)
	}
	c.SetDeclared(4)
	if got := c.Limit(); got != 4 {
		t.Fatalf("declared limit lowered to 4: learned %d", got)
	}
}

// TestConcurrencyStaysInBounds: whatever the answers and the memory, the
// limit stays within one and the declared limit (a property over random
// sequences).
func TestConcurrencyStaysInBounds(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 5))
	t0 := time.Date(2026, 12, 7, 9, 0, 0, 0, time.UTC)
	for run := range 200 {
		declared := 1 + r.IntN(16)
		c := NewConcurrency(declared)
		now := t0
		for range 300 {
			sent := now
			now = now.Add(time.Duration(1+r.IntN(5000)) * time.Millisecond)
			switch r.IntN(4) {
			case 0:
				c.Overloaded(now, sent)
			case 1:
				c.Pressure(r.Float64(), r.IntN(declared+2))
			default:
				c.Answered(now, sent, int64(r.IntN(500)), r.IntN(2) == 0)
			}
			if l := c.Limit(); l < 1 || l > declared {
				t.Fatalf("run %d: limit %d outside [1, %d]", run, l, declared)
			}
		}
	}
}

// TestConcurrencyHoldsUnderSustainedQueueing: a server with fewer slots
// than the declared limit queues what it cannot run, so each call's pace
// grows with the calls given beyond its slots. Answers that slow for as
// long as the load lasts must not teach the learner that slow is normal:
// the limit settles near the slots and stays there (measured against a
// real single-slot Ollama, the base drifting on every call let it climb
// back to the declared 8 within 300 calls).
func TestConcurrencyHoldsUnderSustainedQueueing(t *testing.T) {
	t0 := time.Date(2026, 12, 7, 9, 0, 0, 0, time.UTC)
	for _, slots := range []int{1, 2, 3} {
		c := NewConcurrency(8)
		now := t0.Add(100 * time.Millisecond)
		c.Answered(now, t0, 10, false) // the first of a burst is served at once
		highest := 0
		for i := range 600 {
			// The call's time per token: 10 ms alone, times how many
			// calls share each slot when the limit exceeds the slots.
			share := max(1.0, float64(c.Limit())/float64(slots))
			took := time.Duration(share * 10 * float64(10*time.Millisecond))
			sent := now
			now = now.Add(took)
			c.Answered(now, sent, 10, true)
			if i >= 300 {
				highest = max(highest, c.Limit())
			}
		}
		// Tolerance lets two calls share a slot unnoticed, and the limit
		// grows by one before the slower pace cuts it.
		if want := int(Tolerance)*slots + 1; highest > want {
			t.Errorf("%d slots: the limit reached %d in the last 300 calls, want at most %d", slots, highest, want)
		}
	}
}

// TestConcurrencyLearnsASlowerModel: when every call gets slower for good
// (another model, a throttled GPU), whatever the load, the limit falls to
// one call, where a call alone is the unloaded pace; the base rises to it
// and the limit grows back to the declared one.
func TestConcurrencyLearnsASlowerModel(t *testing.T) {
	t0 := time.Date(2026, 12, 7, 9, 0, 0, 0, time.UTC)
	c := NewConcurrency(8)
	now := t0.Add(100 * time.Millisecond)
	c.Answered(now, t0, 10, false)
	lowest := c.Limit()
	for range 300 {
		sent := now
		now = now.Add(300 * time.Millisecond) // three times slower, at any load
		c.Answered(now, sent, 10, true)
		lowest = min(lowest, c.Limit())
	}
	if lowest != 1 || c.Limit() != 8 {
		t.Fatalf("a model three times slower: the limit fell to %d and is %d after 300 calls, want 1 then the declared 8", lowest, c.Limit())
	}
}

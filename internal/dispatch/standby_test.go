package dispatch

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr"
	clocktesting "k8s.io/utils/clock/testing"

	"github.com/llmquota/llmquota/internal/cost"
	"github.com/llmquota/llmquota/internal/provider"
	"github.com/llmquota/llmquota/internal/ratewindow"
)

// TestLendCountsStandbyUntilItsDeadlineHasLeftTheWindow: standby grants
// are counted in the window from when they are lent until a minute (and
// the window's guard) after the last moment they may be sent, and the
// quota state persisted before Lend returns, restored, counts them the
// same way. Sent late, they stay within the window at the provider: the
// calls admitted beside them never make more than the limit.
func TestLendCountsStandbyUntilItsDeadlineHasLeftTheWindow(t *testing.T) {
	t0 := time.Date(2026, 12, 8, 9, 0, 0, 0, time.UTC)
	fc := clocktesting.NewFakeClock(t0)
	var mu sync.Mutex
	var persisted []byte
	persist := func(_ context.Context, snap []byte) error { mu.Lock(); persisted = snap; mu.Unlock(); return nil }
	cfg := Config{Name: "p", Client: &stubClient{}, Limits: minuteLimit(10, 0), StandbyCalls: 5, ReserveBlock: 10, Persist: persist}
	d, err := New(cfg, nil, fc, logr.Discard(), nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go d.Run(ctx) // reserves (and persists) blocks for the calls beside the standby ones
	ask := Ask{Namespace: "app", InputChars: 40, MaxTokens: 64}
	lent, until, err := d.Lend(ctx, ask, 100)
	if err != nil || len(lent) != 5 || !until.Equal(t0.Add(StandbyFor)) {
		t.Fatalf("lent %d until %v (%v), want the provider's 5 until a minute from now", len(lent), until, err)
	}
	if st := d.Stats(cost.Thresholds{}).Interactive; st.Standby != 5 || st.InFlight != 0 {
		t.Fatalf("the interactive lane shows %d standby and %d in flight, want the 5 lent apart from calls in flight", st.Standby, st.InFlight)
	}
	mu.Lock()
	snap := persisted
	mu.Unlock()
	restored, err := ratewindow.Restore(guardedLimits(cfg.Limits), snap, t0)
	if err != nil || restored.Deferred(t0) != 5 {
		t.Fatalf("the persisted quota holds %d standby calls (%v), want 5", restored.Deferred(t0), err)
	}

	// Two of them sent at their last moment, three given back unsent.
	var arrivals []time.Time
	fc.SetTime(until)
	for _, g := range lent[:2] {
		arrivals = append(arrivals, fc.Now())
		g.Done(&provider.Response{InputTokens: 10, OutputTokens: 5}, nil)
	}
	for _, g := range lent[2:] {
		g.Cancel()
	}
	if st := d.Stats(cost.Thresholds{}).Interactive; st.Standby != 0 {
		t.Fatalf("%d standby shown once every grant ended", st.Standby)
	}
	// Just after the lending moment's minute, and before the deadline's:
	// the window holds the two sent standby calls still.
	at := t0.Add(time.Minute + guard(time.Minute) + time.Second)
	fc.SetTime(at)
	for {
		g, _, _ := d.Acquire(ctx, Ask{Namespace: "app", InputChars: 40, MaxTokens: 64})
		if g == nil {
			break
		}
		arrivals = append(arrivals, fc.Now())
		g.Done(&provider.Response{InputTokens: 10, OutputTokens: 5}, nil)
	}
	if len(arrivals) != 10 {
		t.Fatalf("%d calls sent, want 10: the two standby calls and 8 beside them", len(arrivals))
	}
	for i, a := range arrivals {
		n := 0
		for _, b := range arrivals {
			if !b.Before(a) && b.Sub(a) < time.Minute {
				n++
			}
		}
		if n > 10 {
			t.Fatalf("%d calls in the minute from arrival %d (%v), more than the limit of 10", n, i, a)
		}
	}
}

// TestLendLendsOnlyWhereItCanBeExact: no standby where the provider lends
// none, where a minimum interval counts from each write, while an
// interactive call waits for quota, or while a new leader learns the calls
// in flight; a failed persist lends nothing and leaves nothing counted.
func TestLendLendsOnlyWhereItCanBeExact(t *testing.T) {
	t0 := time.Date(2026, 12, 8, 9, 0, 0, 0, time.UTC)
	ask := Ask{Namespace: "app", InputChars: 40, MaxTokens: 64}
	lend := func(cfg Config, prepare func(*Dispatcher)) int {
		d, err := New(cfg, nil, clocktesting.NewFakeClock(t0), logr.Discard(), nil)
		if err != nil {
			t.Fatal(err)
		}
		if prepare != nil {
			prepare(d)
		}
		lent, _, _ := d.Lend(context.Background(), ask, 3)
		return len(lent)
	}
	if n := lend(Config{Name: "p", Client: &stubClient{}, Limits: minuteLimit(10, 0), StandbyCalls: 3}, nil); n != 3 {
		t.Fatalf("lent %d, want 3 (the check itself)", n)
	}
	if n := lend(Config{Name: "p", Client: &stubClient{}, Limits: minuteLimit(10, 0)}, nil); n != 0 {
		t.Fatalf("lent %d where the provider lends none", n)
	}
	interval := minuteLimit(10, 0)
	interval.MinInterval = time.Second
	if n := lend(Config{Name: "p", Client: &stubClient{}, Limits: interval, StandbyCalls: 3}, nil); n != 0 {
		t.Fatalf("lent %d under a minimum interval", n)
	}
	if n := lend(Config{Name: "p", Client: &stubClient{}, Limits: minuteLimit(10, 0), StandbyCalls: 3}, func(d *Dispatcher) {
		d.HoldUntil(make(chan struct{}))
	}); n != 0 {
		t.Fatalf("lent %d while held", n)
	}
	if n := lend(Config{Name: "p", Client: &stubClient{}, Limits: minuteLimit(10, 4), StandbyCalls: 3}, nil); n != 3 {
		t.Fatalf("lent %d under 4 slots, want 3 (the tenth kept is none of 4)", n)
	}
	if n := lend(Config{Name: "p", Client: &stubClient{}, Limits: minuteLimit(10, 1), StandbyCalls: 3}, nil); n != 1 {
		t.Fatalf("lent %d under one slot, want the one slot", n)
	}

	failing := func(context.Context, []byte) error { return errors.New("etcd is away") }
	d, _ := New(Config{Name: "p", Client: &stubClient{}, Limits: minuteLimit(10, 2), StandbyCalls: 2, Persist: failing, ReserveBlock: 5},
		nil, clocktesting.NewFakeClock(t0), logr.Discard(), nil)
	d.limiter.Reserve(5, ratewindow.Cost{})
	if lent, _, err := d.Lend(context.Background(), ask, 2); err == nil || len(lent) != 0 {
		t.Fatalf("lent %d with a failed persist (%v)", len(lent), err)
	}
	if q := d.Quota(); q.InFlight != 0 || q.Windows[0].Used != 0 {
		t.Fatalf("a lend whose persist failed left %d in flight and %d in the window", q.InFlight, q.Windows[0].Used)
	}
}

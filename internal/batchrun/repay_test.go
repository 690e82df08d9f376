package batchrun

import (
	"math/big"
	"testing"
	"time"

	"github.com/llmquota/llmquota/internal/cost"
	"github.com/llmquota/llmquota/internal/dispatch"
	"github.com/llmquota/llmquota/internal/results"
)

// TestCrashRepayBoundsTheAnswersWaiting: two batches of 20 items on one
// provider, whose flush policy alone would hold every result (a day, a
// thousand items, and never a batch's last). With spec.crashRepay's 5
// calls (or $0.05, five calls' cost), the answers waiting for their write across both batches never
// pass 5 and the 4 calls in flight when the bound was reached: the runs
// write as it is reached, and no batch call starts until they have. Without
// a bound all 40 wait, which is what the check catches.
func TestCrashRepayBoundsTheAnswersWaiting(t *testing.T) {
	for _, c := range []struct {
		name      string
		bound     dispatch.RepayBound
		atMost    int
		allWait   bool
		wantWrite bool
	}{
		{name: "in calls", bound: dispatch.RepayBound{Calls: 5}, atMost: 5 + 4, wantWrite: true},
		{name: "in money", bound: dispatch.RepayBound{Cost: big.NewRat(5, 100)}, atMost: 5 + 4, wantWrite: true}, // 5 calls of $0.01
		{name: "unbounded", atMost: 40, allWait: true},
	} {
		t.Run(c.name, func(t *testing.T) {
			b := newBed(t, results.FlushPolicy{Interval: 24 * time.Hour, Items: 1000}, 0, func(cfg *dispatch.Config) {
				cfg.CrashRepay, cfg.Prices = c.bound, cost.Prices{PerRequest: "0.01"}
			})
			runs := []*Run{b.launch(t, "first", 20, 21), b.launch(t, "second", 20, 21)}
			answered := func() int {
				n := 0
				for _, r := range runs {
					n += r.StoredCount() + pending(r)
				}
				return n
			}
			eventually(t, "every item answered", func() bool { return answered() == 40 })
			if !c.allWait { // the answers that reached the bound last are written
				eventually(t, "the answers at the bound written", func() bool { return waitingAnswers(b.rt, b.d) < 5 })
			}
			calls := waitingAnswers(b.rt, b.d)
			b.rt.mu.Lock()
			peak := b.rt.ledgers[b.d].peak
			b.rt.mu.Unlock()
			writes := b.c.n.Load()
			switch {
			case peak > c.atMost:
				t.Fatalf("%d answers waited for their write at once, want at most %d", peak, c.atMost)
			case c.allWait && (peak != 40 || calls != 40):
				t.Fatalf("without a bound %d answers waited at most and %d wait now, want all 40", peak, calls)
			case c.wantWrite && writes == 0:
				t.Fatal("no result was written: the bound did not make the runs write")
			}
			t.Logf("peak %d answers waiting, %d writes", peak, writes)
		})
	}
}

// waitingAnswers is how many answers of d's batches wait for their write.
func waitingAnswers(rt *Runtime, d *dispatch.Dispatcher) int {
	rt.mu.Lock()
	u := rt.ledgers[d]
	rt.mu.Unlock()
	if u == nil {
		return 0
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.calls
}

package batchrun

import (
	"context"
	"fmt"
	"math/big"
	"testing"
	"time"

	clocktesting "k8s.io/utils/clock/testing"

	llmv1 "github.com/llmquota/llmquota/api/v1alpha1"
	"github.com/llmquota/llmquota/internal/cost"
	"github.com/llmquota/llmquota/internal/dispatch"
	"github.com/llmquota/llmquota/internal/journal"
	"github.com/llmquota/llmquota/internal/results"
)

// holdAll is a flush policy that alone would hold every result: a day, a
// thousand items, and never a batch's last (Total is above what runs).
var holdAll = results.FlushPolicy{Interval: 24 * time.Hour, Items: 1000}

// TestCrashRepayBoundsTheAnswersWaiting: two batches of 20 items on one
// provider (4 calls in flight) whose results are never written. The answers
// in neither the journal nor the results never pass the bound and the calls
// in flight when it was reached: spec.crashRepay's 5 calls (or $0.05, five
// calls' cost), or by default the provider's concurrency or a second of
// answers (here at most 40), with calls held at twice that. In flight
// counts up to 4 calls sent and up to 4 whose answers are being delivered
// (the dispatcher frees a call's slot before it hands over the answer).
// Each time the bound is reached one journal write takes them all, and no
// result is written. Without the journal all 40 wait, which is what the
// check catches.
func TestCrashRepayBoundsTheAnswersWaiting(t *testing.T) {
	for _, c := range []struct {
		name   string
		bound  dispatch.RepayBound
		atMost int
	}{
		{name: "in calls", bound: dispatch.RepayBound{Calls: 5}, atMost: 4 + 4 + 4},
		{name: "in money", bound: dispatch.RepayBound{Cost: big.NewRat(5, 100)}, atMost: 4 + 4 + 4}, // 5 calls of $0.01
		{name: "by default", atMost: 39},
	} {
		t.Run(c.name, func(t *testing.T) {
			b := newBed(t, holdAll, 0, func(cfg *dispatch.Config) {
				cfg.CrashRepay, cfg.Prices = c.bound, cost.Prices{PerRequest: "0.01"}
			})
			runs := []*Run{b.launch(t, "first", 20, 21), b.launch(t, "second", 20, 21)}
			eventually(t, "every item answered", func() bool { return pending(runs[0])+pending(runs[1]) == 40 })
			eventually(t, "the answers at the bound journaled", func() bool { return belowBound(b.rt, b.d) })
			b.rt.mu.Lock()
			peak := b.rt.ledgers[b.d].peak
			b.rt.mu.Unlock()
			switch journaled := journaledAnswers(t, b); {
			case peak > c.atMost:
				t.Fatalf("%d answers waited for the journal at once, want at most %d", peak, c.atMost)
			case journaled+waitingAnswers(b.rt, b.d) != 40 || journaled < 40-c.atMost:
				t.Fatalf("the journal holds %d answers of 40 and %d wait for it, want all but fewer than the bound", journaled, waitingAnswers(b.rt, b.d))
			case b.c.n.Load() != 0:
				t.Fatalf("%d result writes; the bound should write the journal, not the results", b.c.n.Load())
			}
			t.Logf("peak %d answers waiting, %d journal writes", peak, b.c.journal.Load())
		})
	}
}

// TestJournalGivesBackWhatACrashLost: a batch's 20 answers wait for their
// write (the flush policy holds them) and are journaled; the manager dies
// (every write fails from then on, the last write included). A new
// runtime reads the journal: the batch takes its 20 answers back before
// its items are planned, so none is asked again, and writes them with its
// results, which frees the journal's slot for the next write. Without the
// journal the 20 would be asked again (the emulator would see 40).
func TestJournalGivesBackWhatACrashLost(t *testing.T) {
	// A bound of one answer: every answer is journaled (a larger bound
	// leaves what is under it to the results' own write).
	b := newBed(t, holdAll, 0, func(cfg *dispatch.Config) { cfg.CrashRepay = dispatch.RepayBound{Calls: 1} })
	run := b.launch(t, "crashed", 20, 21)
	batch := run.UID
	eventually(t, "every answer journaled", func() bool { return pending(run) == 20 && journaledAnswers(t, b) == 20 })
	b.c.down.Store(true) // kill -9: nothing more reaches the API server
	b.stop()
	<-b.stopped
	if n := b.c.n.Load(); n != 0 {
		t.Fatalf("%d result writes before the crash, want none (the policy holds them)", n)
	}

	w := &writes{Client: b.k}
	rt := New(clocktesting.NewFakeClock(b.clock.Now()), results.FlushPolicy{}, journal.Options{Reader: b.k, Writer: w, Namespace: "default"})
	ctx, cancel := context.WithCancel(context.Background())
	stopped := make(chan struct{})
	go func() { _ = rt.Start(ctx); close(stopped) }()
	t.Cleanup(func() { cancel(); <-stopped })
	var ib llmv1.InferenceBatch
	if err := b.k.Get(ctx, run.Key, &ib); err != nil {
		t.Fatal(err)
	}
	load := func() *results.Store {
		store, err := results.Load(ctx, results.Options{Lister: b.k, Reader: b.k, Writer: w}, &ib)
		if err != nil {
			t.Fatal(err)
		}
		return store
	}
	// An admission that fails after taking the answers back (its store is
	// dropped) finds them again at the next.
	if n := rt.Recover(batch, load()); n != 20 {
		t.Fatalf("took back %d answers from the journal, want 20", n)
	}
	store := load()
	if n := rt.Recover(batch, store); n != 20 {
		t.Fatalf("took back %d answers at the second admission, want 20 again", n)
	}
	var again []dispatch.Item
	for i := range 20 {
		if id := fmt.Sprintf("i%d", i); !store.Has(id) {
			again = append(again, dispatch.Item{ID: id, Prompt: "rate this"})
		}
	}
	rerun := rt.Launch(Spec{Key: run.Key, UID: batch, Store: store, Dispatcher: b.d, Kept: 20, Total: 20,
		Batch: dispatch.Batch{Namespace: "default", Size: 20, Items: again}})
	eventually(t, "the 20 results written", func() bool { return rerun.StoredCount() == 20 })
	if arrivals := len(b.emu.Log()); arrivals != 20 || len(again) != 0 {
		t.Fatalf("the provider saw %d calls and %d items were planned again; want 20 and none", arrivals, len(again))
	}
	// The slots are free again once the writer saw its write.
	eventually(t, "the journal's slots free", func() bool { return rt.journals.Writer(b.d.Name(), nil).Live() == 0 })
}

// journaledAnswers counts the answers the journal's slots hold, as a new
// leader would read them.
func journaledAnswers(t *testing.T, b *bed) int {
	t.Helper()
	j, err := journal.Open(context.Background(), journal.Options{Reader: b.k, Namespace: "default"})
	if err != nil {
		t.Fatal(err)
	}
	return j.Expire()
}

// belowBound reports whether the answers of d's batches waiting for the
// journal are below the bound that has it written.
func belowBound(rt *Runtime, d *dispatch.Dispatcher) bool {
	rt.mu.Lock()
	u := rt.ledgers[d]
	rt.mu.Unlock()
	if u == nil {
		return true
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	writeAt, _ := u.bounds()
	return !writeAt.Reached(u.calls, u.cost)
}

// waitingAnswers is how many answers of d's batches are neither journaled
// nor written.
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

// TestPerSecondCountsTheSecondBefore: the default journal bound reads the
// answers of the last whole second, and none after a quiet second.
func TestPerSecondCountsTheSecondBefore(t *testing.T) {
	t0 := time.Date(2026, 12, 8, 9, 0, 0, 0, time.UTC)
	for _, c := range []struct {
		name string
		at   []time.Duration
		last int
	}{
		{"within the first second", []time.Duration{0, 100 * time.Millisecond, 900 * time.Millisecond}, 0},
		{"the second before", []time.Duration{0, 500 * time.Millisecond, 999 * time.Millisecond, 1200 * time.Millisecond}, 3},
		{"after a quiet second", []time.Duration{0, 500 * time.Millisecond, 2100 * time.Millisecond}, 0},
		{"two busy seconds", []time.Duration{0, 1100 * time.Millisecond, 1500 * time.Millisecond, 2000 * time.Millisecond}, 2},
	} {
		t.Run(c.name, func(t *testing.T) {
			var p perSecond
			for _, d := range c.at {
				p.add(t0.Add(d))
			}
			if p.last != c.last {
				t.Fatalf("last second counted %d, want %d", p.last, c.last)
			}
		})
	}
}

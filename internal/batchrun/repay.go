package batchrun

import (
	"math/big"
	"sync"

	"github.com/llmquota/llmquota/internal/dispatch"
)

// unrecorded counts, for one provider (its dispatcher), the answers of its
// batches whose results wait for their write: a crash of the manager before
// the write has the next leader ask them again, and pay for them twice.
// When they reach the provider's bound (spec.crashRepay), every run holding
// some is told to write at once.
type unrecorded struct {
	d *dispatch.Dispatcher

	mu      sync.Mutex
	calls   int
	cost    *big.Rat
	waiting map[*Run]*answers // the runs holding answers, and how many
	runs    int               // runs launched on d and not yet ended
	// holding is true while d's batch calls are held (gate).
	holding bool
	// peak is the most answers that waited at once.
	peak int
}

// answers are one run's answers waiting for their write.
type answers struct {
	calls int
	cost  *big.Rat
}

// add counts an answer of run, of cost (nil when unpriced), and tells the
// runs holding answers to write when the bound is reached.
func (u *unrecorded) add(run *Run, cost *big.Rat) {
	if u == nil {
		return
	}
	bound := u.d.CrashRepay()
	u.mu.Lock()
	a := u.waiting[run]
	if a == nil {
		a = &answers{cost: new(big.Rat)}
		u.waiting[run] = a
	}
	a.calls++
	u.calls++
	u.peak = max(u.peak, u.calls)
	if cost != nil {
		a.cost.Add(a.cost, cost)
		u.cost.Add(u.cost, cost)
	}
	var due []*Run
	if u.gate(bound) {
		for r := range u.waiting {
			due = append(due, r)
		}
	}
	u.mu.Unlock()
	for _, r := range due {
		r.writeNow()
	}
}

// held returns what run holds now, to take off once its write succeeds
// (written): answers that come during the write stay counted until the
// next, which can only count them longer than they wait, never shorter.
func (u *unrecorded) held(run *Run) answers {
	if u == nil {
		return answers{}
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	if a := u.waiting[run]; a != nil {
		return answers{calls: a.calls, cost: new(big.Rat).Set(a.cost)}
	}
	return answers{}
}

// written takes off what a write of n results of run stored, of the
// answers held before it: all of them when n covers them, else n calls
// and none of their cost (which stays counted until the next write).
func (u *unrecorded) written(run *Run, before answers, n int) {
	if u == nil || before.calls == 0 || n <= 0 {
		return
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	a := u.waiting[run]
	if a == nil {
		return
	}
	calls := min(before.calls, n, a.calls)
	a.calls -= calls
	u.calls -= calls
	if n >= before.calls {
		a.cost.Sub(a.cost, before.cost)
		u.cost.Sub(u.cost, before.cost)
	}
	if a.calls == 0 {
		u.cost.Sub(u.cost, a.cost) // what is left of an unpriced remainder
		delete(u.waiting, run)
	}
	u.gate(u.d.CrashRepay())
}

// gate holds the provider's batch calls back while the answers waiting
// reach bound, and lets them go once they do not; it reports whether they
// reach it (called under u.mu, which the dispatcher never takes).
func (u *unrecorded) gate(bound dispatch.RepayBound) bool {
	reached := bound.Reached(u.calls, u.cost)
	if reached != u.holding {
		u.holding = reached
		u.d.HoldForWrites(reached)
	}
	return reached
}

// settle forgets what the count holds of a run whose store has no result
// waiting: an answer counted while a write stored it. The store is read
// under the count's lock, and an answer is stored before it is counted, so
// one that comes meanwhile is not forgotten.
func (u *unrecorded) settle(run *Run) {
	if u == nil {
		return
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	if n, _ := run.Store.Pending(); n == 0 {
		u.forget(run)
	}
}

// drop forgets a run whose writer ended: it wrote what it held, or the
// batch is gone.
func (u *unrecorded) drop(run *Run) {
	if u == nil {
		return
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	u.forget(run)
}

// forget takes a run's answers out of the count (called under u.mu).
func (u *unrecorded) forget(run *Run) {
	if a := u.waiting[run]; a != nil {
		u.calls -= a.calls
		u.cost.Sub(u.cost, a.cost)
		delete(u.waiting, run)
	}
	u.gate(u.d.CrashRepay())
}

// ledger returns the count of d's answers waiting for their write, made on
// the first run launched on d, with one more run counted (called under
// rt.mu).
func (rt *Runtime) ledger(d *dispatch.Dispatcher) *unrecorded {
	u := rt.ledgers[d]
	if u == nil {
		u = &unrecorded{d: d, cost: new(big.Rat), waiting: map[*Run]*answers{}}
		rt.ledgers[d] = u
	}
	u.runs++
	return u
}

// ended forgets a run whose writer ended, and its provider's count once
// no run of it is left.
func (rt *Runtime) ended(run *Run) {
	run.repay.drop(run)
	rt.mu.Lock()
	defer rt.mu.Unlock()
	if u := rt.ledgers[run.Dispatcher]; u == run.repay {
		if u.runs--; u.runs == 0 {
			delete(rt.ledgers, run.Dispatcher)
		}
	}
}

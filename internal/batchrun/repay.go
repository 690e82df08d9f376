package batchrun

import (
	"context"
	"encoding/json"
	"math/big"
	"sync"
	"time"

	"k8s.io/utils/clock"
	logf "sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/llmquota/llmquota/internal/dispatch"
	"github.com/llmquota/llmquota/internal/journal"
	"github.com/llmquota/llmquota/internal/metrics"
	"github.com/llmquota/llmquota/internal/results"
)

// unrecorded counts, for one provider (its dispatcher), the answers of its
// batches that are neither in the provider's journal nor in their batch's
// results: a crash of the manager before either write has the next leader
// ask them again, and pay for them twice. They are journaled, all of the
// provider's batches in one write, once they reach the journal bound
// (writeAt), and the provider's batch calls wait while they reach twice
// that (a journal write slow or failing), or spec.crashRepay when set.
type unrecorded struct {
	d     *dispatch.Dispatcher
	w     *journal.Writer
	clock clock.Clock
	kick  chan struct{}
	stop  chan struct{}

	mu    sync.Mutex
	calls int
	cost  *big.Rat
	// queues hold each run's answers not yet in its results.
	queues map[*Run][]*answer
	runs   int // runs launched on d and not yet ended
	// holding is true while d's batch calls are held (gate).
	holding bool
	// peak is the most answers that waited at once unjournaled.
	peak int
	// rate counts answers per second, for the default bound.
	rate perSecond
}

// answer is one answer of a run not yet in its batch's results.
type answer struct {
	id string
	// result is what the journal writes, kept until it is journaled: it
	// is encoded then, off the path of every answer.
	result results.Result
	cost   *big.Rat
	slot   *journal.Slot // the journal slot holding it; nil until journaled
	done   bool          // in the batch's results
}

// perSecond counts events in the current second and the one before.
type perSecond struct {
	start      time.Time
	this, last int
}

func (p *perSecond) add(now time.Time) {
	if sec := now.Truncate(time.Second); !sec.Equal(p.start) {
		p.last = 0
		if sec.Sub(p.start) == time.Second {
			p.last = p.this
		}
		p.start, p.this = sec, 0
	}
	p.this++
}

// bounds returns when to write the journal and when to hold the batch
// calls: spec.crashRepay for both when set; unset, the journal is written
// once the answers waiting reach the provider's concurrency or a second of
// its answers, whichever is more, and calls wait at twice that.
func (u *unrecorded) bounds() (writeAt, holdAt dispatch.RepayBound) {
	if b := u.d.CrashRepay(); b.Calls > 0 || b.Cost != nil {
		return b, b
	}
	n := max(u.d.MaxConcurrency(), u.rate.last, 1)
	return dispatch.RepayBound{Calls: n}, dispatch.RepayBound{Calls: 2 * n}
}

// add counts an answer of run, of cost (nil when unpriced); it has the
// journal written when the bound is reached.
func (u *unrecorded) add(run *Run, result results.Result, cost *big.Rat) {
	if u == nil {
		return
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	u.queues[run] = append(u.queues[run], &answer{id: result.ID, result: result, cost: cost})
	u.calls++
	if cost != nil {
		u.cost.Add(u.cost, cost)
	}
	u.peak = max(u.peak, u.calls)
	u.rate.add(u.clock.Now())
	writeAt, holdAt := u.bounds()
	if writeAt.Reached(u.calls, u.cost) {
		u.poke()
	}
	u.gate(holdAt)
}

// adopt counts answers a previous leader journaled for run (Recover added
// them to its store): their slots are freed once its results hold them.
func (u *unrecorded) adopt(run *Run, rs []recoveredAnswer) {
	u.mu.Lock()
	defer u.mu.Unlock()
	for _, r := range rs {
		if _, stored := run.Store.StatusOf(r.result.ID); stored {
			r.slot.Release(1)
			continue
		}
		u.queues[run] = append(u.queues[run], &answer{id: r.result.ID, slot: r.slot})
	}
}

func (u *unrecorded) poke() {
	select {
	case u.kick <- struct{}{}:
	default:
	}
}

// settle takes out what run's results now hold: its journal slots are
// released, and its unjournaled answers no longer wait.
func (u *unrecorded) settle(run *Run) {
	if u == nil {
		return
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	q := u.queues[run]
	keep := q[:0]
	for _, a := range q {
		if _, stored := run.Store.StatusOf(a.id); stored {
			u.retire(a)
		} else {
			keep = append(keep, a)
		}
	}
	clear(q[len(keep):])
	u.queues[run] = keep
	if len(keep) == 0 {
		delete(u.queues, run)
	}
	u.regate()
}

// retire takes an answer out: it is in its batch's results, or its run
// ended (called under u.mu).
func (u *unrecorded) retire(a *answer) {
	if a.slot != nil {
		a.slot.Release(1)
		return
	}
	a.done = true
	u.calls--
	if a.cost != nil {
		u.cost.Sub(u.cost, a.cost)
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
	for _, a := range u.queues[run] {
		u.retire(a)
	}
	delete(u.queues, run)
	u.regate()
}

// regate is gate at the hold bound as it is now (called under u.mu).
func (u *unrecorded) regate() {
	_, holdAt := u.bounds()
	u.gate(holdAt)
}

// gate holds the provider's batch calls back while the answers waiting
// reach holdAt, and lets them go once they do not (called under u.mu,
// which the dispatcher never takes).
func (u *unrecorded) gate(holdAt dispatch.RepayBound) {
	if reached := holdAt.Reached(u.calls, u.cost); reached != u.holding {
		u.holding = reached
		u.d.HoldForWrites(reached)
	}
}

// journalLoop writes the journal each time it is poked, until stop; a
// failed write is tried again a second later.
func (u *unrecorded) journalLoop(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-u.stop:
			return
		case <-u.kick:
		}
		if err := u.journal(ctx); err != nil && ctx.Err() == nil {
			logf.FromContext(ctx).Error(err, "Writing the results journal; retrying", "provider", u.d.Name(), "after", time.Second)
			select {
			case <-ctx.Done():
				return
			case <-u.stop:
				return
			case <-u.clock.After(time.Second):
				u.poke()
			}
		}
	}
}

// journal writes every answer of the provider's batches that is neither
// journaled nor in its results, in one write, once they reach the bound:
// a poke that came during the last write finds only what arrived since,
// which waits for the bound like any other.
func (u *unrecorded) journal(ctx context.Context) error {
	u.mu.Lock()
	if writeAt, _ := u.bounds(); !writeAt.Reached(u.calls, u.cost) {
		u.mu.Unlock()
		return nil
	}
	var todo []*answer
	var entries []journal.Entry
	for run, q := range u.queues {
		for _, a := range q {
			if a.slot == nil && !a.done {
				todo = append(todo, a)
				entries = append(entries, journal.Entry{Batch: run.UID})
			}
		}
	}
	rs := make([]results.Result, len(todo))
	for i, a := range todo {
		rs[i] = a.result
	}
	u.mu.Unlock()
	if len(todo) == 0 {
		return nil
	}
	for i := range entries { // a Result holds only strings, numbers and a bool
		entries[i].Result, _ = json.Marshal(rs[i])
	}
	slots, err := u.w.Write(ctx, entries)
	if err != nil {
		metrics.JournalWrites.WithLabelValues(u.d.Name(), "failed").Inc()
		return err
	}
	metrics.JournalWrites.WithLabelValues(u.d.Name(), "written").Inc()
	u.mu.Lock()
	defer u.mu.Unlock()
	for i, a := range todo {
		if a.done { // its results were written meanwhile
			slots[i].Release(1)
			continue
		}
		a.slot, a.result = slots[i], results.Result{}
		u.calls--
		if a.cost != nil {
			u.cost.Sub(u.cost, a.cost)
		}
	}
	u.regate()
	return nil
}

// ledger returns the count of d's answers waiting, made (with its journal
// writer) on the first run launched on d, with one more run counted
// (called under rt.mu).
func (rt *Runtime) ledger(d *dispatch.Dispatcher, s Spec) *unrecorded {
	u := rt.ledgers[d]
	if u == nil {
		u = &unrecorded{d: d, w: rt.journals.Writer(d.Name(), s.Provider), clock: rt.clock, cost: new(big.Rat),
			kick: make(chan struct{}, 1), stop: make(chan struct{}), queues: map[*Run][]*answer{}}
		rt.ledgers[d] = u
		go u.journalLoop(rt.ctx)
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
			close(u.stop)
		}
	}
}

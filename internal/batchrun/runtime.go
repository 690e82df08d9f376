// Package batchrun is the manager's long-lived batch runtime, kept out of
// the reconcilers: the runs of admitted batches, each with its result
// store, the writer that flushes it, and its place in a provider's
// dispatcher. It is a leader-elected manager Runnable. The InferenceBatch
// reconciler launches, reads and stops runs; a run tells the reconciler of
// news (results stored, every result stored, a quota hold began or ended)
// as typed events on News, a channel the reconciler watches, instead of
// being polled. The reconciler is the one writer of a batch's status. When
// the manager stops, Start returns only after every run wrote what it held.
//
// Answers waiting for their batch's result write go into their provider's
// results journal (internal/journal) in one write for all its batches, so a
// crash does not pay for them twice: a new leader's runtime reads the
// journal before it launches anything, and Recover hands each batch its
// answers back before its items are planned.
package batchrun

import (
	"context"
	"encoding/json"
	"sync"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/clock"
	"sigs.k8s.io/controller-runtime/pkg/event"
	logf "sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/llmquota/llmquota/internal/dispatch"
	"github.com/llmquota/llmquota/internal/journal"
	"github.com/llmquota/llmquota/internal/results"
)

// NewsBuffer is how many batches' news may wait to enter the reconcile
// queue; the queue drains it continuously and merges news of one batch.
const NewsBuffer = 1024

// NewsKind says what a run's news is.
type NewsKind int

const (
	// Progress says what holds the batch back changed (a quota hold began
	// or ended), or a result write or an input read failed or recovered.
	Progress NewsKind = iota
	// Stored says a write stored results.
	Stored
	// Final says every result of the batch is stored: it can finish.
	Final
)

// News tells the reconciler that the batch at Key has something to
// publish.
type News struct {
	Key  types.NamespacedName
	Kind NewsKind
}

// Runtime holds the runs of admitted batches. Create it with New, add it
// to the manager, and launch runs once it is started.
type Runtime struct {
	clock  clock.Clock
	policy results.FlushPolicy
	news   chan event.TypedGenericEvent[News]
	// journal says where the providers' results journals live; journals
	// is what was read from them at the start, and writes them.
	journal  journal.Options
	journals *journal.Journals

	started chan struct{}
	ctx     context.Context
	writers sync.WaitGroup // the runs' result writers

	mu       sync.Mutex
	runs     map[types.NamespacedName]*Run
	stopping bool
	// ledgers count each provider's answers waiting for their write.
	ledgers map[*dispatch.Dispatcher]*unrecorded
	// recovered are the answers of batches taken back from the journal,
	// until the batch's run is launched (Recover, Launch): an admission
	// that fails after Recover finds them again at the next.
	recovered map[types.UID][]recoveredAnswer
}

// recoveredAnswer is an answer taken back from the journal: its result,
// and the slot that holds it until it is in the batch's results.
type recoveredAnswer struct {
	result results.Result
	slot   *journal.Slot
}

// JournalGrace is how long after a leader's start the journal keeps the
// answers no batch took back: every batch is admitted again by then.
var JournalGrace = 10 * time.Minute

// New returns a runtime whose runs write results as policy says, and
// keep the providers' journals as j says.
func New(c clock.Clock, policy results.FlushPolicy, j journal.Options) *Runtime {
	return &Runtime{clock: c, policy: policy, journal: j, news: make(chan event.TypedGenericEvent[News], NewsBuffer),
		started: make(chan struct{}), runs: map[types.NamespacedName]*Run{}, ledgers: map[*dispatch.Dispatcher]*unrecorded{},
		recovered: map[types.UID][]recoveredAnswer{}}
}

// Start reads the journals, then runs until ctx ends, then stops every run
// and waits until each wrote the results it held. Nothing is launched
// before the journals are read: a batch admitted before would ask again
// what the journal holds.
func (rt *Runtime) Start(ctx context.Context) error {
	rt.ctx = ctx
	for {
		j, err := journal.Open(ctx, rt.journal)
		if err == nil {
			rt.journals = j
			break
		}
		logf.FromContext(ctx).Error(err, "Reading the results journal; retrying", "after", time.Second)
		select {
		case <-ctx.Done():
			return nil
		case <-rt.clock.After(time.Second):
		}
	}
	go func() {
		select {
		case <-ctx.Done():
		case <-rt.clock.After(JournalGrace):
			rt.expireJournal()
		}
	}()
	close(rt.started)
	<-ctx.Done()
	rt.mu.Lock()
	rt.stopping = true
	rt.mu.Unlock()
	rt.writers.Wait()
	return nil
}

// NeedLeaderElection says runs live on the leader only.
func (rt *Runtime) NeedLeaderElection() bool { return true }

// News is the channel of the runs' news, for a source.TypedChannel.
func (rt *Runtime) News() <-chan event.TypedGenericEvent[News] { return rt.news }

// Spec is a batch to run.
type Spec struct {
	Key types.NamespacedName
	// UID is the batch's: its answers in the journal carry it.
	UID   types.UID
	Store results.Sink
	// Provider, when set, owns the provider's journal slots (they are
	// deleted with it).
	Provider *metav1.OwnerReference
	// Policy, when set, replaces the runtime's flush policy for this run
	// (object storage writes large parts).
	Policy *results.FlushPolicy
	// Dispatcher runs Batch's items; OnResult and OnChange are the run's.
	Dispatcher *dispatch.Dispatcher
	Batch      dispatch.Batch
	// Kept, Filtered and Total count the batch's items: at or above
	// minScore, below it, and all.
	Kept, Filtered, Total int
	// CacheKey gives a prompt's cache key (model, parameters, prompt),
	// stored with its result so later batches can reuse it. It is computed
	// when the result comes, so no key is held per waiting item.
	CacheKey func(prompt string) string
	// Source, when set, streams the batch's items after Batch.Items: it
	// calls emit with each item to send, in order, and returns at the
	// input's end (nil) or when the input cannot be read (an error naming
	// it). After an error it is called again, a RereadInput later; it must
	// not emit an item twice. emit blocks while the dispatcher has enough
	// items waiting, so a large input is never held whole.
	Source func(ctx context.Context, emit func(dispatch.Item) bool) error
}

// feedBuffer bounds the items read ahead of the dispatcher, per batch.
const feedBuffer = 1024

// RereadInput is how long a run waits before reading its input again
// after the read broke off.
var RereadInput = 30 * time.Second

// Launch starts a run (waiting until the runtime has started): its result
// writer, and its items in the dispatcher. It replaces a run of the same
// batch. It returns nil when the runtime is stopping.
func (rt *Runtime) Launch(s Spec) *Run {
	<-rt.started
	rt.Stop(s.Key)
	ctx, cancel := context.WithCancel(rt.ctx)
	run := &Run{Spec: s, cancel: cancel, kick: make(chan struct{}, 1), policy: rt.policy, clock: rt.clock}
	run.Batch.Items = nil // the dispatcher holds them (Submit takes them over)
	if s.Policy != nil {
		run.policy = *s.Policy
	}
	run.changed = func() { rt.tell(ctx, s.Key, Progress) }
	run.stored = func() { rt.tell(ctx, s.Key, Stored) }
	// The runtime's context, not the run's: the news that finishes the
	// batch must reach the reconciler even if the run is stopped (its
	// context canceled) before the news leaves the channel's buffer.
	run.finished = func() { rt.tell(rt.ctx, s.Key, Final) }
	rt.mu.Lock()
	if rt.stopping {
		rt.mu.Unlock()
		cancel()
		return nil
	}
	rt.runs[s.Key] = run
	run.repay = rt.ledger(s.Dispatcher, s)
	if rs, ok := rt.recovered[s.UID]; ok {
		delete(rt.recovered, s.UID)
		run.repay.adopt(run, rs)
	}
	rt.writers.Add(1)
	rt.mu.Unlock()
	go func() {
		defer rt.writers.Done()
		run.write(ctx)
		rt.ended(run)
	}()
	run.poke() // the filtered and cached results may be due at once
	s.Batch.Key, s.Batch.OnResult, s.Batch.OnChange = s.Key.String(), run.onResult, run.changed
	if s.Source != nil {
		feed := make(chan dispatch.Item, min(feedBuffer, 2*max(1, s.Batch.Size)))
		s.Batch.Feed = feed
		go run.read(ctx, feed)
	}
	s.Dispatcher.Submit(s.Batch)
	return run
}

// Recover adds to store the answers of the batch uid that a previous
// leader journaled and its results lack, before its items are planned, so
// that they are not asked again; they are written with its next results
// once its run is launched. It returns how many it added.
func (rt *Runtime) Recover(uid types.UID, store results.Sink) int {
	<-rt.started
	rt.mu.Lock()
	defer rt.mu.Unlock()
	rs, ok := rt.recovered[uid]
	if !ok {
		for _, e := range rt.journals.Take(uid) {
			var res results.Result
			if json.Unmarshal(e.Result, &res) != nil || res.ID == "" {
				e.Slot.Release(1) // unreadable: nothing to give back
				continue
			}
			rs = append(rs, recoveredAnswer{result: res, slot: e.Slot})
		}
	}
	n := 0
	for _, r := range rs {
		if !store.Has(r.result.ID) {
			store.Add(r.result)
			n++
		}
	}
	if len(rs) > 0 {
		rt.recovered[uid] = rs
	}
	return n
}

// expireJournal frees the journal's slots of answers no batch took back,
// or took back and never launched, by the end of the grace period.
func (rt *Runtime) expireJournal() {
	rt.journals.Expire()
	rt.mu.Lock()
	defer rt.mu.Unlock()
	for uid, rs := range rt.recovered {
		for _, r := range rs {
			r.slot.Release(1)
		}
		delete(rt.recovered, uid)
	}
}

// Get returns a batch's run, or nil.
func (rt *Runtime) Get(key types.NamespacedName) *Run {
	rt.mu.Lock()
	defer rt.mu.Unlock()
	return rt.runs[key]
}

// Stop removes a run: its items leave the dispatcher and its writer
// writes what it holds, then ends. What the run held is released.
func (rt *Runtime) Stop(key types.NamespacedName) {
	rt.mu.Lock()
	run := rt.runs[key]
	delete(rt.runs, key)
	rt.mu.Unlock()
	if run != nil {
		run.Dispatcher.Remove(key.String())
		run.cancel()
	}
}

// tell queues the news of the batch at key for the reconciler.
func (rt *Runtime) tell(ctx context.Context, key types.NamespacedName, kind NewsKind) {
	select {
	case rt.news <- event.TypedGenericEvent[News]{Object: News{Key: key, Kind: kind}}:
	case <-ctx.Done():
	}
}

// finalWrite bounds a stopping run's last result write.
const finalWrite = 10 * time.Second

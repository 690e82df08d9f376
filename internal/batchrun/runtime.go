// Package batchrun is the manager's long-lived batch runtime, kept out of
// the reconcilers: the runs of admitted batches, each with its result
// store, the writer that flushes it, and its place in a provider's
// dispatcher. It is a leader-elected manager Runnable. The InferenceBatch
// reconciler launches, reads and stops runs; a run tells the reconciler of
// news (results stored, a quota hold began or ended) through News, a
// channel the reconciler watches, instead of being polled, or publishes
// its stored results itself through the function given to PublishWith.
// When the manager stops, Start returns only after every run wrote what it
// held.
package batchrun

import (
	"context"
	"sync"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/clock"
	"sigs.k8s.io/controller-runtime/pkg/event"

	llmv1 "github.com/llmquota/llmquota/api/v1alpha1"
	"github.com/llmquota/llmquota/internal/dispatch"
	"github.com/llmquota/llmquota/internal/results"
)

// NewsBuffer is how many batches' news may wait to enter the reconcile
// queue; the queue drains it continuously and merges news of one batch.
const NewsBuffer = 1024

// Runtime holds the runs of admitted batches. Create it with New, add it
// to the manager, and launch runs once it is started.
type Runtime struct {
	clock  clock.Clock
	policy results.FlushPolicy
	news   chan event.TypedGenericEvent[*llmv1.InferenceBatch]
	// publish, when set, writes a batch's status at once from its result
	// writer (PublishWith); false sends the news through News instead.
	publish func(ctx context.Context, key types.NamespacedName) bool

	started chan struct{}
	ctx     context.Context
	writers sync.WaitGroup // the runs' result writers

	mu       sync.Mutex
	runs     map[types.NamespacedName]*Run
	stopping bool
}

// New returns a runtime whose runs write results as policy says.
func New(c clock.Clock, policy results.FlushPolicy) *Runtime {
	return &Runtime{clock: c, policy: policy, news: make(chan event.TypedGenericEvent[*llmv1.InferenceBatch], NewsBuffer),
		started: make(chan struct{}), runs: map[types.NamespacedName]*Run{}}
}

// Start runs until ctx ends, then stops every run and waits until each
// wrote the results it held.
func (rt *Runtime) Start(ctx context.Context) error {
	rt.ctx = ctx
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

// PublishWith makes a run publish its stored results itself, calling
// publish from its result writer right after a write, instead of sending
// the news through News: in a burst of admissions a reconcile queue made
// that news wait seconds behind its results. The write that stores a
// batch's last results is published so too (publish then finishes the
// batch). publish returns false when it did not write everything the
// news asks for (the batch is not ready for it, the write must wait, a
// later step is due, or it failed); the news then goes through News.
// Other news (a quota hold, a write error) always goes through News. Call
// it before Start.
func (rt *Runtime) PublishWith(publish func(ctx context.Context, key types.NamespacedName) bool) {
	rt.publish = publish
}

// News is the channel of batches with news to publish.
func (rt *Runtime) News() <-chan event.TypedGenericEvent[*llmv1.InferenceBatch] { return rt.news }

// Spec is a batch to run.
type Spec struct {
	Key   types.NamespacedName
	Store results.Sink
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
	run.changed = func() { rt.tell(ctx, s.Key, false) }
	run.finished = func() { rt.tell(ctx, s.Key, true) }
	run.stored = run.changed
	if rt.publish != nil {
		// The runtime's context, not the run's: publishing the last
		// results finishes the batch, which stops (cancels) its run, and
		// the news of a step still due (its TTL) must not be lost then.
		published := func(final bool) func() {
			return func() {
				if !rt.publish(rt.ctx, s.Key) {
					rt.tell(rt.ctx, s.Key, final)
				}
			}
		}
		run.stored, run.finished = published(false), published(true)
	}
	rt.mu.Lock()
	if rt.stopping {
		rt.mu.Unlock()
		cancel()
		return nil
	}
	rt.runs[s.Key] = run
	rt.writers.Add(1)
	rt.mu.Unlock()
	go func() {
		defer rt.writers.Done()
		run.write(ctx)
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

// finalNews marks news that every result of the batch is stored.
const finalNews = "batchrun.llmquota.dev/final"

// tell queues the batch for a reconcile that publishes its progress;
// final says every result is stored (the batch is about to finish).
func (rt *Runtime) tell(ctx context.Context, key types.NamespacedName, final bool) {
	select {
	case rt.news <- event.TypedGenericEvent[*llmv1.InferenceBatch]{Object: News(key, final)}:
	case <-ctx.Done():
	}
}

// News is the object a run sends on the News channel for the batch at
// key: only its name, marked when final (every result is stored).
func News(key types.NamespacedName, final bool) *llmv1.InferenceBatch {
	obj := &llmv1.InferenceBatch{ObjectMeta: metav1.ObjectMeta{Namespace: key.Namespace, Name: key.Name}}
	if final {
		obj.Annotations = map[string]string{finalNews: "true"}
	}
	return obj
}

// IsFinal reports whether news from News says every result of its batch
// is stored: the news that finishes the batch, not a progress refresh.
func IsFinal(news *llmv1.InferenceBatch) bool { return news.Annotations[finalNews] == "true" }

// finalWrite bounds a stopping run's last result write.
const finalWrite = 10 * time.Second

package batchrun

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/clock"
	clocktesting "k8s.io/utils/clock/testing"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/event"

	llmv1 "github.com/llmquota/llmquota/api/v1alpha1"
	"github.com/llmquota/llmquota/internal/dispatch"
	"github.com/llmquota/llmquota/internal/emulator"
	"github.com/llmquota/llmquota/internal/journal"
	"github.com/llmquota/llmquota/internal/provider"
	"github.com/llmquota/llmquota/internal/ratewindow"
	"github.com/llmquota/llmquota/internal/results"
	"github.com/llmquota/llmquota/internal/testbed/apiserver"
)

// writes counts the result ConfigMap writes a store makes (journal writes
// apart); failNext fails the next create of results, as an API server that
// is not there would, and down fails every write.
type writes struct {
	client.Client
	n, journal     atomic.Int64
	failNext, down atomic.Bool
}

func (w *writes) count(obj client.Object) error {
	if w.down.Load() {
		return errors.New("connection refused")
	}
	if _, ok := obj.GetLabels()[journal.LabelJournal]; ok {
		w.journal.Add(1)
		return nil
	}
	w.n.Add(1)
	return nil
}

func (w *writes) Create(ctx context.Context, obj client.Object, opts ...client.CreateOption) error {
	if _, ok := obj.GetLabels()[journal.LabelJournal]; !ok && w.failNext.CompareAndSwap(true, false) {
		return errors.New("connection refused")
	}
	if err := w.count(obj); err != nil {
		return err
	}
	return w.Client.Create(ctx, obj, opts...)
}

func (w *writes) Update(ctx context.Context, obj client.Object, opts ...client.UpdateOption) error {
	if err := w.count(obj); err != nil {
		return err
	}
	return w.Client.Update(ctx, obj, opts...)
}

// bed is a real API server, a dispatcher calling the emulator over HTTP,
// and a runtime on a fake clock.
type bed struct {
	k       client.Client
	emu     *emulator.Server
	c       *writes
	d       *dispatch.Dispatcher
	rt      *Runtime
	clock   *clocktesting.FakeClock
	stop    func() // stops the runtime
	stopped chan struct{}
}

// newBed starts a bed; latency delays every answer of the emulator, and
// each opt edits the dispatcher's config.
func newBed(t *testing.T, policy results.FlushPolicy, latency time.Duration, opts ...func(*dispatch.Config)) *bed {
	t.Helper()
	k := apiserver.Start(t)
	emu := emulator.New(emulator.Config{Latency: latency})
	srv := emulator.NewTestServer(emu)
	t.Cleanup(srv.Close)
	pc, err := provider.New(provider.Config{Type: provider.Gemini, Endpoint: srv.URL, APIKey: "k"})
	if err != nil {
		t.Fatal(err)
	}
	cfg := dispatch.Config{Name: "p", Client: pc, DefaultModel: "m", Limits: ratewindow.Config{MaxConcurrency: 4}}
	for _, opt := range opts {
		opt(&cfg)
	}
	d, err := dispatch.New(cfg, nil, clock.RealClock{}, logr.Discard(), nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	go d.Run(ctx)
	fc := clocktesting.NewFakeClock(time.Date(2026, 11, 27, 9, 0, 0, 0, time.UTC))
	w := &writes{Client: k}
	b := &bed{k: k, emu: emu, c: w, d: d, rt: New(fc, policy, journal.Options{Reader: k, Writer: w, Namespace: "default"}), clock: fc, stopped: make(chan struct{})}
	rtCtx, stopRuntime := context.WithCancel(ctx)
	go func() { _ = b.rt.Start(rtCtx); close(b.stopped) }()
	b.stop = stopRuntime // the runtime only: the dispatcher goes on
	t.Cleanup(func() { cancel(); <-b.stopped })
	return b
}

// batch creates a batch named name and loads its (empty) result store.
func (b *bed) batch(t *testing.T, name string) (*llmv1.InferenceBatch, *results.Store) {
	t.Helper()
	ctx := context.Background()
	batch := &llmv1.InferenceBatch{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: name},
		Spec: llmv1.InferenceBatchSpec{ProviderRef: llmv1.ProviderReference{Name: "p"}, Items: []llmv1.Item{{ID: "a", Prompt: "p"}}}}
	if err := b.c.Client.Create(ctx, batch); err != nil {
		t.Fatal(err)
	}
	store, err := results.Load(ctx, results.Options{Lister: b.c.Client, Reader: b.c.Client, Writer: b.c, Clock: b.clock}, batch)
	if err != nil {
		t.Fatal(err)
	}
	return batch, store
}

// launch runs n items of a new batch whose Total is total.
func (b *bed) launch(t *testing.T, name string, n, total int) *Run {
	t.Helper()
	batch, store := b.batch(t, name)
	var items []dispatch.Item
	for i := range n {
		items = append(items, dispatch.Item{ID: fmt.Sprintf("i%d", i), Prompt: "rate this"})
	}
	return b.rt.Launch(Spec{Key: client.ObjectKeyFromObject(batch), UID: batch.UID, Store: store, Dispatcher: b.d, Kept: total, Total: total,
		Batch: dispatch.Batch{Namespace: "default", Size: n, Items: items}})
}

func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func pending(r *Run) int {
	n, _ := r.Store.Pending()
	return n
}

// TestResultsWrittenByPolicyWithNews: a run writes once Items results wait
// and at once for the batch's last, and tells of each write on News; only
// the news of the last write, after which every result is stored, is final.
func TestResultsWrittenByPolicyWithNews(t *testing.T) {
	// The dispatcher sends 4 at once: with 100ms answers the first 4 results
	// wait together long before the fifth, so the writer sees 3 waiting
	// even on loaded cores (at 0ms all 5 could arrive before it ran once).
	b := newBed(t, results.FlushPolicy{Interval: time.Hour, Items: 3}, 100*time.Millisecond)
	run := b.launch(t, "by-count", 5, 5)
	eventually(t, "all 5 results stored", func() bool { return run.StoredCount() == 5 })
	if n := b.c.n.Load(); n < 2 || n > 3 {
		t.Fatalf("%d ConfigMap writes for 5 results at 3 a write (the last 2 at once), want 2 or 3", n)
	}
	// A write is counted stored before its news is sent: wait for the news.
	var final []bool
	eventually(t, "one news per write", func() bool {
		for len(b.rt.News()) > 0 {
			e := <-b.rt.News()
			if e.Object.Key.Name != "by-count" || e.Object.Kind == Progress {
				t.Fatalf("news %+v; want news of by-count's stored results", e.Object)
			}
			final = append(final, e.Object.Kind == Final)
		}
		return int64(len(final)) == b.c.n.Load()
	})
	for i, f := range final {
		if last := i == len(final)-1; f != last {
			t.Fatalf("news %d of %d final: %v; want only the last final (%v)", i+1, len(final), f, final)
		}
	}
}

// TestResultsWaitAtMostTheInterval: results that are neither enough nor
// the batch's last are written once the oldest has waited the interval, on
// the runtime's clock, and not before.
func TestResultsWaitAtMostTheInterval(t *testing.T) {
	b := newBed(t, results.FlushPolicy{Interval: 10 * time.Second, Items: 100}, 0)
	run := b.launch(t, "by-age", 2, 3)
	eventually(t, "2 results waiting", func() bool { return pending(run) == 2 })
	b.clock.Step(9 * time.Second)
	rounds := run.rounds.Load()
	run.poke() // the writer looks at its results at 9s
	eventually(t, "the writer's look at 9s", func() bool { return run.rounds.Load() > rounds })
	if n := b.c.n.Load(); n != 0 || run.StoredCount() != 0 {
		t.Fatalf("%d writes, %d stored 9s after the first result; want none before 10s", n, run.StoredCount())
	}
	b.clock.Step(time.Second)
	eventually(t, "the results written at 10s", func() bool { return run.StoredCount() == 2 })
	if n := b.c.n.Load(); n != 1 {
		t.Fatalf("%d writes, want 1", n)
	}
	eventually(t, "the write's news", func() bool { return len(b.rt.News()) > 0 })
	if e := <-b.rt.News(); e.Object.Kind != Stored {
		t.Fatalf("news of 2 of 3 results stored is %v; want Stored", e.Object.Kind)
	}
}

// TestFinalNewsOutlivesTheRun: the news that every result is stored is
// sent even when the run is stopped before the news is taken off the
// channel (finishing the batch stops its run), so the batch still
// finishes; news of an earlier write is Stored, not Final.
func TestFinalNewsOutlivesTheRun(t *testing.T) {
	b := newBed(t, results.FlushPolicy{Interval: 10 * time.Second, Items: 100}, 0)
	batch, store := b.batch(t, "finishing")
	feed := make(chan string)
	source := func(ctx context.Context, emit func(dispatch.Item) bool) error {
		for id := range feed {
			if !emit(dispatch.Item{ID: id, Prompt: "rate this"}) {
				return nil
			}
		}
		return nil
	}
	key := client.ObjectKeyFromObject(batch)
	run := b.rt.Launch(Spec{Key: key, Store: store, Dispatcher: b.d, Kept: 2, Total: 2,
		Batch: dispatch.Batch{Namespace: "default", Size: 1}, Source: source})
	feed <- "a"
	eventually(t, "1 result waiting", func() bool { return pending(run) == 1 })
	b.clock.Step(10 * time.Second)
	eventually(t, "the first write's news", func() bool { return len(b.rt.News()) == 1 })
	for range NewsBuffer - 1 { // a full channel: the last news must wait to be sent
		b.rt.news <- event.TypedGenericEvent[News]{Object: News{Kind: Progress}}
	}
	feed <- "b"
	close(feed)
	eventually(t, "every result stored", func() bool { return run.StoredCount() == 2 })
	b.rt.Stop(key)

	var kinds []NewsKind
	for len(kinds) < 2 {
		select {
		case e := <-b.rt.News():
			if e.Object.Key == key {
				kinds = append(kinds, e.Object.Kind)
			}
		case <-time.After(30 * time.Second):
			t.Fatalf("news %v, and no more: the final news was lost when the run stopped", kinds)
		}
	}
	if !slices.Equal(kinds, []NewsKind{Stored, Final}) { // without Final, the batch would never finish
		t.Fatalf("news %v; want Stored then Final", kinds)
	}
}

// TestWriteErrorClearedByTheNextWrite: a failed result write shows in
// WriteError (and is news), and the next write that stores results clears
// it, so the status stops saying results wait to be written.
func TestWriteErrorClearedByTheNextWrite(t *testing.T) {
	b := newBed(t, results.FlushPolicy{Interval: time.Hour, Items: 1}, 0)
	b.c.failNext.Store(true)
	run := b.launch(t, "recovers", 1, 2)
	eventually(t, "the failed write noted", func() bool { return run.WriteError() != nil })
	eventually(t, "the writer waiting to retry", b.clock.HasWaiters)
	b.clock.Step(time.Second)
	// The write's news is told after the write's outcome is noted: once it
	// came, the status the reconciler builds from the run must show no error.
	stored := false
	eventually(t, "the news of the retry that stored the result", func() bool {
		select {
		case e := <-b.rt.News():
			stored = stored || e.Object.Kind == Stored
		default:
		}
		return stored
	})
	if run.StoredCount() != 1 {
		t.Fatalf("%d results stored after the retry, want 1", run.StoredCount())
	}
	if err := run.WriteError(); err != nil {
		t.Fatalf("WriteError = %v after a write that stored the result; want nil", err)
	}
}

// TestStopWritesWhatRunsHold: when the manager stops, Start returns only
// after every run wrote the results it held, and nothing new launches.
func TestStopWritesWhatRunsHold(t *testing.T) {
	b := newBed(t, results.FlushPolicy{Interval: time.Hour, Items: 100}, 0)
	run := b.launch(t, "held", 3, 10)
	eventually(t, "3 results waiting", func() bool { return pending(run) == 3 })
	b.stop()
	<-b.stopped
	if run.StoredCount() != 3 {
		t.Fatalf("%d results stored at stop, want the 3 held", run.StoredCount())
	}
	var cm corev1.ConfigMap
	if err := b.c.Get(context.Background(), client.ObjectKey{Namespace: "default", Name: results.ShardName("held", 0)}, &cm); err != nil {
		t.Fatal(err)
	}
	if got := len(results.Parse([]byte(cm.Data[results.DataKey]))); got != 3 {
		t.Fatalf("the shard holds %d results, want 3", got)
	}
	if late := b.rt.Launch(Spec{Key: client.ObjectKey{Namespace: "default", Name: "late"}, Dispatcher: b.d}); late != nil {
		t.Fatal("a stopped runtime launched a run")
	}
}

// TestInputReadAsTheBatchRuns: a run streams its items from Source into
// the dispatcher; when the read breaks off, ReadError says why and news is
// told, and the read resumes after RereadInput (on the runtime's clock)
// where it stopped: every item gets one result, none is sent twice.
func TestInputReadAsTheBatchRuns(t *testing.T) {
	b := newBed(t, results.FlushPolicy{}, 0)
	batch, store := b.batch(t, "streamed")
	var calls atomic.Int32
	emitted := 0
	broken := errors.New("s3://in/x.jsonl after line 3: connection reset")
	source := func(ctx context.Context, emit func(dispatch.Item) bool) error {
		calls.Add(1)
		for ; emitted < 5; emitted++ {
			if emitted == 3 && calls.Load() == 1 {
				return broken
			}
			if !emit(dispatch.Item{ID: fmt.Sprintf("s%d", emitted), Prompt: "rate this"}) {
				return nil
			}
		}
		return nil
	}
	run := b.rt.Launch(Spec{Key: client.ObjectKeyFromObject(batch), Store: store, Dispatcher: b.d, Kept: 5, Total: 5,
		Batch: dispatch.Batch{Namespace: "default", Size: 2}, Source: source})
	eventually(t, "3 results and the read error", func() bool { return run.StoredCount() == 3 && run.ReadError() != nil })
	if !errors.Is(run.ReadError(), broken) {
		t.Fatalf("ReadError = %v", run.ReadError())
	}
	eventually(t, "the read waiting to try again", b.clock.HasWaiters)
	b.clock.Step(RereadInput)
	eventually(t, "all 5 results", func() bool { return run.StoredCount() == 5 })
	if run.ReadError() != nil || calls.Load() != 2 {
		t.Fatalf("read error %v after %d reads; want none after 2", run.ReadError(), calls.Load())
	}
	if n := len(results.Parse([]byte(shardData(t, b.c.Client, "streamed")))); n != 5 {
		t.Fatalf("%d results stored, want 5 (none twice)", n)
	}
}

// shardData is every result line of a batch, its shards joined.
func shardData(t *testing.T, c client.Client, batch string) string {
	t.Helper()
	var list corev1.ConfigMapList
	if err := c.List(context.Background(), &list, client.InNamespace("default"), client.MatchingLabels{results.LabelBatch: batch}); err != nil {
		t.Fatal(err)
	}
	var data strings.Builder
	for _, cm := range list.Items {
		data.WriteString(cm.Data[results.DataKey])
	}
	return data.String()
}

// TestANewCauseIsNews: an input or output error that appears, goes, or
// changes its cause is news (the status is written again); the same error
// again is not.
func TestANewCauseIsNews(t *testing.T) {
	eof, missing := errors.New("s3://in/x.jsonl: unexpected EOF"), errors.New("s3://in/x.jsonl: NoSuchKey")
	for _, c := range []struct {
		was, is error
		news    bool
	}{
		{nil, nil, false},
		{nil, eof, true},
		{eof, eof, false},
		{eof, errors.New("s3://in/x.jsonl: unexpected EOF"), false},
		{eof, missing, true},
		{missing, nil, true},
	} {
		if got := newCause(c.was, c.is); got != c.news {
			t.Errorf("from %v to %v: news %v, want %v", c.was, c.is, got, c.news)
		}
	}
	news := 0
	run := &Run{changed: func() { news++ }}
	for _, err := range []error{eof, eof, missing, missing, nil} {
		run.noteRead(err)
	}
	if news != 3 || run.ReadError() != nil {
		t.Fatalf("%d news for EOF, EOF, NoSuchKey, NoSuchKey, read; want 3 (the status says each new cause)", news)
	}
}

package batchrun

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"k8s.io/utils/clock"
	logf "sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/llmquota/llmquota/internal/cost"
	"github.com/llmquota/llmquota/internal/dispatch"
	"github.com/llmquota/llmquota/internal/results"
)

// Run is a batch this manager admitted: where its results go and the
// dispatcher running its items.
type Run struct {
	Spec
	cancel context.CancelFunc
	kick   chan struct{}
	policy results.FlushPolicy
	clock  clock.Clock
	// rounds counts the writer's looks at its results, each complete
	// (written if due) before it waits again: a test that checks nothing
	// was written waits for one, where a sleep only hopes the writer ran.
	rounds atomic.Int64
	// repay counts the provider's answers that are neither journaled nor
	// in their results (what a crash would pay for twice).
	repay *unrecorded
	// changed, stored and finished tell the reconciler of news: what
	// holds the batch back changed (Progress), results were stored
	// (Stored), every result is stored (Final).
	changed, stored, finished func()

	mu sync.Mutex
	// published is when the batch's status was last written.
	published time.Time
	// writeErr is why the last result write failed; nil once one succeeds.
	writeErr error
	// readErr is why the input could not be read on; nil while it reads.
	readErr error
}

// ReadError says why the rest of the batch's input cannot be read (it is
// read again every RereadInput); nil while it reads.
func (run *Run) ReadError() error {
	run.mu.Lock()
	defer run.mu.Unlock()
	return run.readErr
}

func (run *Run) noteRead(err error) {
	run.mu.Lock()
	changed := newCause(run.readErr, err)
	run.readErr = err
	run.mu.Unlock()
	if changed {
		run.changed()
	}
}

// read streams the batch's input into feed, waking the dispatcher for each
// item, until the input ends (feed is closed) or ctx does. A read that
// breaks off is tried again after RereadInput; Source skips what it sent.
func (run *Run) read(ctx context.Context, feed chan<- dispatch.Item) {
	emit := func(it dispatch.Item) bool {
		select {
		case feed <- it:
			run.Dispatcher.Wake()
			return true
		case <-ctx.Done():
			return false
		}
	}
	for {
		err := run.Source(ctx, emit)
		if ctx.Err() != nil {
			return
		}
		run.noteRead(err)
		if err == nil {
			close(feed)
			return
		}
		logf.FromContext(ctx).Error(err, "Reading the batch's input; trying again", "batch", run.Key, "after", RereadInput)
		select {
		case <-ctx.Done():
			return
		case <-run.clock.After(RereadInput):
		}
	}
}

// WriteError says why results could not be written (the results wait,
// buffered, and the write is retried); nil when the last write succeeded.
func (run *Run) WriteError() error {
	run.mu.Lock()
	defer run.mu.Unlock()
	return run.writeErr
}

// noteWrite records a write's outcome and reports whether it changed
// what WriteError says.
func (run *Run) noteWrite(err error) bool {
	run.mu.Lock()
	defer run.mu.Unlock()
	changed := newCause(run.writeErr, err)
	run.writeErr = err
	return changed
}

// newCause reports whether an input or output error says something new: it
// appeared, it went, or it has another cause than before (the object now
// missing where the connection broke): the status must say the new one.
func newCause(was, is error) bool {
	if was == nil || is == nil {
		return (was == nil) != (is == nil)
	}
	return was.Error() != is.Error()
}

// onResult stores a dispatcher result, counts it until it is journaled or
// written, and wakes the writer.
func (run *Run) onResult(r dispatch.Result) {
	stored := toStored(r)
	if run.CacheKey != nil && r.Prompt != "" {
		stored.CacheKey = run.CacheKey(r.Prompt)
	}
	run.Store.Add(stored)
	run.repay.add(run, stored, r.Cost)
	run.poke()
}

func (run *Run) poke() {
	select {
	case run.kick <- struct{}{}:
	default:
	}
}

// StoredCount is how many items of the batch have a stored result.
func (run *Run) StoredCount() int {
	n := 0
	for _, c := range run.Store.Counts() {
		n += int(c)
	}
	return n
}

// Throttle says how long to wait before the batch's status may be written
// again at now, given one write per every, or 0 if it may be written now
// (and records the write).
func (run *Run) Throttle(now time.Time, every time.Duration) time.Duration {
	run.mu.Lock()
	defer run.mu.Unlock()
	if wait := run.published.Add(every).Sub(now); wait > 0 {
		return wait
	}
	run.published = now
	return 0
}

// write flushes results as the flush policy says: once enough wait, once
// the oldest waited long enough, or at once when they are the batch's last.
// Every write that stored something tells the reconciler. Failed writes
// are retried; the results stay buffered (not counted done) until written.
func (run *Run) write(ctx context.Context) {
	log := logf.FromContext(ctx).WithValues("batch", run.Key)
	retry := false // the last write failed: write again after a pause, due or not
	for {
		pending, since := run.Store.Pending()
		due, wait := run.policy.Due(run.clock.Now(), since, pending, run.StoredCount()+pending >= run.Total)
		if due || retry {
			n, err := run.Store.Flush(ctx)
			if n > 0 || err == nil {
				run.repay.settle(run)
			}
			// Noted after every write: a write that succeeds after failed
			// ones clears the error the status shows.
			errChanged := ctx.Err() == nil && run.noteWrite(err)
			switch {
			case n > 0 && run.StoredCount() >= run.Total:
				run.finished()
			case n > 0:
				run.stored()
			case errChanged:
				run.changed()
			}
			if retry = err != nil; !retry {
				continue
			}
			if ctx.Err() == nil {
				log.Error(err, "Writing results; retrying")
			}
			wait = time.Second
		}
		run.rounds.Add(1)
		if !run.sleep(ctx, wait) {
			final, cancel := context.WithTimeout(context.Background(), finalWrite)
			if _, err := run.Store.Flush(final); err != nil {
				log.Error(err, "Writing the last results")
			}
			cancel()
			return
		}
	}
}

// sleep waits for a kick, for wait to pass (0: no time limit), or for ctx
// to end (false).
func (run *Run) sleep(ctx context.Context, wait time.Duration) bool {
	var tick <-chan time.Time
	if wait > 0 {
		t := run.clock.NewTimer(wait)
		defer t.Stop()
		tick = t.C()
	}
	select {
	case <-ctx.Done():
		return false
	case <-run.kick:
	case <-tick:
	}
	return true
}

func toStored(r dispatch.Result) results.Result {
	out := results.Result{ID: r.ID, Status: results.Succeeded, Output: r.Output, TokensIn: r.TokensIn, TokensOut: r.TokensOut,
		Attempts: r.Attempts, LatencyMs: r.Latency.Milliseconds(), Provider: r.Provider, ErrorClass: r.ErrorClass, Error: r.ErrorMessage,
		Model: r.Model, FinishReason: string(r.Finish)}
	if r.Cost != nil {
		out.CostUSD = cost.Format(r.Cost)
	}
	if !r.Succeeded {
		out.Status = results.Failed
	}
	return out
}

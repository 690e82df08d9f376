package controller

import (
	"context"
	"sync"
	"time"

	"github.com/go-logr/logr"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/clock"

	"github.com/llmquota/llmquota/internal/dispatch"
	"github.com/llmquota/llmquota/internal/results"
)

// batchRun is a batch this manager admitted: where its results go and the
// dispatcher running its items.
type batchRun struct {
	store      *results.Store
	dispatcher *dispatch.Dispatcher
	kept       int // items at or above minScore
	filtered   int
	total      int
	cancel     context.CancelFunc
	kick       chan struct{}
	// cacheKeys hold each item's cache key (model, parameters, prompt),
	// stored with its result so later batches can reuse it.
	cacheKeys map[string]string
	policy    results.FlushPolicy
	clock     clock.Clock
	// changed tells the reconciler the batch has news to publish: results
	// were stored, or what holds it back changed.
	changed func()

	mu sync.Mutex
	// published is when the batch's status was last written; progress is
	// written at most once per statusInterval.
	published time.Time
}

// runs is the set of admitted batches, by namespace/name.
type runs struct {
	mu sync.Mutex
	m  map[types.NamespacedName]*batchRun
}

func (rs *runs) get(key types.NamespacedName) *batchRun {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	return rs.m[key]
}

func (rs *runs) put(key types.NamespacedName, run *batchRun) {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	if rs.m == nil {
		rs.m = map[types.NamespacedName]*batchRun{}
	}
	rs.m[key] = run
}

// stop removes a run: its items leave the dispatcher and its flusher
// writes what it holds, then ends. What the run held is released.
func (rs *runs) stop(key types.NamespacedName) {
	rs.mu.Lock()
	run := rs.m[key]
	delete(rs.m, key)
	rs.mu.Unlock()
	if run != nil {
		run.dispatcher.Remove(key.String())
		run.cancel()
	}
}

// onResult stores a dispatcher result and wakes the flusher.
func (run *batchRun) onResult(r dispatch.Result) {
	stored := toStored(r)
	stored.CacheKey = run.cacheKeys[r.ID]
	run.store.Add(stored)
	run.poke()
}

func (run *batchRun) poke() {
	select {
	case run.kick <- struct{}{}:
	default:
	}
}

// storedCount is how many items of the batch have a stored result.
func (run *batchRun) storedCount() int {
	n := 0
	for _, c := range run.store.Counts() {
		n += int(c)
	}
	return n
}

// throttle says how long to wait before the batch's status may be written
// again at now, or 0 if it may be written now (and records the write).
func (run *batchRun) throttle(now time.Time, every time.Duration) time.Duration {
	run.mu.Lock()
	defer run.mu.Unlock()
	if wait := run.published.Add(every).Sub(now); wait > 0 {
		return wait
	}
	run.published = now
	return 0
}

// flush writes results as the flush policy says: once enough wait, once
// the oldest waited long enough, or at once when they are the batch's last.
// Every write that stored something tells the reconciler. Failed writes
// are retried; the results stay buffered (not counted done) until written.
func (run *batchRun) flush(ctx context.Context, log logr.Logger) {
	for {
		pending, since := run.store.Pending()
		due, wait := run.policy.Due(run.clock.Now(), since, pending, run.storedCount()+pending >= run.total)
		if due {
			n, err := run.store.Flush(ctx)
			if n > 0 {
				run.changed()
			}
			if err == nil {
				continue
			}
			if ctx.Err() == nil {
				log.Error(err, "Writing results; retrying")
			}
			wait = time.Second
		}
		if !run.sleep(ctx, wait) {
			final, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			if _, err := run.store.Flush(final); err != nil {
				log.Error(err, "Writing the last results")
			}
			cancel()
			return
		}
	}
}

// sleep waits for a kick, for wait to pass (0: no time limit), or for ctx
// to end (false).
func (run *batchRun) sleep(ctx context.Context, wait time.Duration) bool {
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
		Attempts: r.Attempts, LatencyMs: r.Latency.Milliseconds(), Provider: r.Provider, ErrorClass: r.ErrorClass, Error: r.ErrorMessage}
	if !r.Succeeded {
		out.Status = results.Failed
	}
	return out
}

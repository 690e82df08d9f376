package controller

import (
	"context"
	"sync"
	"time"

	"github.com/go-logr/logr"
	"k8s.io/apimachinery/pkg/types"

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
// writes what it holds, then ends.
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

// flush writes results as they arrive: one write in flight per batch, and
// what arrives during a write goes in the next, so writes per item fall as
// the item rate rises. Failed writes are retried; the results stay
// buffered (not counted done) until written.
func (run *batchRun) flush(ctx context.Context, log logr.Logger) {
	for {
		select {
		case <-ctx.Done():
			final, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			if _, err := run.store.Flush(final); err != nil {
				log.Error(err, "Writing the last results")
			}
			cancel()
			return
		case <-run.kick:
		}
		if _, err := run.store.Flush(ctx); err != nil && ctx.Err() == nil {
			log.Error(err, "Writing results; retrying")
			time.Sleep(time.Second)
			run.poke()
		}
	}
}

func toStored(r dispatch.Result) results.Result {
	out := results.Result{ID: r.ID, Status: results.Succeeded, Output: r.Output, TokensIn: r.TokensIn, TokensOut: r.TokensOut,
		Attempts: r.Attempts, LatencyMs: r.Latency.Milliseconds(), Provider: r.Provider, ErrorClass: r.ErrorClass, Error: r.ErrorMessage}
	if !r.Succeeded {
		out.Status = results.Failed
	}
	return out
}

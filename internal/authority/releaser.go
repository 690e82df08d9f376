package authority

import (
	"context"
	"time"

	"github.com/go-logr/logr"
)

// Releaser sends releases in the background, many in one request: a
// gateway's caller never waits for its release, and the authority reads
// one request per flush instead of one per call.
type Releaser struct {
	client *Client
	log    logr.Logger
	in     chan ReleaseRequest
}

// Release batching: a flush carries at most releaseBatch releases. After a
// sent call's release it waits up to sentReleaseDelay for more: the call's
// slot and tokens are settled that much later, nothing else, and at a few
// hundred calls a second a release per request would be as many requests
// to the leader as calls. A spare given back unsent goes within
// releaseDelay: other calls may wait for its place in the windows.
const (
	releaseBatch     = 256
	releaseDelay     = 2 * time.Millisecond
	sentReleaseDelay = 10 * time.Millisecond
)

// delayOf is how long a flush waits for more after req.
func delayOf(req ReleaseRequest) time.Duration {
	if req.Sent {
		return sentReleaseDelay
	}
	return releaseDelay
}

// NewReleaser starts a Releaser that runs until ctx ends; releases queued
// then are flushed on the way out.
func NewReleaser(ctx context.Context, c *Client, log logr.Logger) *Releaser {
	r := &Releaser{client: c, log: log, in: make(chan ReleaseRequest, 4*releaseBatch)}
	go r.run(ctx)
	return r
}

// Release queues a release. It blocks only while the queue is full.
func (r *Releaser) Release(req ReleaseRequest) { r.in <- req }

// Wrote reports a grant's write at once, in the background: the next call
// of its provider waits for it, so it is not held for a batch of
// releases. One that is lost is covered by the authority's write
// deadline, or by the grant's release.
func (r *Releaser) Wrote(grant string) {
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := r.client.Wrote(ctx, grant); err != nil {
			r.log.V(1).Info("Reporting a write failed; its release or the write deadline ends the wait", "error", err.Error())
		}
	}()
}

func (r *Releaser) run(ctx context.Context) {
	batch := make([]ReleaseRequest, 0, releaseBatch)
	for {
		select {
		case req := <-r.in:
			batch = append(batch[:0], req)
		case <-ctx.Done():
			r.drain(batch[:0])
			return
		}
		wait := delayOf(batch[0])
		deadline := time.Now().Add(wait)
		timer := time.NewTimer(wait)
	fill:
		for len(batch) < releaseBatch {
			select {
			case req := <-r.in:
				batch = append(batch, req)
				if sooner := time.Now().Add(delayOf(req)); sooner.Before(deadline) {
					deadline = sooner
					timer.Reset(time.Until(deadline))
				}
			case <-timer.C:
				break fill
			}
		}
		timer.Stop()
		r.flush(batch)
	}
}

// drain flushes what is queued when the Releaser stops.
func (r *Releaser) drain(batch []ReleaseRequest) {
	for {
		select {
		case req := <-r.in:
			batch = append(batch, req)
		default:
			if len(batch) > 0 {
				r.flush(batch)
			}
			return
		}
	}
}

// flush sends a batch, trying three times. A batch that cannot be
// delivered is reclaimed by the authority when its grants' lease ends.
func (r *Releaser) flush(batch []ReleaseRequest) {
	for attempt := range 3 {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		err := r.client.Release(ctx, batch...)
		cancel()
		if err == nil {
			return
		}
		r.log.V(1).Info("Releasing grants failed", "grants", len(batch), "attempt", attempt+1, "error", err.Error())
		time.Sleep(time.Duration(attempt+1) * 200 * time.Millisecond)
	}
	r.log.Info("Could not release grants; the authority reclaims them when their lease ends", "grants", len(batch))
}

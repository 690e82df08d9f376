package authority

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"k8s.io/utils/clock"
)

// Acquirer asks the authority for quota (Client).
type Acquirer interface {
	Acquire(ctx context.Context, req AcquireRequest) (AcquireResponse, error)
}

// DefaultMaxSpares bounds the spares one acquire asks for.
const DefaultMaxSpares = 64

// sweepEvery is how often Run gives back spares held past their use.
const sweepEvery = 25 * time.Millisecond

// idleSet is how long a set of a provider, namespace and model that holds
// nothing is kept after its last call. Callers name the model, so a set
// per model ever named would grow without bound; a set forgotten costs its
// next call no more than its first did (one acquire without spares).
const idleSet = time.Minute

// Spares serves a gateway's calls from spare grants: an acquire also asks
// for the grants its replica's next calls of the same provider, namespace
// and model will want (about as many as came in the last spare period, and
// as wait now), and a call that finds a spare of its cost or more is
// admitted with no round trip to the leader. Spares are used within the
// provider's UseMillis of the acquire that brought them, or given back
// unsent.
//
// One acquire is in flight per provider, namespace and model: calls that
// find no spare while it is wait for it and take its spares, so a burst of
// calls asks the leader a few times, not once per call. The acquire that
// brings spares does not wait for quota (its caller asks again, alone,
// when it must wait), so those behind it wait at most one round trip.
type Spares struct {
	Quota Acquirer
	// Return gives back a spare unsent (Releaser.Release).
	Return func(ReleaseRequest)
	// Max bounds the spares one acquire asks for; DefaultMaxSpares when
	// zero, none when negative.
	Max   int
	Clock clock.PassiveClock

	mu             sync.Mutex
	sets           map[spareKey]*spareSet
	used, returned atomic.Int64
}

type spareKey struct{ provider, namespace, model string }

// spareSet is what a replica holds and knows of one provider, namespace
// and model.
type spareSet struct {
	spares []spare // oldest first
	// fetch is closed when the acquire in flight lands; nil when none is.
	fetch   chan struct{}
	waiting int // calls waiting for fetch
	// use is how long the provider's spares may be held; zero until an
	// answer said, and for a provider that gives none (every call asks).
	use time.Duration
	// Calls counted in the current period of length use, and in the last.
	periodStart      time.Time
	calls, lastCalls int
	// lastCall is when the last call came (idleSet).
	lastCall time.Time
}

// spare is a spare grant, the cost it was granted for, and when it must
// have been sent by.
type spare struct {
	Spare
	inputChars int
	maxTokens  int64
	useBy      time.Time
}

// SpareStats counts spares used by calls and given back unsent.
type SpareStats struct{ Used, Returned int64 }

// Stats returns the spares used and given back so far.
func (s *Spares) Stats() SpareStats {
	return SpareStats{Used: s.used.Load(), Returned: s.returned.Load()}
}

func (s *Spares) now() time.Time { return nowOn(s.Clock) }

// nowOn reads c, or the wall clock when c is nil.
func nowOn(c clock.PassiveClock) time.Time {
	if c == nil {
		return time.Now()
	}
	return c.Now()
}

// Acquire admits a call from a spare when one fits, else asks the
// authority as Client.Acquire does.
func (s *Spares) Acquire(ctx context.Context, req AcquireRequest) (AcquireResponse, error) {
	key := spareKey{req.Provider, req.Namespace, req.Model}
	s.mu.Lock()
	if s.sets == nil {
		s.sets = map[spareKey]*spareSet{}
	}
	set := s.sets[key]
	if set == nil {
		set = &spareSet{}
		s.sets[key] = set
	}
	set.count(s.now())
	for {
		stale := set.expire(s.now())
		if sp, ok := set.take(req); ok {
			s.mu.Unlock()
			s.giveBack(stale)
			s.used.Add(1)
			return AcquireResponse{Grant: sp.Grant, Endpoint: sp.Endpoint}, nil
		}
		if set.use == 0 || set.fetch == nil || s.Max < 0 {
			// The fetch begins under the lock that found none in flight:
			// a call that comes meanwhile waits for it, as one after it.
			fetch := set.startFetch(s.Max)
			s.mu.Unlock()
			s.giveBack(stale)
			return s.ask(ctx, set, req, fetch)
		}
		fetch := set.fetch
		set.waiting++
		s.mu.Unlock()
		s.giveBack(stale)
		select {
		case <-fetch:
		case <-ctx.Done():
		}
		s.mu.Lock()
		set.waiting--
		if ctx.Err() != nil {
			s.mu.Unlock()
			return AcquireResponse{}, ctx.Err()
		}
	}
}

// startFetch makes the set's acquire in flight, for a provider that gives
// spares (and spares not turned off by max < 0); nil when it gives none
// (called under s.mu, with no acquire of the set in flight).
func (set *spareSet) startFetch(max int) chan struct{} {
	if set.use == 0 || max < 0 {
		return nil
	}
	set.fetch = make(chan struct{})
	return set.fetch
}

// ask asks the authority for the call. With fetch, the set's acquire in
// flight (startFetch), it also asks for spares, without waiting for quota:
// a call that must wait asks again alone, so the calls waiting for this
// acquire wait one round trip at most.
func (s *Spares) ask(ctx context.Context, set *spareSet, req AcquireRequest, fetch chan struct{}) (AcquireResponse, error) {
	s.mu.Lock()
	ask := req
	if fetch != nil {
		ask.Prefetch, ask.MaxWaitMillis = set.want(s.max()), 0
	}
	s.mu.Unlock()
	sent := s.now()
	resp, err := s.Quota.Acquire(ctx, ask)
	s.mu.Lock()
	if fetch != nil {
		set.fetch = nil
		close(fetch)
	}
	if err == nil && resp.Grant != "" {
		set.use = time.Duration(resp.UseMillis) * time.Millisecond
		for _, sp := range resp.Spares {
			set.spares = append(set.spares, spare{Spare: sp, inputChars: req.InputChars, maxTokens: req.MaxTokens, useBy: sent.Add(set.use)})
		}
	}
	s.mu.Unlock()
	resp.Spares = nil
	if fetch != nil && err == nil && resp.Grant == "" && req.MaxWaitMillis > 0 {
		// Refused at once, but the caller may wait: it asks again alone.
		req.MaxWaitMillis = max(0, req.MaxWaitMillis-s.now().Sub(sent).Milliseconds())
		return s.Quota.Acquire(ctx, req)
	}
	return resp, err
}

func (s *Spares) max() int {
	if s.Max == 0 {
		return DefaultMaxSpares
	}
	return min(s.Max, MaxPrefetch)
}

// giveBack returns spares unsent.
func (s *Spares) giveBack(spares []spare) {
	for _, sp := range spares {
		s.Return(ReleaseRequest{Grant: sp.Grant})
	}
	s.returned.Add(int64(len(spares)))
}

// Run gives back spares held past their use every sweepEvery (a replica
// whose calls stopped would keep them until their lease otherwise), and
// every spare when ctx ends.
func (s *Spares) Run(ctx context.Context) {
	ticker := time.NewTicker(sweepEvery)
	defer ticker.Stop()
	for {
		select {
		case <-ctx.Done():
			s.sweep(time.Time{})
			return
		case <-ticker.C:
			s.sweep(s.now())
		}
	}
}

// sweep gives back the spares that must be sent by now, all of them when
// now is zero, and forgets the sets idle for idleSet that hold nothing.
func (s *Spares) sweep(now time.Time) {
	var stale []spare
	s.mu.Lock()
	for key, set := range s.sets {
		if now.IsZero() {
			stale = append(stale, set.spares...)
			set.spares = nil
			continue
		}
		stale = append(stale, set.expire(now)...)
		if len(set.spares) == 0 && set.fetch == nil && set.waiting == 0 && now.Sub(set.lastCall) >= idleSet {
			delete(s.sets, key)
		}
	}
	s.mu.Unlock()
	s.giveBack(stale)
}

// count counts a call in the set's demand.
func (set *spareSet) count(now time.Time) {
	set.lastCall = now
	if set.use > 0 && now.Sub(set.periodStart) >= set.use {
		set.lastCalls = 0
		if now.Sub(set.periodStart) < 2*set.use { // the period that ended was the last one
			set.lastCalls = set.calls
		}
		set.calls, set.periodStart = 0, now
	}
	set.calls++
}

// want is how many spares to ask for: the calls expected in the next
// period (as many as in the busier of this one and the last) and those
// waiting now, less the spares held, at most most.
func (set *spareSet) want(most int) int {
	return min(most, max(0, set.waiting+max(set.calls, set.lastCalls)-len(set.spares)))
}

// expire takes out the spares that must be sent by now and returns them.
func (set *spareSet) expire(now time.Time) []spare {
	i := 0
	for i < len(set.spares) && !now.Before(set.spares[i].useBy) {
		i++
	}
	stale := set.spares[:i:i]
	set.spares = set.spares[i:]
	return stale
}

// take takes out a spare granted for a call of req's cost or more.
func (set *spareSet) take(req AcquireRequest) (spare, bool) {
	for i, sp := range set.spares {
		if sp.inputChars >= req.InputChars && sp.maxTokens >= req.MaxTokens {
			set.spares = append(set.spares[:i], set.spares[i+1:]...)
			return sp, true
		}
	}
	return spare{}, false
}

package authority

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-logr/logr"
	"k8s.io/utils/clock"
)

// Lender lends standby grants and names the leader's term (Client).
type Lender interface {
	Lend(ctx context.Context, req AcquireRequest) (StandbyResponse, error)
	Epoch() string
}

// DefaultStandbyEvery is how often Standby tops up what it holds.
const DefaultStandbyEvery = time.Second

// recheckNoStandby is how long a provider that lends no standby is left
// before it is asked again (its spec may change).
const recheckNoStandby = time.Minute

// Standby keeps the calls a gateway may send while no manager leads: for
// each provider, namespace and model it served in the last minute, the
// leader lends it up to the provider's spec.interactive.standbyCalls
// standby grants (dispatch.Lend), which it tops up every second and gives
// back unsent once half their time to be sent has passed (fresh ones
// replace them first). A call that no authority answers is admitted from
// one of the term that lent it, with a deadline for the call's end
// (AcquireResponse.EndBy); grants of a term that is no longer the one
// answering are dropped unsent: a new leader counts them in its windows,
// and it counts the calls in flight only from what each gateway tells it.
// It stands between the Ledger and Spares.
type Standby struct {
	Quota  Acquirer
	Lender Lender
	// Return gives back a grant unsent (Releaser.Release).
	Return func(ReleaseRequest)
	// Every is how often Run tops up; DefaultStandbyEvery when zero.
	Every time.Duration
	Clock clock.PassiveClock
	Log   logr.Logger

	mu             sync.Mutex
	sets           map[spareKey]*standbySet
	used, returned atomic.Int64
}

// standbySet is what a gateway holds of one provider, namespace and model.
type standbySet struct {
	grants []standbyGrant // oldest first
	// calls is how many the provider lends (-1 until it said); asked is
	// when it was last asked.
	calls int
	asked time.Time
	// seen is the largest call since the last top-up, which the next one
	// asks for (what the last one asked for, ask, when none came);
	// lastCall is when the last came.
	seen, ask cost
	lastCall  time.Time
}

// standbyGrant is a lent grant, the cost it was lent for, the term that
// lent it, when it must be sent by (useBy) and its call have ended
// (endBy), and when a fresh one replaces it (staleAt, half its time to be
// sent).
type standbyGrant struct {
	grant                 string
	inputChars            int
	maxTokens             int64
	epoch                 string
	useBy, endBy, staleAt time.Time
}

func (s *Standby) now() time.Time { return nowOn(s.Clock) }

// usable says a grant may still be sent now in the term epoch.
func (g standbyGrant) usable(now time.Time, epoch string) bool {
	return g.epoch == epoch && now.Before(g.useBy)
}

// Acquire asks Quota; when no authority answers, it admits the call from a
// standby grant that fits it, if one is held.
func (s *Standby) Acquire(ctx context.Context, req AcquireRequest) (AcquireResponse, error) {
	s.note(req)
	resp, err := s.Quota.Acquire(ctx, req)
	var notServed *NotServedError
	if err == nil || errors.As(err, &notServed) || ctx.Err() != nil {
		return resp, err
	}
	if g, ok := s.take(req); ok {
		s.used.Add(1)
		return AcquireResponse{Grant: g.grant, EndBy: g.endBy}, nil
	}
	return resp, err
}

// note counts a call in its set's demand.
func (s *Standby) note(req AcquireRequest) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.sets == nil {
		s.sets = map[spareKey]*standbySet{}
	}
	key := spareKey{req.Provider, req.Namespace, req.Model}
	set := s.sets[key]
	if set == nil {
		set = &standbySet{calls: -1}
		s.sets[key] = set
	}
	set.lastCall = s.now()
	set.seen = cost{max(set.seen.inputChars, req.InputChars), max(set.seen.maxTokens, req.MaxTokens)}
}

// cost is a call's input length and output cap.
type cost struct {
	inputChars int
	maxTokens  int64
}

// take takes out a grant of the current term, still to be sent, lent for
// a call of req's cost or more.
func (s *Standby) take(req AcquireRequest) (standbyGrant, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	set := s.sets[spareKey{req.Provider, req.Namespace, req.Model}]
	if set == nil {
		return standbyGrant{}, false
	}
	now, epoch := s.now(), s.Lender.Epoch()
	for i, g := range set.grants {
		if g.usable(now, epoch) && g.inputChars >= req.InputChars && g.maxTokens >= req.MaxTokens {
			set.grants = append(set.grants[:i], set.grants[i+1:]...)
			return g, true
		}
	}
	return standbyGrant{}, false
}

// Serving reports whether a grant of the current term is held to be sent:
// the gateway can serve some calls while no authority answers.
func (s *Standby) Serving() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	now, epoch := s.now(), s.Lender.Epoch()
	for _, set := range s.sets {
		for _, g := range set.grants {
			if g.usable(now, epoch) {
				return true
			}
		}
	}
	return false
}

// StandbyStats counts standby grants used by calls and given back unsent,
// and those held now.
type StandbyStats struct{ Used, Returned, Held int64 }

// Stats returns the standby grants used, given back and held.
func (s *Standby) Stats() StandbyStats {
	s.mu.Lock()
	held := 0
	for _, set := range s.sets {
		held += len(set.grants)
	}
	s.mu.Unlock()
	return StandbyStats{Used: s.used.Load(), Returned: s.returned.Load(), Held: int64(held)}
}

// Run tops up every Every until ctx ends, then gives back what it holds.
func (s *Standby) Run(ctx context.Context) {
	every := s.Every
	if every <= 0 {
		every = DefaultStandbyEvery
	}
	ticker := time.NewTicker(every)
	defer ticker.Stop()
	for {
		select {
		case <-ctx.Done():
			s.giveBack(s.drain(func(spareKey, *standbySet) bool { return true }))
			return
		case <-ticker.C:
			s.TopUp(ctx)
		}
	}
}

// TopUp asks for what each set lacks, gives back what fresh grants
// replaced, drops grants of a past term, and forgets the sets idle for
// idleSet.
func (s *Standby) TopUp(ctx context.Context) {
	now := s.now()
	s.giveBack(s.drain(func(_ spareKey, set *standbySet) bool { return now.Sub(set.lastCall) >= idleSet }))
	s.expire(now)
	for key, ask := range s.wants(now) {
		sent := s.now()
		resp, err := s.Lender.Lend(ctx, ask)
		if err != nil {
			s.Log.V(1).Info("Asking for standby grants", "provider", key.provider, "error", err.Error())
			continue // what is held stays: it is what serves while no authority answers
		}
		s.lent(key, ask, resp, sent)
	}
}

// wants lists the requests for the sets short of fresh grants: those past
// half their time to be sent do not count, and are given back once fresh
// ones came.
func (s *Standby) wants(now time.Time) map[spareKey]AcquireRequest {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := map[spareKey]AcquireRequest{}
	for key, set := range s.sets {
		if set.calls == 0 && now.Sub(set.asked) < recheckNoStandby {
			continue
		}
		fresh := 0
		for _, g := range set.grants {
			if now.Before(g.staleAt) {
				fresh++
			}
		}
		want := MaxStandby
		if set.calls >= 0 {
			want = set.calls
		}
		if fresh >= want {
			continue
		}
		c := set.seen
		if c.maxTokens == 0 {
			c = set.ask
		}
		out[key] = AcquireRequest{Provider: key.provider, Namespace: key.namespace, Model: key.model,
			InputChars: c.inputChars, MaxTokens: c.maxTokens, Standby: want - fresh}
	}
	return out
}

// lent keeps the grants an answer lent, and gives back the stale ones they
// replace.
func (s *Standby) lent(key spareKey, ask AcquireRequest, resp StandbyResponse, sent time.Time) {
	use, end := time.Duration(resp.UseMillis)*time.Millisecond, time.Duration(resp.EndMillis)*time.Millisecond
	s.mu.Lock()
	set := s.sets[key]
	if set == nil { // forgotten meanwhile: nothing to hold them for
		s.mu.Unlock()
		s.giveBack(standbyGrantsOf(resp.Grants))
		return
	}
	set.calls, set.asked = resp.Calls, sent
	set.ask, set.seen = cost{ask.InputChars, ask.MaxTokens}, cost{}
	var stale []standbyGrant
	if len(resp.Grants) > 0 {
		now, kept := s.now(), set.grants[:0]
		for _, g := range set.grants {
			if now.Before(g.staleAt) {
				kept = append(kept, g)
			} else {
				stale = append(stale, g)
			}
		}
		set.grants = kept
	}
	for _, g := range resp.Grants {
		set.grants = append(set.grants, standbyGrant{grant: g.Grant, inputChars: ask.InputChars, maxTokens: ask.MaxTokens,
			epoch: resp.Epoch, useBy: sent.Add(use), staleAt: sent.Add(use / 2), endBy: sent.Add(end)})
	}
	s.mu.Unlock()
	s.giveBack(stale)
}

// expire gives back the grants past their time to be sent, and drops
// those of a past term unsent: the leader that lent them is gone, and the
// one that answers now knows nothing of them.
func (s *Standby) expire(now time.Time) {
	epoch := s.Lender.Epoch()
	var late []standbyGrant
	s.mu.Lock()
	for _, set := range s.sets {
		kept := set.grants[:0]
		for _, g := range set.grants {
			switch {
			case g.epoch != epoch:
			case !now.Before(g.useBy):
				late = append(late, g)
			default:
				kept = append(kept, g)
			}
		}
		set.grants = kept
	}
	s.mu.Unlock()
	s.giveBack(late)
}

// drain takes out the sets pick picks, and returns their grants.
func (s *Standby) drain(pick func(spareKey, *standbySet) bool) []standbyGrant {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []standbyGrant
	for key, set := range s.sets {
		if pick(key, set) {
			out = append(out, set.grants...)
			delete(s.sets, key)
		}
	}
	return out
}

// giveBack returns grants unsent.
func (s *Standby) giveBack(grants []standbyGrant) {
	for _, g := range grants {
		s.Return(ReleaseRequest{Grant: g.grant})
	}
	s.returned.Add(int64(len(grants)))
}

func standbyGrantsOf(spares []Spare) []standbyGrant {
	out := make([]standbyGrant, len(spares))
	for i, sp := range spares {
		out[i] = standbyGrant{grant: sp.Grant}
	}
	return out
}

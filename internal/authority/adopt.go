package authority

import (
	"cmp"
	"context"
	"encoding/json"
	"maps"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/llmquota/llmquota/internal/dispatch"
)

// A leader that crashed leaves gateway calls in flight that it granted.
// The quota state it persisted carries their windows, tokens and budgets
// over to the next leader, but not the calls themselves: the next leader
// would count its concurrency slots (the provider's, a namespace's, a
// model's, an Ollama pod's) from zero while those calls still run. So a
// new leader adopts them before it admits anything: every gateway replica
// checks in with the calls it has in flight (CheckinRequest), each is
// counted in its slots as a grant of this leader (dispatch.Dispatcher.
// Adopt), and only once every gateway pod has checked in, or AdoptWithin
// passed (by then every call of the previous leader has ended: the
// gateway's upstream timeout is shorter), are the dispatchers let go
// (Ready).

// DefaultAdoptWithin bounds how long a new leader waits for a gateway pod
// that does not check in: the gateway's upstream timeout (2 minutes), after
// which no call the previous leader granted can still be in flight.
const DefaultAdoptWithin = 2 * time.Minute

// adoptRecheck is how often the gateway pods are listed again while a
// new leader waits for them: a pod deleted meanwhile is no longer waited
// for.
const adoptRecheck = time.Second

// maxForgotten bounds the releases of unknown grants kept while adopting.
const maxForgotten = 1 << 16

// Ready is closed once the leader knows the calls in flight that the
// previous leader granted, or stopped waiting for them: until then its
// dispatchers admit nothing (dispatch.Registry.HoldUntil), and acquires
// are answered 503, which a gateway waits through as through an election.
func (s *Server) Ready() <-chan struct{} {
	s.readyOnce.Do(func() { s.ready = make(chan struct{}) })
	return s.ready
}

func (s *Server) open() {
	s.Ready()
	s.opened.Do(func() {
		close(s.ready)
		s.observer().Waiting(false)
		s.mu.Lock()
		s.forgotten = nil
		s.mu.Unlock()
	})
}

// begin starts a term: its epoch, and the wait for the gateways' calls in
// flight. Call it before serving.
func (s *Server) begin(ctx context.Context) {
	s.term()
	go s.awaitGateways(ctx)
}

// term is this leader's term as EpochHeader's value, made once, whether
// Start or a request comes first.
func (s *Server) term() []string {
	s.termOnce.Do(func() { s.epoch, s.checkedIn = []string{newID()}, make(chan struct{}, 1) })
	return s.epoch
}

// isReady says the leader admits calls: it waits for no gateway, or Ready
// is closed.
func (s *Server) isReady() bool {
	if s.Gateways == nil {
		return true
	}
	select {
	case <-s.Ready():
		return true
	default:
		return false
	}
}

func (s *Server) adoptWithin() time.Duration {
	if s.AdoptWithin <= 0 {
		return DefaultAdoptWithin
	}
	return s.AdoptWithin
}

// awaitGateways lets the dispatchers go once every gateway pod checked in,
// or AdoptWithin passed.
func (s *Server) awaitGateways(ctx context.Context) {
	if s.Gateways == nil {
		s.open()
		return
	}
	s.observer().Waiting(true)
	deadline := s.clock().Now().Add(s.adoptWithin())
	var missing []string
	told := false // the pods waited for were logged
	for {
		pods, err := s.Gateways(ctx)
		switch {
		case err != nil:
			s.Log.Error(err, "Listing the gateway pods that may have calls in flight; listing again", "in", adoptRecheck)
		default:
			if missing = s.notCheckedIn(pods); len(missing) == 0 {
				s.Log.Info("Every gateway pod told its calls in flight; admitting", "pods", len(pods))
				s.open()
				return
			}
			if !told {
				s.Log.Info("Admitting nothing until the gateway pods tell their calls in flight", "pods", missing, "atMost", s.adoptWithin())
				told = true
			}
		}
		if !s.clock().Now().Before(deadline) {
			s.Log.Info("Gateway pods did not tell their calls in flight within --gateway-checkin-timeout; admitting",
				"pods", missing, "waited", s.adoptWithin())
			s.open()
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-s.clock().After(adoptRecheck):
		case <-s.checkedIn:
		}
	}
}

// notCheckedIn returns the pods that have not checked in.
func (s *Server) notCheckedIn(pods []string) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.DeleteFunc(slices.Clone(pods), func(p string) bool { return s.checked[p] })
}

// checkin counts a gateway's calls in flight as this leader's grants, each
// once: a grant this leader gave or adopted already, or whose release came
// first, is left alone.
func (s *Server) checkin(w http.ResponseWriter, r *http.Request) {
	var req CheckinRequest
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxBody)).Decode(&req); err != nil {
		writeJSON(w, http.StatusBadRequest, errorBody{Error: "malformed check-in: " + err.Error()})
		return
	}
	now, holder := s.clock().Now(), r.Header.Get(HolderHeader)
	adopted := 0
	s.mu.Lock()
	if s.grants == nil {
		s.grants = map[string]held{}
	}
	for _, og := range req.Grants {
		_, known := s.grants[og.Grant]
		_, released := s.forgotten[og.Grant]
		_, orphaned := s.orphans[og.Provider][og.Grant]
		if known || released || orphaned {
			continue
		}
		// Looked up under s.mu, as AdoptInto takes the orphans: a call is
		// adopted now, or by the dispatcher when it starts.
		d := cmp.Or(s.Lookup(og.Provider), s.started[og.Provider])
		if d == nil {
			s.orphan(og, holder, now.Add(s.lease()))
			continue
		}
		s.grants[og.Grant] = held{grant: d.Adopt(og.Namespace, og.Model, og.Endpoint), holder: holder, expires: now.Add(s.lease())}
		adopted++
	}
	if s.checked == nil {
		s.checked = map[string]bool{}
	}
	s.checked[req.Pod] = true
	gone := s.predecessors(req.Pod, holder)
	s.mu.Unlock()
	for _, g := range gone {
		g.Expire()
	}
	if len(gone) > 0 {
		s.Log.Info("Reclaimed the grants of a gateway process that restarted", "gateway", req.Pod, "grants", len(gone))
		s.observer().Reclaimed(ReclaimedRestart, len(gone))
	}
	select {
	case s.checkedIn <- struct{}{}:
	default:
	}
	if adopted > 0 {
		s.Log.Info("Counting calls in flight that the previous leader granted", "gateway", req.Pod, "calls", adopted)
		s.observer().Adopted(adopted)
	}
	w.WriteHeader(http.StatusNoContent)
}

// forget notes the release of a grant this leader does not know while it
// adopts: the gateway's check-in may still name it (called under s.mu).
func (s *Server) forget(grant string) {
	if s.isReady() || len(s.forgotten) >= maxForgotten {
		return
	}
	if s.forgotten == nil {
		s.forgotten = map[string]struct{}{}
	}
	s.forgotten[grant] = struct{}{}
}

// orphan is a call in flight told for a provider whose dispatcher has not
// started yet on this leader: the new leader's dispatchers start as their
// providers are reconciled, and a gateway may tell its calls first.
type orphan struct {
	OpenGrant
	holder  string
	expires time.Time
}

// orphan keeps a call told for a provider not served yet (called under s.mu).
func (s *Server) orphan(og OpenGrant, holder string, expires time.Time) {
	if s.orphans == nil {
		s.orphans = map[string]map[string]orphan{}
	}
	if s.orphans[og.Provider] == nil {
		s.orphans[og.Provider] = map[string]orphan{}
	}
	s.orphans[og.Provider][og.Grant] = orphan{OpenGrant: og, holder: holder, expires: expires}
}

// AdoptInto counts in a provider's dispatcher, before it is served, the
// calls in flight gateways told for the provider before it started
// (dispatch.Registry.BeforeRun): none of its slots is given twice.
func (s *Server) AdoptInto(d *dispatch.Dispatcher) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.started == nil {
		s.started = map[string]*dispatch.Dispatcher{}
	}
	s.started[d.Name()] = d // check-ins from here on find it, registered or not
	if s.grants == nil {
		s.grants = map[string]held{}
	}
	for id, o := range s.orphans[d.Name()] {
		s.grants[id] = held{grant: d.Adopt(o.Namespace, o.Model, o.Endpoint), holder: o.holder, expires: o.expires}
	}
	if n := len(s.orphans[d.Name()]); n > 0 {
		s.Log.Info("Counting calls in flight that the previous leader granted", "provider", d.Name(), "calls", n)
		s.observer().Adopted(n)
	}
	delete(s.orphans, d.Name())
}

// dropOrphan forgets a call told for a provider not served yet, whose
// release came (called under s.mu); false when it is none.
func (s *Server) dropOrphan(grant string) bool {
	for provider, calls := range s.orphans {
		if _, ok := calls[grant]; ok {
			delete(calls, grant)
			if len(calls) == 0 {
				delete(s.orphans, provider)
			}
			return true
		}
	}
	return false
}

// dropExpiredOrphans forgets the calls told for a provider that never
// started within their lease (called under s.mu).
func (s *Server) dropExpiredOrphans(now time.Time) {
	for provider, calls := range s.orphans {
		for id, o := range calls {
			if !now.Before(o.expires) {
				delete(calls, id)
			}
		}
		if len(calls) == 0 {
			delete(s.orphans, provider)
		}
	}
}

// predecessors takes out the grants held by an earlier process of the
// gateway pod whose process holder now checks in: a restarted gateway's
// calls ended with the process, so their slots come back at once rather
// than at the end of their lease (called under s.mu). A gateway outside
// a pod (no namespace: several may share a host's name) reclaims nothing.
func (s *Server) predecessors(pod, holder string) []*dispatch.Grant {
	if holder == "" || strings.HasPrefix(pod, "/") || !strings.HasPrefix(holder, pod+"/") {
		return nil
	}
	earlier := func(h string) bool { return h != holder && strings.HasPrefix(h, pod+"/") }
	var gone []*dispatch.Grant
	for id, h := range s.grants {
		if earlier(h.holder) {
			gone = append(gone, h.grant)
			delete(s.grants, id)
		}
	}
	for _, calls := range s.orphans { // told for a provider not started yet: nothing to end, only to forget
		maps.DeleteFunc(calls, func(_ string, o orphan) bool { return earlier(o.holder) })
	}
	return gone
}

// Observer sees what the authority does with grants beyond acquire and
// release (metrics.AuthorityObserver).
type Observer interface {
	// Reclaimed counts n grants ended without their release, for reason
	// (ReclaimedLease, ReclaimedRestart).
	Reclaimed(reason string, n int)
	// Adopted counts n calls in flight a previous leader granted.
	Adopted(n int)
	// Waiting says whether the leader admits nothing, waiting for the
	// gateways to tell their calls in flight.
	Waiting(waiting bool)
}

// Why grants are reclaimed (Observer.Reclaimed).
const (
	ReclaimedLease   = "lease"
	ReclaimedRestart = "restart"
)

// observer is Observe, or one that sees nothing.
func (s *Server) observer() Observer {
	if s.Observe == nil {
		return unobserved{}
	}
	return s.Observe
}

type unobserved struct{}

func (unobserved) Reclaimed(string, int) {}
func (unobserved) Adopted(int)           {}
func (unobserved) Waiting(bool)          {}

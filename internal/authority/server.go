package authority

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/go-logr/logr"
	"k8s.io/utils/clock"

	"github.com/llmquota/llmquota/internal/dispatch"
	"github.com/llmquota/llmquota/internal/provider"
)

// DefaultLease is how long a grant is held before it is reclaimed: longer
// than the gateway's longest call (its upstream timeout, 2 minutes), so
// only a gateway that died loses its grants.
const DefaultLease = 3 * time.Minute

// DefaultWriteDeadline is how long the authority waits for a gateway to say
// that a granted call was written (ReportWrite) before it counts the call
// as written: a gateway that died after its grant holds an
// interval-limited provider at most this long (plus the second between
// reclaims), not its whole lease.
const DefaultWriteDeadline = 5 * time.Second

// maxBody bounds a request to the service.
const maxBody = 1 << 20

// Server serves quota to gateway replicas from the leader's dispatchers.
// Run it on the leader only (it is a leader-elected Runnable).
type Server struct {
	// Addr is the address Start listens on.
	Addr string
	// Listener, when set, is served instead of listening on Addr.
	Listener net.Listener
	// Lookup finds a provider's running dispatcher, nil if none runs.
	Lookup func(provider string) *dispatch.Dispatcher
	// Authorize decides whether a bearer token belongs to a gateway; nil
	// accepts every caller (tests only).
	Authorize func(ctx context.Context, token string) error
	// Lease is how long a grant is held; DefaultLease when zero.
	Lease time.Duration
	// WriteDeadline is how long a grant that reports its write may take to
	// say so; DefaultWriteDeadline when zero.
	WriteDeadline time.Duration
	// Clock is the time source; the real clock when nil.
	Clock clock.Clock
	Log   logr.Logger
	// Gateways lists the names of the gateway pods that may have calls in
	// flight a previous leader granted: the leader admits nothing until
	// each has checked in (Ready), or AdoptWithin passed. Nil waits for
	// none (a gateway out of the cluster, tests).
	Gateways func(ctx context.Context) ([]string, error)
	// AdoptWithin bounds the wait for gateway pods that do not check in;
	// DefaultAdoptWithin when zero.
	AdoptWithin time.Duration
	// Observe sees grants reclaimed, calls adopted and the wait for the
	// gateways (metrics); nil sees nothing.
	Observe Observer

	// epoch names this leader's term on every answer (EpochHeader), made
	// once (term).
	termOnce sync.Once
	epoch    []string // the header's value, shared by every answer: net/http only reads it
	// ready is closed once the calls in flight are known (Ready, open);
	// checkedIn wakes the wait for the gateways at each check-in.
	readyOnce sync.Once
	ready     chan struct{}
	opened    sync.Once
	checkedIn chan struct{}

	mu     sync.Mutex
	grants map[string]held
	// checked are the gateway pods that told their calls in flight.
	checked map[string]bool
	// forgotten are releases of grants unknown here, while adopting.
	forgotten map[string]struct{}
	// orphans are calls in flight told for a provider whose dispatcher has
	// not started on this leader yet, by provider and grant; started
	// are the dispatchers AdoptInto saw start (adopt.go).
	orphans map[string]map[string]orphan
	started map[string]*dispatch.Dispatcher
}

type held struct {
	grant *dispatch.Grant
	// holder is the gateway process the grant was given to (HolderHeader).
	holder  string
	expires time.Time
	// writeBy is when a write not yet reported counts as done; zero when
	// none is awaited.
	writeBy time.Time
}

func (s *Server) clock() clock.Clock {
	if s.Clock == nil {
		return clock.RealClock{}
	}
	return s.Clock
}

func (s *Server) lease() time.Duration {
	if s.Lease <= 0 {
		return DefaultLease
	}
	return s.Lease
}

// NeedLeaderElection says the service runs on the leader only: its
// dispatchers are the quota.
func (s *Server) NeedLeaderElection() bool { return true }

// Start serves on Addr (or Listener) until ctx ends, reclaiming expired
// grants every second. It begins a term: nothing is admitted until the
// gateway pods told the calls in flight (Ready). Grants still held when it
// stops end with their dispatchers.
func (s *Server) Start(ctx context.Context) error {
	ln := s.Listener
	if ln == nil {
		var err error
		if ln, err = net.Listen("tcp", s.Addr); err != nil {
			return err
		}
	}
	s.begin(ctx)
	srv := &http.Server{Handler: s, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}()
	go s.reclaimEvery(ctx, time.Second)
	s.Log.Info("Serving quota to gateways", "address", ln.Addr().String())
	if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

func (s *Server) reclaimEvery(ctx context.Context, every time.Duration) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-s.clock().After(every):
			if n := s.Reclaim(); n > 0 {
				s.Log.Info("Reclaimed grants whose gateway did not report", "grants", n)
			}
		}
	}
}

// Reclaim ends every grant whose lease passed and returns how many. A
// grant whose write was not reported by its deadline counts as written.
func (s *Server) Reclaim() int {
	now := s.clock().Now()
	var expired, unreported []*dispatch.Grant
	s.mu.Lock()
	s.dropExpiredOrphans(now)
	for id, h := range s.grants {
		switch {
		case !now.Before(h.expires):
			expired = append(expired, h.grant)
			delete(s.grants, id)
		case !h.writeBy.IsZero() && !now.Before(h.writeBy):
			unreported = append(unreported, h.grant)
			h.writeBy = time.Time{}
			s.grants[id] = h
		}
	}
	s.mu.Unlock()
	for _, g := range unreported {
		g.Wrote()
	}
	for _, g := range expired {
		g.Expire()
	}
	if len(expired) > 0 {
		s.observer().Reclaimed(ReclaimedLease, len(expired))
	}
	return len(expired)
}

func (s *Server) writeDeadline() time.Duration {
	if s.WriteDeadline <= 0 {
		return DefaultWriteDeadline
	}
	return s.WriteDeadline
}

// Held returns how many grants are out.
func (s *Server) Held() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.grants)
}

func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		writeJSON(w, http.StatusMethodNotAllowed, errorBody{Error: "POST only"})
		return
	}
	if s.Authorize != nil {
		if err := s.Authorize(r.Context(), bearer(r)); err != nil {
			writeJSON(w, http.StatusUnauthorized, errorBody{Error: err.Error()})
			return
		}
	}
	w.Header()[EpochHeader] = s.term()
	switch r.URL.Path {
	case AcquirePath:
		s.acquire(w, r)
	case CheckinPath:
		s.checkin(w, r)
	case StandbyPath:
		s.standby(w, r)
	case ReleasePath:
		s.release(w, r)
	case WrotePath:
		s.wrote(w, r)
	case PingPath:
		w.WriteHeader(http.StatusNoContent)
	default:
		writeJSON(w, http.StatusNotFound, errorBody{Error: "no such path"})
	}
}

// asked reads an acquire (or standby) request and finds its provider's
// dispatcher; ok is false when it answered the request already.
func (s *Server) asked(w http.ResponseWriter, r *http.Request) (req AcquireRequest, d *dispatch.Dispatcher, ok bool) {
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxBody)).Decode(&req); err != nil {
		writeJSON(w, http.StatusBadRequest, errorBody{Error: "malformed acquire request: " + err.Error()})
		return req, nil, false
	}
	if req.MaxTokens <= 0 {
		writeJSON(w, http.StatusBadRequest, errorBody{Error: "maxTokens must be positive: it bounds the reservation"})
		return req, nil, false
	}
	if !s.isReady() {
		writeJSON(w, http.StatusServiceUnavailable, errorBody{Error: "the new leader is learning the calls in flight that the previous one granted"})
		return req, nil, false
	}
	if d = s.Lookup(req.Provider); d == nil {
		writeJSON(w, http.StatusNotFound, errorBody{Error: "provider " + req.Provider + " is not served"})
		return req, nil, false
	}
	return req, d, true
}

func (s *Server) acquire(w http.ResponseWriter, r *http.Request) {
	req, d, ok := s.asked(w, r)
	if !ok {
		return
	}
	g, dec, err := d.Acquire(r.Context(), dispatch.Ask{Namespace: req.Namespace, Model: req.Model, InputChars: req.InputChars,
		MaxTokens: req.MaxTokens, MaxWait: time.Duration(req.MaxWaitMillis) * time.Millisecond, Prefetch: min(req.Prefetch, MaxPrefetch)})
	switch {
	case err != nil: // the gateway gave up: nothing is held
		return
	case g == nil:
		writeJSON(w, http.StatusTooManyRequests, AcquireResponse{Reason: dec.Reason.String(), Window: dec.Window, RetryAt: dec.RetryAt})
		return
	}
	holder := r.Header.Get(HolderHeader)
	resp := AcquireResponse{Grant: s.hold(g, holder), LeaseMillis: s.lease().Milliseconds(), Endpoint: g.Endpoint().Address,
		ReportWrite: g.ReportsWrite(), UseMillis: d.SpareUse().Milliseconds()}
	for _, spare := range g.Spares() {
		resp.Spares = append(resp.Spares, Spare{Grant: s.hold(spare, holder), Endpoint: spare.Endpoint().Address})
	}
	writeJSON(w, http.StatusOK, resp)
}

// hold keeps a grant until its release, or its lease ends, and returns its id.
func (s *Server) hold(g *dispatch.Grant, holder string) string {
	return s.holdFor(g, holder, s.lease())
}

// holdFor keeps a grant until its release, or lease from now.
func (s *Server) holdFor(g *dispatch.Grant, holder string, lease time.Duration) string {
	id, now := newID(), s.clock().Now()
	h := held{grant: g, holder: holder, expires: now.Add(lease)}
	if g.ReportsWrite() {
		h.writeBy = now.Add(s.writeDeadline())
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.grants == nil {
		s.grants = map[string]held{}
	}
	s.grants[id] = h
	return id
}

// wrote takes a gateway's word that a grant's request was written: the
// next call of an interval-limited provider counts from now.
func (s *Server) wrote(w http.ResponseWriter, r *http.Request) {
	var req WroteRequest
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxBody)).Decode(&req); err != nil {
		writeJSON(w, http.StatusBadRequest, errorBody{Error: "malformed wrote request: " + err.Error()})
		return
	}
	s.mu.Lock()
	h, ok := s.grants[req.Grant]
	if ok {
		h.writeBy = time.Time{}
		s.grants[req.Grant] = h
	}
	s.mu.Unlock()
	if ok {
		h.grant.Wrote()
	}
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) release(w http.ResponseWriter, r *http.Request) {
	var batch ReleaseBatch
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxBody)).Decode(&batch); err != nil {
		writeJSON(w, http.StatusBadRequest, errorBody{Error: "malformed release request: " + err.Error()})
		return
	}
	for _, req := range batch.Releases {
		s.end(req)
	}
	w.WriteHeader(http.StatusNoContent)
}

// end ends one grant as its release says. A grant released already, or
// reclaimed, is left alone: releases are safe to repeat.
func (s *Server) end(req ReleaseRequest) {
	s.mu.Lock()
	h, ok := s.grants[req.Grant]
	delete(s.grants, req.Grant)
	if !ok && !s.dropOrphan(req.Grant) {
		s.forget(req.Grant)
	}
	s.mu.Unlock()
	if !ok {
		return
	}
	switch {
	case !req.Sent:
		h.grant.Cancel()
	case req.Class == "":
		rl := provider.RateLimit{RequestsRemaining: -1, TokensRemaining: -1}
		if !req.RetryAt.IsZero() { // the answer said the provider's requests are spent until then
			rl.RequestsRemaining, rl.RequestsReset = 0, req.RetryAt
		}
		h.grant.Done(&provider.Response{InputTokens: req.InputTokens, OutputTokens: req.OutputTokens, RateLimit: rl}, nil)
	default:
		h.grant.Done(nil, &provider.Error{Class: provider.Class(req.Class), Message: req.Message, RetryAt: req.RetryAt})
	}
}

func newID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

func bearer(r *http.Request) string {
	if token, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer "); ok {
		return token
	}
	return ""
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

package authority

import (
	"context"
	"errors"
	"fmt"
	"net/http/httptest"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr"
	clocktesting "k8s.io/utils/clock/testing"

	"github.com/llmquota/llmquota/internal/dispatch"
	"github.com/llmquota/llmquota/internal/ratewindow"
)

// fakeLender lends what its provider lends (calls), each grant named in
// order, in the term epoch; down makes it fail as a crashed leader does.
type fakeLender struct {
	mu    sync.Mutex
	calls int
	epoch string
	down  bool
	asks  []AcquireRequest
	n     int
}

func (f *fakeLender) Lend(_ context.Context, req AcquireRequest) (StandbyResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.down {
		return StandbyResponse{}, errors.New("connection refused")
	}
	f.asks = append(f.asks, req)
	resp := StandbyResponse{Calls: f.calls, UseMillis: 59_000, EndMillis: 120_000, Epoch: f.epoch}
	for range min(req.Standby, f.calls) {
		f.n++
		resp.Grants = append(resp.Grants, Spare{Grant: fmt.Sprintf("s%d", f.n)})
	}
	return resp, nil
}

func (f *fakeLender) Epoch() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.epoch
}

func (f *fakeLender) set(fn func(*fakeLender)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	fn(f)
}

// downQuota is an authority that does not answer (or, with notServed,
// answers that it does not serve the provider).
type downQuota struct{ notServed bool }

func (d downQuota) Acquire(context.Context, AcquireRequest) (AcquireResponse, error) {
	if d.notServed {
		return AcquireResponse{}, &NotServedError{Message: "not served"}
	}
	return AcquireResponse{}, errors.New("connection refused")
}

// standbyBed is a gateway's Standby on a fake clock, in front of an
// authority that does not answer, lent 2 grants a time by the term
// "term-1"; returned lists the grants it gave back.
func standbyBed() (s *Standby, lender *fakeLender, fc *clocktesting.FakeClock, returned *[]string) {
	fc = clocktesting.NewFakeClock(time.Date(2026, 12, 8, 9, 0, 0, 0, time.UTC))
	lender = &fakeLender{calls: 2, epoch: "term-1"}
	returned = new([]string)
	s = &Standby{Quota: downQuota{}, Lender: lender, Clock: fc, Log: logr.Discard(),
		Return: func(r ReleaseRequest) { *returned = append(*returned, r.Grant) }}
	return s, lender, fc, returned
}

// TestStandbyServesWhileNoAuthorityAnswers: a gateway that served a
// namespace's calls holds the provider's standby grants; with no authority
// answering, calls of that cost or less are admitted from them, each with
// the time its call must end by, until they run out. A provider the
// authority says it does not serve gets none (waiting would not help
// either), nor does a call larger than what was lent.
func TestStandbyServesWhileNoAuthorityAnswers(t *testing.T) {
	s, lender, fc, gave := standbyBed()
	t0, ctx := fc.Now(), context.Background()
	req := AcquireRequest{Provider: "p", Namespace: "app", Model: "m", InputChars: 400, MaxTokens: 256}
	if _, err := s.Acquire(ctx, req); err == nil {
		t.Fatal("a call with no standby held and no authority was admitted")
	}
	s.TopUp(ctx)
	if len(lender.asks) != 1 || lender.asks[0].Standby != MaxStandby || lender.asks[0].MaxTokens != 256 || lender.asks[0].InputChars != 400 {
		t.Fatalf("first ask %+v, want the most standby for the call's cost", lender.asks)
	}
	s.TopUp(ctx)
	if len(lender.asks) != 1 {
		t.Fatalf("asked again while holding the provider's 2 fresh grants: %+v", lender.asks)
	}
	if !s.Serving() || s.Stats().Held != 2 {
		t.Fatalf("holding %d, serving %v; want 2 and serving", s.Stats().Held, s.Serving())
	}
	if _, err := s.Acquire(ctx, AcquireRequest{Provider: "p", Namespace: "app", Model: "m", InputChars: 400, MaxTokens: 1024}); err == nil {
		t.Fatal("a call with a larger output cap than lent was admitted from standby")
	}
	for i := range 2 {
		resp, err := s.Acquire(ctx, req)
		if err != nil || resp.Grant == "" || !resp.EndBy.Equal(t0.Add(2*time.Minute)) {
			t.Fatalf("call %d with standby held: %+v %v, want a grant ending by two minutes after the lend", i, resp, err)
		}
	}
	if _, err := s.Acquire(ctx, req); err == nil {
		t.Fatal("a third call was admitted from two standby grants")
	}
	if u := s.Stats().Used; u != 2 || len(*gave) != 0 {
		t.Fatalf("used %d, returned %v; want 2 used, none returned", u, *gave)
	}

	s.TopUp(ctx) // both used: two more
	other := &Standby{Quota: downQuota{notServed: true}, Lender: lender, Clock: fc, Return: func(ReleaseRequest) {}}
	_, _ = other.Acquire(ctx, req) // noted, so the next top-up lends for it
	other.TopUp(ctx)
	if resp, err := other.Acquire(ctx, req); err == nil || resp.Grant != "" {
		t.Fatalf("a provider the authority does not serve was admitted from standby: %+v", resp)
	}
}

// TestStandbyRenewsBeforeItGoesStale: past half their time to be sent,
// grants are replaced by fresh ones and given back (so what the windows
// count for them stays short); while the leader cannot lend, the old ones
// are kept (they are what serves an election), and given back only at
// their end. A set idle for a minute gives everything back.
func TestStandbyRenewsBeforeItGoesStale(t *testing.T) {
	s, lender, fc, gave := standbyBed()
	ctx := context.Background()
	req := AcquireRequest{Provider: "p", Namespace: "app", MaxTokens: 64}
	s.note(req)
	s.TopUp(ctx) // s1 s2
	fc.Step(30 * time.Second)
	s.note(req)
	s.TopUp(ctx) // stale: s3 s4 come, s1 s2 go back
	if !slices.Equal(*gave, []string{"s1", "s2"}) || s.Stats().Held != 2 {
		t.Fatalf("after renewing: returned %v, holding %d; want s1 s2 back and 2 held", *gave, s.Stats().Held)
	}
	lender.set(func(f *fakeLender) { f.down = true })
	fc.Step(30 * time.Second) // s3 s4 stale, no fresh ones to replace them
	s.note(req)
	s.TopUp(ctx)
	if len(*gave) != 2 || !s.Serving() {
		t.Fatalf("stale grants given back with no fresh ones (returned %v, serving %v)", *gave, s.Serving())
	}
	fc.Step(30 * time.Second) // past their time to be sent
	s.TopUp(ctx)
	if !slices.Equal(*gave, []string{"s1", "s2", "s3", "s4"}) || s.Serving() {
		t.Fatalf("grants past their time: returned %v, serving %v; want all back, none serving", *gave, s.Serving())
	}
	lender.set(func(f *fakeLender) { f.down = false })
	s.note(req)
	s.TopUp(ctx) // s5 s6
	fc.Step(idleSet)
	s.TopUp(ctx)
	if !slices.Equal((*gave)[4:], []string{"s5", "s6"}) || s.Stats().Held != 0 {
		t.Fatalf("an idle set kept its grants: returned %v", *gave)
	}
}

// TestStandbyOfAPastTermIsNotUsed: once another leader answers (a new
// term), grants the previous one lent are neither used nor given back: the
// new leader counts them in its windows from the persisted quota, but it
// counts a call in flight only from a gateway's check-in, which a call
// sent after it would miss.
func TestStandbyOfAPastTermIsNotUsed(t *testing.T) {
	s, lender, _, gave := standbyBed()
	ctx := context.Background()
	req := AcquireRequest{Provider: "p", Namespace: "app", MaxTokens: 64}
	s.note(req)
	s.TopUp(ctx)
	lender.set(func(f *fakeLender) { f.epoch, f.down = "term-2", true })
	if resp, err := s.Acquire(ctx, req); err == nil {
		t.Fatalf("a grant of the past term was used: %+v", resp)
	}
	if s.Serving() {
		t.Fatal("serving from a past term's grants")
	}
	s.TopUp(ctx)
	if s.Stats().Held != 0 || len(*gave) != 0 {
		t.Fatalf("a past term's grants: %d held, %v returned; want dropped unsent", s.Stats().Held, *gave)
	}
}

// TestStandbyLentOverHTTP: the leader lends a provider's standby grants
// over HTTP, each counted in its window and holding a concurrency slot
// while lent, and held past the ordinary lease by the time it may wait to
// be sent; once the authority is gone, the gateway admits calls from them.
func TestStandbyLentOverHTTP(t *testing.T) {
	fc := clocktesting.NewFakeClock(time.Date(2026, 12, 8, 9, 0, 0, 0, time.UTC))
	d, err := dispatch.New(dispatch.Config{Name: "p", Client: noCalls{}, StandbyCalls: 3, Limits: ratewindow.Config{
		Windows: []ratewindow.Window{{Name: "minute", Limit: 10, Period: time.Minute}}, MaxConcurrency: 4}}, nil, fc, logr.Discard(), nil)
	if err != nil {
		t.Fatal(err)
	}
	s := &Server{Clock: fc, Lease: time.Minute, Log: logr.Discard(), Lookup: func(string) *dispatch.Dispatcher { return d }}
	srv := httptest.NewServer(s)
	defer srv.Close()
	c := &Client{Resolver: StaticURL(srv.URL), HTTP: srv.Client()}
	standby := &Standby{Quota: c, Lender: c, Clock: fc, Log: logr.Discard(), Return: func(ReleaseRequest) {}}
	ctx := context.Background()
	req := AcquireRequest{Provider: "p", Namespace: "app", InputChars: 40, MaxTokens: 64}
	standby.note(req)
	standby.TopUp(ctx)
	if held := standby.Stats().Held; held != 3 {
		t.Fatalf("holding %d standby grants, want the provider's 3", held)
	}
	if q := d.Quota(); q.InFlight != 3 || q.Windows[0].Used != 3 {
		t.Fatalf("the leader counts %d in flight and %d in the window, want the 3 lent", q.InFlight, q.Windows[0].Used)
	}
	srv.CloseClientConnections()
	srv.Close() // the leader is gone
	fc.Step(30 * time.Second)
	resp, err := standby.Acquire(ctx, req)
	if err != nil || resp.Grant == "" || !resp.EndBy.Equal(fc.Now().Add(-30*time.Second+DefaultAdoptWithin)) {
		t.Fatalf("with no authority: %+v %v, want a standby grant whose call ends within a new leader's wait", resp, err)
	}
	fc.Step(time.Minute + dispatch.StandbyFor - 31*time.Second)
	if n := s.Reclaim(); n != 0 {
		t.Fatalf("reclaimed %d standby grants before their time to be sent and a lease had passed", n)
	}
	fc.Step(2 * time.Second)
	if n := s.Reclaim(); n != 3 {
		t.Fatalf("reclaimed %d standby grants after their time and lease, want 3", n)
	}
}

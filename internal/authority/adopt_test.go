package authority

import (
	"context"
	"maps"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr"
	clocktesting "k8s.io/utils/clock/testing"

	"github.com/llmquota/llmquota/internal/dispatch"
	"github.com/llmquota/llmquota/internal/ratewindow"
)

// sight is what an Observer saw.
type sight struct {
	reclaimed           map[string]int
	adopted             int
	waiting, waitedOnce bool
}

// seen is an Observer that keeps what it saw.
type seen struct {
	mu sync.Mutex
	s  sight
}

func (o *seen) Reclaimed(reason string, n int) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.s.reclaimed == nil {
		o.s.reclaimed = map[string]int{}
	}
	o.s.reclaimed[reason] += n
}

func (o *seen) Adopted(n int) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.s.adopted += n
}

func (o *seen) Waiting(w bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.s.waiting, o.s.waitedOnce = w, o.s.waitedOnce || w
}

func (o *seen) get() sight {
	o.mu.Lock()
	defer o.mu.Unlock()
	got := o.s
	got.reclaimed = maps.Clone(o.s.reclaimed)
	return got
}

// switchURL is a Resolver whose leader the test changes.
type switchURL struct {
	mu  sync.Mutex
	url string
}

func (s *switchURL) URL(context.Context) (string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.url, nil
}

func (*switchURL) Forget() {}

func (s *switchURL) set(url string) {
	s.mu.Lock()
	s.url = url
	s.mu.Unlock()
}

// sentAtOnce is a Releases that posts each release before it returns.
type sentAtOnce struct{ c *Client }

func (r sentAtOnce) Release(req ReleaseRequest) { _ = r.c.Release(context.Background(), req) }
func (r sentAtOnce) Wrote(grant string)         { _ = r.c.Wrote(context.Background(), grant) }

// leader is one manager's term: a dispatcher "p" with two concurrency
// slots and its authority over real HTTP, waiting for the gateway pods
// listed by pods.
type leader struct {
	s   *Server
	d   *dispatch.Dispatcher
	url string
}

func newLeader(t *testing.T, fc *clocktesting.FakeClock, pods func(context.Context) ([]string, error)) *leader {
	t.Helper()
	d, err := dispatch.New(dispatch.Config{Name: "p", Client: noCalls{}, Limits: ratewindow.Config{MaxConcurrency: 2}}, nil, fc, logr.Discard(), nil)
	if err != nil {
		t.Fatal(err)
	}
	s := &Server{Clock: fc, Log: logr.Discard(), Gateways: pods, Lookup: func(string) *dispatch.Dispatcher { return d }, Observe: &seen{}}
	d.HoldUntil(s.Ready())
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	s.begin(ctx)
	srv := httptest.NewServer(s)
	t.Cleanup(srv.Close)
	return &leader{s: s, d: d, url: srv.URL}
}

func isClosed(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// gatewayOf is a gateway replica: its client, ledger and check-ins.
func gatewayOf(resolver Resolver, pod string) (*Ledger, *CheckIns) {
	c := &Client{Resolver: resolver, HTTP: httptest.NewServer(nil).Client()}
	ledger := &Ledger{Quota: c, Releases: sentAtOnce{c}}
	return ledger, &CheckIns{Client: c, Ledger: ledger, Pod: pod, Log: logr.Discard()}
}

// TestNewLeaderCountsTheCallsInFlight: the leader crashes while a
// gateway's two calls run, holding both of the provider's slots. The new
// leader admits nothing until the gateway pod told it those calls, then
// counts them in its slots until they end. Without them it would have
// granted two more calls at once, four in flight against a limit of two.
func TestNewLeaderCountsTheCallsInFlight(t *testing.T) {
	fc := clocktesting.NewFakeClock(time.Date(2026, 12, 7, 9, 0, 0, 0, time.UTC))
	const pod = "llmquota/gateway-0"
	old := newLeader(t, fc, nil)
	resolver := &switchURL{url: old.url}
	ledger, checkIns := gatewayOf(resolver, pod)
	ctx := context.Background()
	ask := AcquireRequest{Provider: "p", Namespace: "app", MaxTokens: 16}
	var calls []string
	for range 2 {
		got, err := ledger.Acquire(ctx, ask)
		if err != nil || got.Grant == "" {
			t.Fatalf("acquire from the first leader: %+v, %v", got, err)
		}
		calls = append(calls, got.Grant)
	}
	if err := checkIns.Once(ctx); err != nil {
		t.Fatal(err)
	}

	// The first leader dies with both calls in flight; another takes over.
	next := newLeader(t, fc, func(context.Context) ([]string, error) { return []string{pod}, nil })
	resolver.set(next.url)
	if got, err := ledger.Acquire(ctx, ask); err == nil {
		t.Fatalf("the new leader answered an acquire before the gateway told it its calls: %+v", got)
	}
	if isClosed(next.s.Ready()) {
		t.Fatal("the new leader let its dispatchers go before the gateway pod checked in")
	}
	if o := next.s.Observe.(*seen).get(); !o.waiting {
		t.Fatal("llmquota_authority_waiting_for_gateways is not 1 while the new leader waits")
	}
	if err := checkIns.Once(ctx); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the new leader ready", func() bool { return isClosed(next.s.Ready()) })
	if next.s.Held() != 2 {
		t.Fatalf("the new leader holds %d grants, want the 2 calls in flight", next.s.Held())
	}
	if o := next.s.Observe.(*seen).get(); o.waiting || o.adopted != 2 {
		t.Fatalf("seen %+v once ready; want no longer waiting and 2 calls adopted", o)
	}
	if got, err := ledger.Acquire(ctx, ask); err != nil || got.Grant != "" || got.Reason != ratewindow.ReasonConcurrency.String() {
		t.Fatalf("acquire while the previous leader's two calls run: %+v, %v; want refused for concurrency", got, err)
	}
	ledger.Release(ReleaseRequest{Grant: calls[0], Sent: true, InputTokens: 3, OutputTokens: 5})
	if got, err := ledger.Acquire(ctx, ask); err != nil || got.Grant == "" {
		t.Fatalf("acquire once one of them ended: %+v, %v; want granted", got, err)
	}
	if err := checkIns.Once(ctx); err != nil || next.s.Held() != 2 {
		t.Fatalf("a check-in with the same leader again: %v, %d grants held; want nothing adopted twice", err, next.s.Held())
	}
}

// TestCallEndedBeforeItsCheckInIsNotAdopted: a call whose release reaches
// the new leader before the check-in that names it (the two race) is not
// counted: it ended.
func TestCallEndedBeforeItsCheckInIsNotAdopted(t *testing.T) {
	fc := clocktesting.NewFakeClock(time.Date(2026, 12, 7, 9, 0, 0, 0, time.UTC))
	const pod = "llmquota/gateway-0"
	next := newLeader(t, fc, func(context.Context) ([]string, error) { return []string{pod}, nil })
	_, checkIns := gatewayOf(StaticURL(next.url), pod)
	ctx := context.Background()
	if err := checkIns.Client.Release(ctx, ReleaseRequest{Grant: "ended", Sent: true}); err != nil {
		t.Fatal(err)
	}
	if _, err := checkIns.Client.CheckIn(ctx, CheckinRequest{Pod: pod, Grants: []OpenGrant{
		{Grant: "ended", Provider: "p", Namespace: "app"}, {Grant: "running", Provider: "p", Namespace: "app"}}}); err != nil {
		t.Fatal(err)
	}
	if n := next.s.Held(); n != 1 {
		t.Fatalf("the new leader holds %d grants; want 1, the call still running", n)
	}
}

// TestNewLeaderStopsWaitingForGatewaysThatCannotTell: a gateway pod
// deleted while the new leader waits is no longer waited for; one that
// never checks in is waited for DefaultAdoptWithin, after which no call of
// the previous leader can still run.
func TestNewLeaderStopsWaitingForGatewaysThatCannotTell(t *testing.T) {
	for _, deleted := range []bool{true, false} {
		fc := clocktesting.NewFakeClock(time.Date(2026, 12, 7, 9, 0, 0, 0, time.UTC))
		var mu sync.Mutex
		pods := []string{"llmquota/gateway-0", "llmquota/gateway-1"}
		next := newLeader(t, fc, func(context.Context) ([]string, error) {
			mu.Lock()
			defer mu.Unlock()
			return pods, nil
		})
		_, checkIns := gatewayOf(StaticURL(next.url), pods[0])
		if err := checkIns.Once(context.Background()); err != nil {
			t.Fatal(err)
		}
		eventually(t, "the leader waiting for gateway-1", fc.HasWaiters)
		if deleted {
			mu.Lock()
			pods = pods[:1]
			mu.Unlock()
		}
		fc.Step(adoptRecheck)
		if deleted {
			eventually(t, "the leader ready once gateway-1 is gone", func() bool { return isClosed(next.s.Ready()) })
			continue
		}
		eventually(t, "the pods listed again", fc.HasWaiters)
		if isClosed(next.s.Ready()) {
			t.Fatal("the leader let go with gateway-1 running and silent")
		}
		fc.Step(DefaultAdoptWithin - adoptRecheck)
		eventually(t, "the leader ready once no call can remain", func() bool { return isClosed(next.s.Ready()) })
	}
}

// TestCallsToldBeforeTheirProviderStartedAreCounted: a new leader starts
// each provider's dispatcher as it reconciles the provider, and a gateway
// may tell its calls in flight before. They are counted when the
// dispatcher starts, before it serves anything; a call whose release came
// in between is not.
func TestCallsToldBeforeTheirProviderStartedAreCounted(t *testing.T) {
	fc := clocktesting.NewFakeClock(time.Date(2026, 12, 7, 9, 0, 0, 0, time.UTC))
	var mu sync.Mutex
	var served *dispatch.Dispatcher
	s := &Server{Clock: fc, Log: logr.Discard(), Lookup: func(string) *dispatch.Dispatcher {
		mu.Lock()
		defer mu.Unlock()
		return served
	}}
	s.begin(context.Background())
	srv := httptest.NewServer(s)
	t.Cleanup(srv.Close)
	c := &Client{Resolver: StaticURL(srv.URL), HTTP: srv.Client()}
	ctx := context.Background()
	if _, err := c.CheckIn(ctx, CheckinRequest{Pod: "llmquota/gateway-0", Grants: []OpenGrant{
		{Grant: "a", Provider: "p", Namespace: "app"}, {Grant: "b", Provider: "p", Namespace: "app"}, {Grant: "ended", Provider: "p", Namespace: "app"}}}); err != nil {
		t.Fatal(err)
	}
	if err := c.Release(ctx, ReleaseRequest{Grant: "ended", Sent: true}); err != nil {
		t.Fatal(err)
	}
	d, err := dispatch.New(dispatch.Config{Name: "p", Client: noCalls{}, Limits: ratewindow.Config{MaxConcurrency: 2}}, nil, fc, logr.Discard(), nil)
	if err != nil {
		t.Fatal(err)
	}
	s.AdoptInto(d) // as dispatch.Registry.BeforeRun has it, before the dispatcher is found
	mu.Lock()
	served = d
	mu.Unlock()
	if s.Held() != 2 {
		t.Fatalf("%d calls counted once the provider started, want the 2 still in flight", s.Held())
	}
	ask := AcquireRequest{Provider: "p", Namespace: "app", MaxTokens: 16}
	if got, err := c.Acquire(ctx, ask); err != nil || got.Grant != "" || got.Reason != ratewindow.ReasonConcurrency.String() {
		t.Fatalf("acquire while the 2 told calls run: %+v, %v; want refused for concurrency", got, err)
	}
	if err := c.Release(ctx, ReleaseRequest{Grant: "a", Sent: true}); err != nil {
		t.Fatal(err)
	}
	if got, err := c.Acquire(ctx, ask); err != nil || got.Grant == "" {
		t.Fatalf("acquire once one of them ended: %+v, %v; want granted", got, err)
	}
}

// TestRestartedGatewaysGrantsComeBack: a gateway whose process restarted
// (kill -9 of its container) checks in anew, and the grants its previous
// process held come back at once, not at the end of their lease: its calls
// died with it. Another pod's grants stay, and so do those of gateways
// outside a pod, whose names several may share.
func TestRestartedGatewaysGrantsComeBack(t *testing.T) {
	fc := clocktesting.NewFakeClock(time.Date(2026, 12, 7, 9, 0, 0, 0, time.UTC))
	d, err := dispatch.New(dispatch.Config{Name: "p", Client: noCalls{}, Limits: ratewindow.Config{MaxConcurrency: 4}}, nil, fc, logr.Discard(), nil)
	if err != nil {
		t.Fatal(err)
	}
	observed := &seen{}
	s := &Server{Clock: fc, Log: logr.Discard(), Lookup: func(string) *dispatch.Dispatcher { return d }, Observe: observed}
	s.begin(context.Background())
	srv := httptest.NewServer(s)
	t.Cleanup(srv.Close)
	ctx := context.Background()
	process := func(pod string) *CheckIns {
		c := &Client{Resolver: StaticURL(srv.URL), HTTP: srv.Client(), Holder: NewHolder(pod)}
		ledger := &Ledger{Quota: c, Releases: sentAtOnce{c}}
		checkIns := &CheckIns{Client: c, Ledger: ledger, Pod: pod, Log: logr.Discard()}
		if err := checkIns.Once(ctx); err != nil {
			t.Fatal(err)
		}
		return checkIns
	}
	take := func(p *CheckIns, n int) {
		t.Helper()
		for range n {
			if got, err := p.Ledger.Acquire(ctx, AcquireRequest{Provider: "p", Namespace: "app", MaxTokens: 16}); err != nil || got.Grant == "" {
				t.Fatalf("acquire: %+v, %v", got, err)
			}
		}
	}
	take(process("llmquota/gateway-0"), 2)
	take(process("llmquota/gateway-1"), 1)
	take(process("/outside"), 1)
	process("llmquota/gateway-0") // restarted
	if n := s.Held(); n != 2 {
		t.Fatalf("%d grants held after gateway-0 restarted; want 2, gateway-1's and the outside gateway's", n)
	}
	if o := observed.get(); o.reclaimed[ReclaimedRestart] != 2 || o.waitedOnce {
		t.Fatalf("seen %+v; want 2 grants reclaimed for a restart, and no wait without gateways to wait for", o)
	}
	process("/outside") // a second gateway of the same host name, outside a pod
	if n := s.Held(); n != 2 {
		t.Fatalf("%d grants held after another outside gateway checked in; want 2", n)
	}
}

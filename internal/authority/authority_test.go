package authority

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/go-logr/logr"
	clocktesting "k8s.io/utils/clock/testing"

	"github.com/llmquota/llmquota/internal/dispatch"
	"github.com/llmquota/llmquota/internal/provider"
	"github.com/llmquota/llmquota/internal/ratewindow"
)

// noCalls is a provider client the dispatcher never uses here: gateways
// send their own calls.
type noCalls struct{}

func (noCalls) Generate(context.Context, provider.Request) (*provider.Response, error) {
	return nil, errors.New("not used")
}

// served starts a dispatcher "p" with one concurrency slot on a fake clock
// and the authority over real HTTP in front of it.
func served(t *testing.T) (*Server, *Client, *clocktesting.FakeClock) {
	t.Helper()
	fc := clocktesting.NewFakeClock(time.Date(2026, 12, 6, 9, 0, 0, 0, time.UTC))
	d, err := dispatch.New(dispatch.Config{Name: "p", Client: noCalls{}, Limits: ratewindow.Config{MaxConcurrency: 1}}, nil, fc, logr.Discard(), nil)
	if err != nil {
		t.Fatal(err)
	}
	s := &Server{Clock: fc, Lease: time.Minute, Log: logr.Discard(), Observe: &seen{},
		Lookup: func(name string) *dispatch.Dispatcher {
			if name == "p" {
				return d
			}
			return nil
		},
		Authorize: func(_ context.Context, token string) error {
			if token != "gateway" {
				return errors.New("not a gateway")
			}
			return nil
		}}
	srv := httptest.NewServer(s)
	t.Cleanup(srv.Close)
	return s, &Client{Resolver: StaticURL(srv.URL), HTTP: srv.Client(), Token: func() (string, error) { return "gateway", nil }}, fc
}

// TestGrantOfAVanishedGatewayIsReclaimed: a grant never released holds its
// slot until its lease ends, and no longer.
func TestGrantOfAVanishedGatewayIsReclaimed(t *testing.T) {
	s, c, fc := served(t)
	ctx := context.Background()
	ask := AcquireRequest{Provider: "p", Namespace: "app", MaxTokens: 16}
	if got, err := c.Acquire(ctx, ask); err != nil || got.Grant == "" || got.LeaseMillis != time.Minute.Milliseconds() {
		t.Fatalf("first acquire: %+v, %v", got, err)
	}
	if got, err := c.Acquire(ctx, ask); err != nil || got.Grant != "" || got.Reason != ratewindow.ReasonConcurrency.String() {
		t.Fatalf("second acquire while the only slot is held: %+v, %v", got, err)
	}
	fc.Step(59 * time.Second)
	if n := s.Reclaim(); n != 0 {
		t.Fatalf("reclaimed %d grants inside their lease", n)
	}
	fc.Step(time.Second)
	if n := s.Reclaim(); n != 1 || s.Held() != 0 {
		t.Fatalf("reclaimed %d grants at the lease's end, %d still held; want 1 and 0", n, s.Held())
	}
	if n := s.Observe.(*seen).get().reclaimed[ReclaimedLease]; n != 1 {
		t.Fatalf("llmquota_authority_grants_reclaimed_total{reason=lease} counted %d, want 1", n)
	}
	got, err := c.Acquire(ctx, ask)
	if err != nil || got.Grant == "" {
		t.Fatalf("acquire after the reclaim: %+v, %v", got, err)
	}
	for range 2 { // a release is safe to repeat
		if err := c.Release(ctx, ReleaseRequest{Grant: got.Grant, Sent: true, InputTokens: 3, OutputTokens: 5}); err != nil {
			t.Fatal(err)
		}
	}
	if got, err := c.Acquire(ctx, ask); err != nil || got.Grant == "" {
		t.Fatalf("acquire after the release: %+v, %v", got, err)
	}
}

// TestAuthorityRefuses: an unknown provider, a caller that is not a
// gateway, and a request without an output cap.
func TestAuthorityRefuses(t *testing.T) {
	_, c, _ := served(t)
	ctx := context.Background()
	var notServed *NotServedError
	if _, err := c.Acquire(ctx, AcquireRequest{Provider: "nope", MaxTokens: 16}); !errors.As(err, &notServed) {
		t.Fatalf("unknown provider: %v, want NotServedError", err)
	}
	if _, err := c.Acquire(ctx, AcquireRequest{Provider: "p"}); err == nil {
		t.Fatal("an acquire without maxTokens was accepted: the reservation would have no bound")
	}
	c.Token = func() (string, error) { return "an app's token", nil }
	if err := c.Ping(ctx); err == nil {
		t.Fatal("a caller that is not a gateway was answered")
	}
	c.Token = func() (string, error) { return "gateway", nil }
	if err := c.Ping(ctx); err != nil {
		t.Fatal(err)
	}
	resp, err := http.Get(string(c.Resolver.(StaticURL)) + AcquirePath)
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Fatalf("GET: %d", resp.StatusCode)
	}
}

// TestReleaserSendsQueuedReleases: releases queued in the background reach
// the authority, and stopping the Releaser flushes what waits.
func TestReleaserSendsQueuedReleases(t *testing.T) {
	s, c, _ := served(t)
	ctx, stop := context.WithCancel(context.Background())
	r := NewReleaser(ctx, c, logr.Discard())
	for i := range 3 {
		got, err := c.Acquire(context.Background(), AcquireRequest{Provider: "p", MaxTokens: 16})
		if err != nil || got.Grant == "" {
			t.Fatalf("acquire %d: %+v, %v (its slot was not released)", i, got, err)
		}
		r.Release(ReleaseRequest{Grant: got.Grant, Sent: true, OutputTokens: 2})
		deadline := time.Now().Add(10 * time.Second)
		for s.Held() != 0 {
			if time.Now().After(deadline) {
				t.Fatalf("grant %d still held after its release was queued", i)
			}
			time.Sleep(time.Millisecond)
		}
	}
	got, _ := c.Acquire(context.Background(), AcquireRequest{Provider: "p", MaxTokens: 16})
	r.Release(ReleaseRequest{Grant: got.Grant})
	stop()
	deadline := time.Now().Add(10 * time.Second)
	for s.Held() != 0 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	if s.Held() != 0 {
		t.Fatal("a release queued when the Releaser stopped was not sent")
	}
}

// TestWritesOfAnIntervalProviderAreReported: a grant of a provider with a
// minimum interval asks its gateway to report the write; the next call
// waits for the report, over HTTP, and an interval after it; a gateway
// that never reports holds the provider until the write deadline, not for
// its whole lease.
func TestWritesOfAnIntervalProviderAreReported(t *testing.T) {
	fc := clocktesting.NewFakeClock(time.Date(2026, 12, 7, 9, 0, 0, 0, time.UTC))
	d, err := dispatch.New(dispatch.Config{Name: "p", Client: noCalls{}, Limits: ratewindow.Config{MinInterval: 100 * time.Millisecond}},
		nil, fc, logr.Discard(), nil)
	if err != nil {
		t.Fatal(err)
	}
	s := &Server{Clock: fc, Lease: time.Minute, WriteDeadline: 5 * time.Second, Log: logr.Discard(), Lookup: func(string) *dispatch.Dispatcher { return d }}
	srv := httptest.NewServer(s)
	defer srv.Close()
	c := &Client{Resolver: StaticURL(srv.URL), HTTP: srv.Client()}
	ctx := context.Background()
	ask := AcquireRequest{Provider: "p", Namespace: "app", MaxTokens: 16}
	acquire := func(want bool, what string) AcquireResponse {
		t.Helper()
		got, err := c.Acquire(ctx, ask)
		if err != nil || (got.Grant != "") != want {
			t.Fatalf("%s: %+v, %v; want granted %v", what, got, err, want)
		}
		return got
	}

	first := acquire(true, "first")
	if !first.ReportWrite {
		t.Fatal("a grant of an interval-limited provider does not ask for its write")
	}
	fc.Step(time.Second)
	acquire(false, "a second before the first's write was reported")
	if err := c.Wrote(ctx, first.Grant); err != nil {
		t.Fatal(err)
	}
	acquire(false, "a second at the write")
	fc.Step(200 * time.Millisecond) // past the interval and its guard
	second := acquire(true, "a second an interval after the write")

	fc.Step(4 * time.Second) // the second's gateway died before it wrote
	s.Reclaim()
	acquire(false, "a third inside the write deadline")
	fc.Step(time.Second)
	s.Reclaim() // the deadline passed: counted as written now
	acquire(false, "a third at the deadline")
	fc.Step(200 * time.Millisecond)
	acquire(true, "a third an interval after the deadline")
	if err := c.Release(ctx, ReleaseRequest{Grant: second.Grant}); err != nil {
		t.Fatal(err)
	}
}

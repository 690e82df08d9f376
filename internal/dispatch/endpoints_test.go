package dispatch

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/go-logr/logr"
	clocktesting "k8s.io/utils/clock/testing"

	"github.com/llmquota/llmquota/internal/cost"
	"github.com/llmquota/llmquota/internal/emulator"
	"github.com/llmquota/llmquota/internal/provider"
	"github.com/llmquota/llmquota/internal/ratewindow"
)

// ollamaPod is an emulated Ollama server standing for one pod.
func ollamaPod(t *testing.T, name string, cfg emulator.Config) (*emulator.Server, Endpoint) {
	t.Helper()
	emu := emulator.New(cfg)
	srv := emulator.NewTestServer(emu)
	t.Cleanup(srv.Close)
	c, err := provider.New(provider.Config{Type: provider.Ollama, Endpoint: srv.URL})
	if err != nil {
		t.Fatal(err)
	}
	return emu, Endpoint{Name: name, Address: srv.URL, Client: c}
}

// TestSendsOnlyToWarmEndpoints: calls go round robin to the warm
// endpoints only; with none warm and no fallback the items wait, and go on
// once one is warm.
func TestSendsOnlyToWarmEndpoints(t *testing.T) {
	warmA, a := ollamaPod(t, "a", emulator.Config{})
	warmB, b := ollamaPod(t, "b", emulator.Config{})
	cold, c := ollamaPod(t, "c", emulator.Config{})
	eps := &Endpoints{}
	eps.Set([]Endpoint{a, b})
	d := start(t, Config{Name: "pool", Endpoints: eps, DefaultModel: "tiny", MaxRetries: 1})

	col := newCollector(10)
	d.Submit(Batch{Key: "ns/first", Namespace: "ns", Size: 10, Items: items("x", 10), OnResult: col.add})
	col.wait(t, 10*time.Second)
	if na, nb, nc := len(warmA.Log()), len(warmB.Log()), len(cold.Log()); na != 5 || nb != 5 || nc != 0 {
		t.Fatalf("requests a=%d b=%d cold c=%d, want 5/5/0", na, nb, nc)
	}

	eps.Set(nil)
	held := newCollector(4)
	d.Submit(Batch{Key: "ns/held", Namespace: "ns", Size: 4, Items: items("y", 4), OnResult: held.add})
	stepped(t, d) // the loop looked at the held batch, and had its chance to send
	held.mu.Lock()
	got := len(held.results)
	held.mu.Unlock()
	if q := d.Stats(cost.Thresholds{}).Batch.Waiting; q != 4 || got != 0 {
		t.Fatalf("queued %d, results %d: with no warm endpoint the items must wait", q, got)
	}
	if n := len(warmA.Log()) + len(warmB.Log()) + len(cold.Log()); n != 10 {
		t.Fatalf("%d requests in all, want the first 10 only", n)
	}
	eps.Set([]Endpoint{c}) // c turned warm
	for _, r := range held.wait(t, 10*time.Second) {
		if !r.Succeeded {
			t.Fatalf("held item %+v", r)
		}
	}
	if n := len(cold.Log()); n != 4 {
		t.Fatalf("%d requests to c once warm, want 4", n)
	}
}

// TestNoWarmEndpointGoesToFallback: a pool with no warm endpoint hands its
// items to the fallback provider.
func TestNoWarmEndpointGoesToFallback(t *testing.T) {
	pool := startWith(t, Config{Name: "pool", Endpoints: &Endpoints{}, DefaultModel: "tiny", Fallback: "cloud"}, cloudFallback(t))
	col := newCollector(3)
	pool.Submit(Batch{Key: "ns/b", Namespace: "ns", Size: 3, Items: items("z", 3), OnResult: col.add})
	for _, r := range col.wait(t, 10*time.Second) {
		if r.Provider != "cloud" || !r.Succeeded {
			t.Fatalf("item %+v, want it served by the fallback", r)
		}
	}
}

// TestFailingEndpointsReportedOnce: consecutive server errors from one
// endpoint are counted; a success clears them; each run is reported once.
func TestFailingEndpointsReportedOnce(t *testing.T) {
	_, bad := ollamaPod(t, "bad", emulator.Config{Faults: emulator.FaultRates{ServerError: 1}})
	eps := &Endpoints{}
	eps.Set([]Endpoint{bad})
	d := start(t, Config{Name: "pool", Endpoints: eps, DefaultModel: "tiny", MaxRetries: 2})
	col := newCollector(1)
	d.Submit(Batch{Key: "ns/b", Namespace: "ns", Size: 1, Items: items("f", 1), OnResult: col.add})
	if r := col.wait(t, 30*time.Second)[0]; r.Succeeded || r.Attempts != 3 {
		t.Fatalf("result %+v, want failed after 3 attempts", r)
	}
	if got := eps.Failing(3); !slices.Equal(got, []string{"bad"}) {
		t.Fatalf("failing %v, want [bad]", got)
	}
	if got := eps.Failing(3); got != nil {
		t.Fatalf("reported again: %v", got)
	}
	eps.observe("good", true)
	eps.observe("good", false)
	eps.observe("good", true)
	if got := eps.Failing(2); got != nil {
		t.Fatalf("a success between errors still reported: %v", got)
	}
}

// TestAsksGoToWarmEndpointsInTurn: a pool's interactive calls are granted
// a warm endpoint each, in turn with its batch items; none warm refuses
// at once (NoEndpoint) and spends nothing; a granted call's server errors
// count against its endpoint, as a batch item's do.
func TestAsksGoToWarmEndpointsInTurn(t *testing.T) {
	eps := &Endpoints{}
	d, err := New(Config{Name: "pool", Client: &stubClient{}, Limits: minuteLimit(10, 0), Endpoints: eps},
		nil, clocktesting.NewFakeClock(time.Date(2026, 12, 7, 9, 0, 0, 0, time.UTC)), logr.Discard(), nil)
	if err != nil {
		t.Fatal(err)
	}
	ask := Ask{Namespace: "app", InputChars: 40, MaxTokens: 64}
	if g, dec, err := d.Acquire(context.Background(), ask); g != nil || err != nil || dec.Reason != ratewindow.ReasonNoEndpoint {
		t.Fatalf("none warm: grant %v, %+v, %v; want refused NoEndpoint", g, dec, err)
	}
	if used := d.Quota().Windows[0].Used; used != 0 {
		t.Fatalf("a refusal for want of a warm endpoint spent %d of the window", used)
	}
	eps.Set([]Endpoint{{Name: "a", Address: "http://a"}, {Name: "b", Address: "http://b"}})
	var got []string
	for range 4 {
		g, _, err := d.Acquire(context.Background(), ask)
		if err != nil || g == nil {
			t.Fatalf("warm: %v, %v", g, err)
		}
		got = append(got, g.Endpoint().Address)
		g.Done(nil, &provider.Error{Class: provider.ClassServerError})
	}
	if want := []string{"http://a", "http://b", "http://a", "http://b"}; !slices.Equal(got, want) {
		t.Fatalf("endpoints %q, want %q", got, want)
	}
	if failing := eps.Failing(2); !slices.Equal(failing, []string{"a", "b"}) {
		t.Fatalf("failing %q, want both endpoints after two server errors each", failing)
	}
}

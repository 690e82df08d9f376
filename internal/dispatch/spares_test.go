package dispatch

import (
	"context"
	"testing"
	"time"

	"github.com/go-logr/logr"
	clocktesting "k8s.io/utils/clock/testing"

	"github.com/llmquota/llmquota/internal/cost"
	"github.com/llmquota/llmquota/internal/provider"
	"github.com/llmquota/llmquota/internal/ratewindow"
)

// TestSparesLeaveTheLastOfTheWindow: against 100 calls a minute and 20
// slots, an Ask for a call and 500 spares gets its grant and spares up to
// 90% of the slots (17 spares), never the last 10%. Spares given back
// unused leave the window and the slots as if never given. Spares used
// count like any call; they are never given past 90 of the 100, calls asked
// one by one take the rest, exactly to the limit, and the window then
// refuses with the exact time it frees.
func TestSparesLeaveTheLastOfTheWindow(t *testing.T) {
	t0 := time.Date(2026, 12, 7, 9, 0, 0, 0, time.UTC)
	d, err := New(Config{Name: "p", Client: &stubClient{}, Limits: minuteLimit(100, 20)}, nil, clocktesting.NewFakeClock(t0), logr.Discard(), nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, ask := context.Background(), Ask{Namespace: "app", InputChars: 40, MaxTokens: 64, Prefetch: 500}
	g, _, err := d.Acquire(ctx, ask)
	if err != nil || g == nil {
		t.Fatalf("first grant: %v %v", g, err)
	}
	if n := len(g.Spares()); n != 17 { // kept: 20 - 2 = 18 slots, one of them the call's own
		t.Fatalf("%d spares under 20 slots, want 17", n)
	}
	for _, s := range g.Spares() {
		s.Cancel()
	}
	if q := d.Quota(); q.InFlight != 1 || q.Windows[0].Used != 1 {
		t.Fatalf("after the spares were given back: %d in flight, %d in the window; want only the call's own", q.InFlight, q.Windows[0].Used)
	}
	g.Done(&provider.Response{InputTokens: 10, OutputTokens: 5}, nil)
	for admitted := 1; admitted < 100; {
		g, dec, err := d.Acquire(ctx, ask)
		if err != nil || g == nil {
			t.Fatalf("after %d admitted: refused %+v, %v", admitted, dec, err)
		}
		admitted += 1 + len(g.Spares())
		if admitted > 90 && len(g.Spares()) > 0 {
			t.Fatalf("spares given past 90%% of the window (%d admitted)", admitted)
		}
		for _, s := range append(g.Spares(), g) {
			s.Done(&provider.Response{InputTokens: 10, OutputTokens: 5}, nil)
		}
	}
	_, dec, _ := d.Acquire(ctx, ask)
	if dec.Reason != ratewindow.ReasonWindow || !dec.RetryAt.Equal(t0.Add(time.Minute+guard(time.Minute))) {
		t.Fatalf("the 101st call: %+v, want the window until a minute and its guard after the first", dec)
	}
	if q := d.Quota(); q.InFlight != 0 || q.Windows[0].Used != 100 {
		t.Fatalf("%d in flight, %d in the window, want 0 and 100", q.InFlight, q.Windows[0].Used)
	}
}

// TestSparesHoldTheBudget: each spare reserves its worst case, as a call's
// grant does, and only within the spend already committed, so grants and
// spares together stop at the budget (100 calls of 0.01 under 1.00); a
// cancelled one gives its reservation back.
func TestSparesHoldTheBudget(t *testing.T) {
	t0 := time.Date(2026, 12, 7, 9, 0, 0, 0, time.UTC)
	d, err := New(Config{Name: "p", Client: &stubClient{}, Limits: minuteLimit(1000, 0), Prices: cost.Prices{PerRequest: "0.01"},
		Budgets: cost.Budgets{Daily: "1.00"}}, nil, clocktesting.NewFakeClock(t0), logr.Discard(), nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go d.Run(ctx) // commits the budget's spend before calls beyond it
	ask := Ask{Namespace: "app", InputChars: 40, MaxTokens: 60, Prefetch: 10}
	var held []*Grant
	spares := 0
	for {
		g, dec, err := d.Acquire(ctx, ask)
		if err != nil {
			t.Fatal(err)
		}
		if g == nil {
			if dec.Reason != ratewindow.ReasonBudget {
				t.Fatalf("refused by %+v, want the budget", dec)
			}
			break
		}
		held = append(append(held, g), g.Spares()...)
		spares += len(g.Spares())
		if len(held) > 100 {
			t.Fatalf("%d grants and spares held under a budget of 100 calls", len(held))
		}
	}
	if len(held) != 100 || spares == 0 {
		t.Fatalf("%d grants and spares held (%d spares) under a budget of 100 calls, want 100 and spares", len(held), spares)
	}
	for _, g := range held {
		g.Cancel()
	}
	if g, dec, _ := d.Acquire(ctx, ask); g == nil {
		t.Fatalf("cancelled grants kept the budget: %+v", dec)
	}
}

// TestSpareUse: spares may be held half a window's guard, at most 125 ms;
// none under a minimum interval, a window shorter than 10 s, or for a pool.
func TestSpareUse(t *testing.T) {
	window := func(p time.Duration) ratewindow.Config {
		return ratewindow.Config{Windows: []ratewindow.Window{{Name: "w", Limit: 10, Period: p}}}
	}
	interval := window(time.Minute)
	interval.MinInterval = time.Second
	shortModel := map[string]*ratewindow.Config{"m": new(window(5 * time.Second))}
	for _, c := range []struct {
		name   string
		limits ratewindow.Config
		models map[string]*ratewindow.Config
		want   time.Duration
	}{
		{"a minute", window(time.Minute), nil, 125 * time.Millisecond},
		{"ten seconds", window(10 * time.Second), nil, guard(10*time.Second+guard(10*time.Second)) / 2},
		{"five seconds", window(5 * time.Second), nil, 0},
		{"a model's five seconds", window(time.Minute), shortModel, 0},
		{"an interval", interval, nil, 0},
		{"concurrency alone", ratewindow.Config{MaxConcurrency: 4}, nil, 125 * time.Millisecond},
	} {
		d, err := New(Config{Name: "p", Client: &stubClient{}, Limits: c.limits, ModelLimits: c.models}, nil,
			clocktesting.NewFakeClock(time.Now()), logr.Discard(), nil)
		if err != nil {
			t.Fatal(err)
		}
		if got := d.SpareUse(); got != c.want {
			t.Errorf("%s: spares held %v, want %v", c.name, got, c.want)
		}
	}
	pool, err := New(Config{Name: "pool", Limits: window(time.Minute), Endpoints: &Endpoints{}}, nil,
		clocktesting.NewFakeClock(time.Now()), logr.Discard(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := pool.SpareUse(); got != 0 {
		t.Errorf("a pool: spares held %v, want none (its server is picked per call)", got)
	}
}

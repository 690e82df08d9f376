package dispatch

import (
	"context"
	"math/big"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr"
	clocktesting "k8s.io/utils/clock/testing"

	"github.com/llmquota/llmquota/internal/cost"
	"github.com/llmquota/llmquota/internal/provider"
	"github.com/llmquota/llmquota/internal/ratewindow"
)

// TestNamespaceBudgetHoldsOnlyItsNamespace: a namespace at its daily
// budget waits until the next UTC midnight, saying so; a namespace beside
// it on the same provider goes on.
func TestNamespaceBudgetHoldsOnlyItsNamespace(t *testing.T) {
	now := time.Date(2026, 12, 6, 9, 0, 0, 0, time.UTC)
	fc := clocktesting.NewFakeClock(now)
	stub := &stubClient{}
	d, err := New(Config{Name: "p", Client: stub, Limits: minuteLimit(1000, 4), Prices: cost.Prices{PerRequest: "0.01"},
		Shares: Shares{Budgets: map[string]cost.Budgets{"frugal": {Daily: "0.03"}}}}, nil, fc, logr.Discard(), nil)
	if err != nil {
		t.Fatal(err)
	}
	var told sync.WaitGroup
	told.Add(1)
	var once sync.Once
	frugal, other := newCollector(3), newCollector(10)
	d.Submit(Batch{Key: "frugal/b", Namespace: "frugal", Size: 10, Items: items("f", 10), OnResult: frugal.add,
		OnChange: func() { once.Do(told.Done) }})
	d.Submit(Batch{Key: "other/b", Namespace: "other", Size: 10, Items: items("o", 10), OnResult: other.add})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go d.Run(ctx)
	other.wait(t, 10*time.Second)
	frugal.settled(t, 3)
	told.Wait() // the frugal batch was told its namespace's budget holds it

	sent := map[string]int{}
	for _, p := range stub.prompts() {
		sent[strings.Fields(p)[1]]++
	}
	if sent["f"] != 3 || sent["o"] != 10 {
		t.Fatalf("calls sent by namespace %v, want 3 for frugal (0.03 at 0.01) and all 10 for the other", sent)
	}
	p, _ := d.Progress("frugal/b")
	midnight := time.Date(2026, 12, 7, 0, 0, 0, 0, time.UTC)
	if want := (ratewindow.Decision{Reason: ratewindow.ReasonBudget, Window: "namespace/daily", RetryAt: midnight}); p.Limit != want {
		t.Fatalf("frugal's batch shows %+v, want %+v", p.Limit, want)
	}
	if p, _ := d.Progress("other/b"); !p.Limit.Allowed {
		t.Fatalf("the other namespace's batch shows %+v", p.Limit)
	}
	if s := d.Stats(cost.Thresholds{}); !s.Held.Allowed {
		t.Fatalf("the provider shows itself held (%+v) by one namespace's budget", s.Held)
	}
	fc.SetTime(midnight.Add(time.Second)) // the budget resets: the rest goes, three a day
	// The loop may have read the clock just before it moved, and set its
	// timer from there (past the new time plus its wait): wake it.
	d.poke()
	frugal.settled(t, 6)
}

// TestNamespaceBudgetsHoldAcrossCrashes: 1,000 randomized runs of calls
// from three namespaces with budgets, many in flight at once, each run
// crashed (kill -9: nothing but what was persisted survives) at random
// points, across a day's and a month's end. A call counts in the day and
// month it was sent, whenever it completes, in flight at a crash too, and
// uses up to a token a byte of its input (what a byte-level tokenizer can
// give) and up to its output cap. No namespace ever spends past its budget
// in any UTC day or month. With the input bounded at half the bytes, as it
// once was, seed 81 overspends.
func TestNamespaceBudgetsHoldAcrossCrashes(t *testing.T) {
	budgets := map[string]cost.Budgets{"a": {Daily: "0.02"}, "b": {Daily: "0.03", Monthly: "0.04"}}
	prices := cost.Prices{InputPerMillion: "1", OutputPerMillion: "4", PerRequest: "0.0005"}
	meter, _ := cost.NewMeter(prices)
	approached := 0
	for seed := range uint64(1000) {
		r := rand.New(rand.NewPCG(seed, 26))
		fc := clocktesting.NewFakeClock(time.Date(2026, 11, 30, 23, 0, 0, 0, time.UTC))
		var mu sync.Mutex
		persisted := map[string]cost.Period{}
		start := func() (*Dispatcher, context.CancelFunc) {
			d, err := New(Config{Name: "p", Client: &stubClient{}, Limits: minuteLimit(1_000_000, 0), Prices: prices,
				Shares: Shares{Budgets: budgets},
				PersistNamespaceCost: func(_ context.Context, ns string, p cost.Period) error {
					mu.Lock()
					defer mu.Unlock()
					persisted[ns] = p
					return nil
				}}, nil, fc, logr.Discard(), nil)
			if err != nil {
				t.Fatal(err)
			}
			mu.Lock()
			seedFrom := map[string]cost.Period{}
			for k, v := range persisted {
				seedFrom[k] = v
			}
			mu.Unlock()
			d.SeedNamespaceCost(seedFrom)
			ctx, cancel := context.WithCancel(context.Background())
			go d.Run(ctx)
			return d, cancel
		}
		d, stop := start()
		refused := false
		spent := map[string]*big.Rat{} // by namespace and UTC day or month, at the provider
		land := func(ns string, at time.Time, in, out int64) {
			c := meter.Price(in, out)
			for _, key := range []string{ns + " " + at.Format(time.DateOnly), ns + " " + at.Format("2006-01")} {
				if spent[key] == nil {
					spent[key] = new(big.Rat)
				}
				spent[key].Add(spent[key], c)
			}
		}
		type call struct {
			g       *Grant
			ns      string
			in, out int64
			sent    time.Time
		}
		var flying []call
		for range 60 {
			fc.Step(time.Duration(r.IntN(300)) * time.Second)
			switch op := r.IntN(10); {
			case op < 6:
				ns := []string{"a", "b", "c"}[r.IntN(3)]
				chars, maxOut := r.IntN(8000), int64(r.IntN(2000)+1)
				g, dec, err := d.Acquire(context.Background(), Ask{Namespace: ns, InputChars: chars, MaxTokens: maxOut})
				if err != nil {
					t.Fatal(err)
				}
				if g == nil && dec.Reason == ratewindow.ReasonBudget {
					if !strings.HasPrefix(dec.Window, NamespaceBudgetWindow) || ns == "c" {
						t.Fatalf("seed %d: %s refused by %s: only a and b have budgets, and the provider none", seed, ns, dec.Window)
					}
					refused = true
				}
				if g != nil { // a real call uses at most its cap, and at most a token a byte of input (and its template)
					flying = append(flying, call{g, ns, int64(r.IntN(chars + 17)), r.Int64N(maxOut + 1), fc.Now()})
				}
			case op < 9 && len(flying) > 0:
				i := r.IntN(len(flying))
				c := flying[i]
				flying = append(flying[:i], flying[i+1:]...)
				c.g.Done(&provider.Response{Text: "ok", InputTokens: c.in, OutputTokens: c.out}, nil)
				land(c.ns, c.sent, c.in, c.out)
			case op == 9: // kill -9: calls in flight still reach the provider and are billed
				stop()
				for _, c := range flying {
					land(c.ns, c.sent, c.in, c.out)
				}
				flying = nil
				d, stop = start()
			}
			for key, s := range spent {
				ns, period, _ := strings.Cut(key, " ")
				limit := budgets[ns].Daily
				if len(period) == len("2006-01") {
					limit = budgets[ns].Monthly
				}
				if l, ok := new(big.Rat).SetString(limit); ok && limit != "" && s.Cmp(l) > 0 {
					t.Fatalf("seed %d: namespace %s spent %s in %s, over its budget %s", seed, ns, s.FloatString(6), period, limit)
				}
			}
		}
		stop()
		if refused {
			approached++
		}
	}
	// Not vacuous: the budgets, not the lack of calls, bounded the spend.
	t.Logf("a namespace's budget refused calls in %d of 1,000 runs", approached)
	if approached < 900 {
		t.Fatalf("a namespace's budget refused calls in only %d of 1,000 runs: the budgets were seldom tested", approached)
	}
}

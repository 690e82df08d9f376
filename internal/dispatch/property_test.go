package dispatch

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/go-logr/logr"
	clocktesting "k8s.io/utils/clock/testing"

	"github.com/llmquota/llmquota/internal/provider"
	"github.com/llmquota/llmquota/internal/ratewindow"
)

// arrival is one call as an independent server logs it.
type arrival struct {
	at     time.Time
	tokens int64 // what the call used
}

// hold is a 429's Retry-After as the server gave it: nothing may arrive
// after answered and before until.
type hold struct{ answered, until time.Time }

// TestNoLimitEverExceeded is the dispatcher's property test (issue 28):
// random limits (request windows, minimum interval, tokens per window,
// concurrency), random latencies, 429s that say when to come back and
// 500s, over ten simulated minutes of a caller that always has work. The
// server's own log, kept apart from the dispatcher, must show no window,
// interval, token or concurrency limit exceeded and no call inside a
// Retry-After hold.
func TestNoLimitEverExceeded(t *testing.T) {
	calls, holds := 0, 0
	for trial := range 60 {
		rng := rand.New(rand.NewPCG(uint64(trial), 42))
		cfg := randomLimits(rng)
		log, held, peak := simulate(t, rng, cfg)
		if err := checkArrivals(log, held, peak, cfg); err != nil {
			t.Fatalf("trial %d, limits %+v: %v", trial, cfg, err)
		}
		calls, holds = calls+len(log), holds+len(held)
	}
	t.Logf("60 random limits, ten minutes each: %d calls, %d Retry-After holds, no limit exceeded at the server", calls, holds)
}

// TestCheckArrivalsCatchesEachExcess: the property test's checker fails
// for a log that exceeds each kind of limit, so its passing means
// something.
func TestCheckArrivalsCatchesEachExcess(t *testing.T) {
	t0 := time.Date(2026, 12, 7, 9, 0, 0, 0, time.UTC)
	at := func(ms ...int) []arrival {
		var log []arrival
		for _, m := range ms {
			log = append(log, arrival{at: t0.Add(time.Duration(m) * time.Millisecond), tokens: 100})
		}
		return log
	}
	minute := []ratewindow.Window{{Name: "m", Limit: 2, Period: time.Minute}}
	cases := []struct {
		name  string
		log   []arrival
		holds []hold
		peak  int
		cfg   ratewindow.Config
	}{
		{"a window", at(0, 1000, 59000), nil, 1, ratewindow.Config{Windows: minute, MaxConcurrency: 1}},
		{"the interval", at(0, 999), nil, 1, ratewindow.Config{MinInterval: time.Second, MaxConcurrency: 1}},
		{"tokens", at(0, 1000, 2000), nil, 1, ratewindow.Config{Tokens: &ratewindow.Window{Limit: 250, Period: time.Minute}, MaxConcurrency: 1}},
		{"concurrency", at(0), nil, 3, ratewindow.Config{MaxConcurrency: 2}},
		{"a Retry-After hold", at(0, 1500), []hold{{answered: t0.Add(time.Second), until: t0.Add(2 * time.Second)}}, 1, ratewindow.Config{MaxConcurrency: 1}},
	}
	for _, c := range cases {
		if err := checkArrivals(c.log, c.holds, c.peak, c.cfg); err == nil {
			t.Errorf("%s: a log past it passed", c.name)
		}
	}
	if err := checkArrivals(at(0, 60001, 120002), nil, 1, ratewindow.Config{Windows: minute, MinInterval: time.Second, MaxConcurrency: 1}); err != nil {
		t.Errorf("a log within the limits failed: %v", err)
	}
}

func randomLimits(rng *rand.Rand) ratewindow.Config {
	cfg := ratewindow.Config{MaxConcurrency: 1 + rng.IntN(8), InitialBackoff: time.Second, MaxBackoff: 10 * time.Second}
	for i, period := range []time.Duration{time.Minute, time.Hour} {
		if rng.IntN(3) > 0 {
			cfg.Windows = append(cfg.Windows, ratewindow.Window{Name: fmt.Sprint("w", i), Limit: int64(5 + rng.IntN(60)*(i+1)), Period: period})
		}
	}
	if rng.IntN(2) == 0 {
		cfg.MinInterval = time.Duration(rng.IntN(3000)) * time.Millisecond
	}
	if rng.IntN(2) == 0 {
		cfg.Tokens = &ratewindow.Window{Name: "tokens", Limit: int64(2000 + rng.IntN(20000)), Period: time.Minute}
	}
	return cfg
}

// simulate runs the caller against the dispatcher's interactive lane on a
// fake clock and returns the server's log, its Retry-After holds and the
// most calls it had in flight at once.
func simulate(t *testing.T, rng *rand.Rand, cfg ratewindow.Config) ([]arrival, []hold, int) {
	t.Helper()
	t0 := time.Date(2026, 12, 7, 9, 0, 0, 0, time.UTC)
	fc := clocktesting.NewFakeClock(t0)
	d, err := New(Config{Name: "p", Client: &stubClient{}, Limits: cfg}, nil, fc, logr.Discard(), nil)
	if err != nil {
		t.Fatal(err)
	}
	type call struct {
		g    *Grant
		end  time.Time
		resp *provider.Response
		err  *provider.Error
	}
	var pending []call
	var log []arrival
	var holds []hold
	peak := 0
	for fc.Now().Before(t0.Add(10 * time.Minute)) {
		// The server answers every call whose time has come, in order.
		slices.SortFunc(pending, func(a, b call) int { return a.end.Compare(b.end) })
		for len(pending) > 0 && !pending[0].end.After(fc.Now()) {
			c := pending[0]
			pending = pending[1:]
			if c.err != nil {
				c.g.Done(nil, c.err)
			} else {
				c.g.Done(c.resp, nil)
			}
		}
		input, output := 40+rng.IntN(4000), int64(16+rng.IntN(512))
		g, dec, err := d.Acquire(context.Background(), Ask{Namespace: "app", InputChars: input, MaxTokens: output})
		if err != nil {
			t.Fatal(err)
		}
		if g != nil {
			now := fc.Now()
			used := tokenCost(input, output).Total() - int64(rng.IntN(int(output))) // never more than the cap sent
			c := call{g: g, end: now.Add(time.Duration(rng.IntN(5000)) * time.Millisecond)}
			switch rng.IntN(20) {
			case 0: // a 429 that says when to come back
				until := c.end.Add(time.Duration(1+rng.IntN(10)) * time.Second)
				c.err = &provider.Error{Class: provider.ClassRateLimited, Message: "slow down", RetryAt: until}
				holds = append(holds, hold{answered: c.end, until: until})
				used = 0
			case 1:
				c.err = &provider.Error{Class: provider.ClassServerError, Message: "boom"}
				used = 0
			default:
				c.resp = &provider.Response{InputTokens: used / 2, OutputTokens: used - used/2}
			}
			log = append(log, arrival{at: now, tokens: used})
			pending = append(pending, c)
			peak = max(peak, len(pending))
			if rng.IntN(3) == 0 { // sometimes the next call comes a little later
				fc.Step(time.Duration(rng.IntN(200)) * time.Millisecond)
			}
			continue
		}
		next := dec.RetryAt
		for _, c := range pending {
			if next.IsZero() || c.end.Before(next) {
				next = c.end
			}
		}
		if next.IsZero() || !next.After(fc.Now()) {
			next = fc.Now().Add(time.Millisecond)
		}
		fc.SetTime(next)
	}
	return log, holds, peak
}

// checkArrivals checks the server's log against the declared limits,
// knowing nothing of how the dispatcher decided.
func checkArrivals(log []arrival, holds []hold, peak int, cfg ratewindow.Config) error {
	if len(log) == 0 {
		return fmt.Errorf("no call was sent")
	}
	if peak > cfg.MaxConcurrency {
		return fmt.Errorf("%d calls in flight at once, limit %d", peak, cfg.MaxConcurrency)
	}
	for _, w := range cfg.Windows {
		lo := 0
		for hi := range log {
			for !log[lo].at.After(log[hi].at.Add(-w.Period)) {
				lo++
			}
			if n := hi - lo + 1; int64(n) > w.Limit {
				return fmt.Errorf("%d calls in the %v ending %v, limit %d", n, w.Period, log[hi].at, w.Limit)
			}
		}
	}
	for i := 1; i < len(log); i++ {
		if gap := log[i].at.Sub(log[i-1].at); gap < cfg.MinInterval {
			return fmt.Errorf("calls %v apart at %v, minimum interval %v", gap, log[i].at, cfg.MinInterval)
		}
	}
	if tw := cfg.Tokens; tw != nil {
		lo, sum := 0, int64(0)
		for hi := range log {
			sum += log[hi].tokens
			for !log[lo].at.After(log[hi].at.Add(-tw.Period)) {
				sum -= log[lo].tokens
				lo++
			}
			if sum > tw.Limit {
				return fmt.Errorf("%d tokens in the minute ending %v, limit %d", sum, log[hi].at, tw.Limit)
			}
		}
	}
	for _, h := range holds {
		for _, a := range log {
			if a.at.After(h.answered) && a.at.Before(h.until) {
				return fmt.Errorf("a call at %v, inside the Retry-After hold given at %v until %v", a.at, h.answered, h.until)
			}
		}
	}
	return nil
}

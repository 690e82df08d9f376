package ratewindow

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

// arrivalsExceed reports the first moment at which more than limit of the
// arrivals fall in one period (a window that counts an arrival at its
// time, as the provider does): an independent check of what a limiter let
// through.
func arrivalsExceed(arrivals []time.Time, limit int, period time.Duration) (time.Time, bool) {
	sorted := slices.SortedFunc(slices.Values(arrivals), time.Time.Compare)
	for i := range sorted {
		n := 0
		for _, a := range sorted[i:] {
			if a.Sub(sorted[i]) < period {
				n++
			}
		}
		if n > limit {
			return sorted[i], true
		}
	}
	return time.Time{}, false
}

// TestDeferredCallCountsUntilItsTimeLeavesTheWindow: a call admitted now
// and sent half a minute later (a standby grant used late) keeps its place
// in a minute window until a minute after it was sent, so the calls
// admitted once the others left never make more than the limit in any
// minute at the provider. With Defer doing nothing, the window would admit
// a third call at 61 s, and the provider would see 4 in [30 s, 90 s).
func TestDeferredCallCountsUntilItsTimeLeavesTheWindow(t *testing.T) {
	t0 := time.Date(2026, 12, 8, 9, 0, 0, 0, time.UTC)
	l, err := New(Config{Windows: []Window{{Name: "minute", Limit: 3, Period: time.Minute}}, MaxConcurrency: 10})
	if err != nil {
		t.Fatal(err)
	}
	var arrivals []time.Time
	for range 3 {
		if d := l.Admit(t0, Cost{}); !d.Allowed {
			t.Fatalf("refused %+v", d)
		}
	}
	arrivals = append(arrivals, t0, t0)
	late := t0.Add(30 * time.Second)
	l.Defer(t0, Cost{}, late)
	arrivals = append(arrivals, late) // the deferred call is sent at its latest
	if d := l.Decide(t0.Add(time.Second), Cost{}); d.Allowed || !d.RetryAt.Equal(t0.Add(time.Minute)) {
		t.Fatalf("a full window with a deferred call: %+v, want full until a minute after the first two", d)
	}
	at := t0.Add(61 * time.Second)
	var refused Decision
	for refused = l.Admit(at, Cost{}); refused.Allowed; refused = l.Admit(at, Cost{}) {
		arrivals = append(arrivals, at)
	}
	if when, over := arrivalsExceed(arrivals, 3, time.Minute); over {
		t.Fatalf("the provider saw more than 3 calls in the minute from %v: %v", when, arrivals)
	}
	if got := len(arrivals); got != 5 {
		t.Fatalf("%d calls in all, want 5 (3, then 2 beside the deferred one)", got)
	}
	if want := late.Add(time.Minute); !refused.RetryAt.Equal(want) {
		t.Fatalf("refused at 61 s until %v, want %v (a minute after the deferred call)", refused.RetryAt, want)
	}
	if s := l.Stats(at); s.Windows[0].Used != 3 {
		t.Fatalf("the window shows %d used at 61 s, want 3 (the deferred call and two new)", s.Windows[0].Used)
	}
}

// TestDeferredTokensCountUntilTheirTime: a deferred call's tokens hold
// every token window of their kind until its time has left it, and free
// it exactly then.
func TestDeferredTokensCountUntilTheirTime(t *testing.T) {
	t0 := time.Date(2026, 12, 8, 9, 0, 0, 0, time.UTC)
	l, err := New(Config{
		Tokens:       &Window{Name: "tokens", Limit: 300, Period: time.Minute},
		TokenWindows: []TokenWindow{{Window: Window{Name: "output", Limit: 100, Period: time.Minute}, Kind: TokensOutput}},
	})
	if err != nil {
		t.Fatal(err)
	}
	cost := Cost{Input: 100, Output: 50}
	if d := l.Admit(t0, cost); !d.Allowed {
		t.Fatal(d)
	}
	late := t0.Add(20 * time.Second)
	l.Defer(t0, cost, late)
	at := t0.Add(70 * time.Second) // the admission's own time has left the window; the deferred time has not
	if d := l.Decide(at, Cost{Input: 50, Output: 60}); d.Allowed || d.Window != "output" || !d.RetryAt.Equal(late.Add(time.Minute)) {
		t.Fatalf("60 output tokens beside a deferred 50 of 100: %+v, want held by output until %v", d, late.Add(time.Minute))
	}
	if d := l.Decide(at, Cost{Input: 100, Output: 50}); !d.Allowed {
		t.Fatalf("what fits beside the deferred call was refused: %+v", d)
	}
	if d := l.Decide(at, Cost{Input: 120, Output: 40}); d.Allowed || d.Window != "tokens" {
		t.Fatalf("160 tokens beside a deferred 150 of 300: %+v, want held by tokens", d)
	}
	s := l.Stats(at)
	if s.Tokens.Used != 150 || s.TokenWindows[0].Used != 50 {
		t.Fatalf("stats at 70 s: tokens %d output %d, want 150 and 50", s.Tokens.Used, s.TokenWindows[0].Used)
	}
	if s := l.Stats(late.Add(time.Minute)); s.Tokens.Used != 0 {
		t.Fatalf("the deferred tokens still count once their time left the window: %d", s.Tokens.Used)
	}
}

// TestUnadmitDeferred: a deferred call given back unsent leaves the
// windows and frees its slot, as a call unadmitted at once does.
func TestUnadmitDeferred(t *testing.T) {
	t0 := time.Date(2026, 12, 8, 9, 0, 0, 0, time.UTC)
	l, err := New(Config{Windows: []Window{{Name: "minute", Limit: 2, Period: time.Minute}},
		Tokens: &Window{Name: "tokens", Limit: 1000, Period: time.Minute}, MaxConcurrency: 5})
	if err != nil {
		t.Fatal(err)
	}
	cost := Cost{Input: 10, Output: 20}
	l.Admit(t0, cost)
	l.Admit(t0, cost)
	late := t0.Add(time.Minute)
	l.Defer(t0, cost, late)
	if n := l.Deferred(t0); n != 1 {
		t.Fatalf("%d deferred, want 1", n)
	}
	l.Unadmit(late, cost)
	s := l.Stats(t0.Add(time.Second))
	if s.Windows[0].Used != 1 || s.Tokens.Used != 30 || s.InFlight != 1 || l.Deferred(t0) != 0 {
		t.Fatalf("after giving back the deferred call: %+v, want 1 call, 30 tokens, 1 in flight", s)
	}
}

// TestSnapshotKeepsDeferredCalls: a new leader restoring the snapshot
// counts the deferred calls until their time has left the windows, not
// from the restore; those whose time already left are not written.
func TestSnapshotKeepsDeferredCalls(t *testing.T) {
	t0 := time.Date(2026, 12, 8, 9, 0, 0, 0, time.UTC)
	cfg := Config{Windows: []Window{{Name: "minute", Limit: 2, Period: time.Minute}},
		Tokens: &Window{Name: "tokens", Limit: 1000, Period: time.Minute}}
	l, _ := New(cfg)
	cost := Cost{Input: 100, Output: 300}
	l.Admit(t0, cost)
	l.Defer(t0, cost, t0.Add(time.Minute))
	l.Admit(t0, cost)
	l.Defer(t0, cost, t0.Add(2*time.Second))
	snap := l.Snapshot(t0.Add(70*time.Second), nil) // the second's time has left the window
	r, err := Restore(cfg, snap, t0.Add(70*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	if n := r.Deferred(t0.Add(70 * time.Second)); n != 1 {
		t.Fatalf("%d deferred calls restored, want 1", n)
	}
	at := t0.Add(100 * time.Second)
	if s := r.Stats(at); s.Windows[0].Used != 1 || s.Tokens.Used != 400 {
		t.Fatalf("restored at 100 s: %+v, want the deferred call's 1 call and 400 tokens", s)
	}
	if s := r.Stats(t0.Add(2 * time.Minute)); s.Windows[0].Used != 0 {
		t.Fatalf("the deferred call still counts once its time left the window: %+v", s)
	}
}

// TestKthNewestMergesTheDeferred: the k-th newest of the ring and the
// deferred calls together is what sorting them all finds.
func TestKthNewestMergesTheDeferred(t *testing.T) {
	rng := rand.New(rand.NewPCG(8, 12))
	for range 2000 {
		l, _ := New(Config{Windows: []Window{{Name: "w", Limit: 64, Period: time.Minute}}})
		var all []int64
		at := int64(0)
		for range rng.IntN(20) {
			at += rng.Int64N(3)
			l.admitted.push(at)
			all = append(all, at)
		}
		for range rng.IntN(6) {
			d := rng.Int64N(40)
			i, _ := slices.BinarySearchFunc(l.deferred, d, func(x deferred, t int64) int { return int(x.t - t) })
			l.deferred = slices.Insert(l.deferred, i, deferred{t: d})
			all = append(all, d)
		}
		slices.Sort(all)
		for k := 1; k <= len(all); k++ {
			if got, want := l.kthNewest(k), all[len(all)-k]; got != want {
				t.Fatalf("k=%d of ring %v and deferred %v: %d, want %d", k, all, l.deferred, got, want)
			}
		}
	}
}

// TestPropertyDeferredCallsNeverExceedAWindow replays random schedules in
// which a quarter of the admitted calls are deferred up to two minutes
// (standby grants), and each of those is either sent at a random moment up
// to its deadline or given back unsent. Every decision must agree with the
// brute-force model, every RetryAt must be exact, and the arrivals (each
// call when it reached the provider) must never put more than a window's
// limit, or its tokens, in any window.
func TestPropertyDeferredCallsNeverExceedAWindow(t *testing.T) {
	trials, steps := 200, 800
	if testing.Short() {
		trials = 40
	}
	for trial := range trials {
		r := rand.New(rand.NewPCG(uint64(trial), 0xdefe))
		cfg := randomConfig(r)
		cfg.MinInterval = 0 // nothing is deferred under an interval
		l, err := New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		m := &model{cfg: cfg}
		var arrivals [][2]int64 // time, cost
		type held struct{ until, cost int64 }
		var givingBack []held
		now, deferrals := t0.UnixNano(), 0
		for step := range steps {
			now += int64(randomGap(r) / 4)
			switch {
			case len(givingBack) > 0 && r.IntN(5) == 0:
				g := givingBack[0]
				givingBack = givingBack[1:]
				l.Unadmit(time.Unix(0, g.until), tok(g.cost))
				m.inFlight = max(0, m.inFlight-1)
				for i, d := range m.deferred {
					if d == [2]int64{g.until, g.cost} {
						m.deferred = append(m.deferred[:i], m.deferred[i+1:]...)
						break
					}
				}
				continue
			case m.inFlight > len(givingBack) && r.IntN(3) == 0:
				l.Release(time.Unix(0, now), Result{Outcome: OutcomeNeutral})
				m.release(now, Result{Outcome: OutcomeNeutral})
				continue
			}
			cost := int64(0)
			if cfg.Tokens != nil {
				cost = 1 + r.Int64N(60)
			}
			want := m.allows(now, cost)
			d := l.Admit(time.Unix(0, now), tok(cost))
			if d.Allowed != want {
				t.Fatalf("trial %d step %d: limiter allowed=%v (%v), model allowed=%v; cfg %+v", trial, step, d.Allowed, d.Reason, want, cfg)
			}
			if !d.Allowed {
				if !d.RetryAt.IsZero() && m.allows(d.RetryAt.UnixNano()-1, cost) {
					t.Fatalf("trial %d step %d: RetryAt %v is not the earliest (%v)", trial, step, d.RetryAt, d.Reason)
				}
				continue
			}
			m.admit(now, cost)
			if r.IntN(4) != 0 {
				arrivals = append(arrivals, [2]int64{now, cost})
				continue
			}
			deferrals++
			until := now + 1 + r.Int64N(int64(2*time.Minute))
			l.Defer(time.Unix(0, now), tok(cost), time.Unix(0, until))
			m.admissions = m.admissions[:len(m.admissions)-1]
			if cfg.Tokens != nil && cost > 0 {
				m.tokens = m.tokens[:len(m.tokens)-1]
			}
			m.deferred = append(m.deferred, [2]int64{until, cost})
			if r.IntN(3) == 0 {
				givingBack = append(givingBack, held{until, cost})
				continue
			}
			arrivals = append(arrivals, [2]int64{now + r.Int64N(until-now+1), cost}) // sent at any moment up to its deadline
		}
		if deferrals == 0 {
			t.Fatalf("trial %d deferred nothing", trial)
		}
		if err := arrivalsOverLimits(arrivals, cfg); err != "" {
			t.Fatalf("trial %d: %s; cfg %+v", trial, err, cfg)
		}
	}
}

// arrivalsOverLimits checks that no window of cfg holds more calls, or
// tokens, than its limit among the arrivals; "" when none does.
func arrivalsOverLimits(arrivals [][2]int64, cfg Config) string {
	for _, end := range arrivals { // the busiest window ends at an arrival
		for _, w := range cfg.Windows {
			n := int64(0)
			for _, a := range arrivals {
				if a[0] <= end[0] && a[0] > end[0]-int64(w.Period) {
					n++
				}
			}
			if n > w.Limit {
				return fmt.Sprintf("%d calls arrived in the %v ending %v, limit %d", n, w.Period, time.Unix(0, end[0]), w.Limit)
			}
		}
		if tw := cfg.Tokens; tw != nil {
			sum := int64(0)
			for _, a := range arrivals {
				if a[0] <= end[0] && a[0] > end[0]-int64(tw.Period) {
					sum += a[1]
				}
			}
			if sum > tw.Limit {
				return fmt.Sprintf("%d tokens arrived in the %v ending %v, limit %d", sum, tw.Period, time.Unix(0, end[0]), tw.Limit)
			}
		}
	}
	return ""
}

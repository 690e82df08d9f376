package ratewindow

import (
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// The fixed timeline every table test runs on.
var t0 = time.Date(2026, 11, 26, 9, 0, 0, 0, time.UTC)

func at(d time.Duration) time.Time { return t0.Add(d) }

// step is one call on the timeline and what it must answer.
type step struct {
	at      time.Duration // since t0
	op      string        // "admit" (default), "decide", "ok", "fail", "neutral", "retryafter"
	cost    int64
	allowed bool
	reason  Reason
	retryAt time.Duration // since t0; checked when refused with a time-based reason
	window  string
	arg     time.Duration // for "retryafter": hold until t0+arg
}

func run(t *testing.T, cfg Config, steps []step) {
	t.Helper()
	l, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	for i, s := range steps {
		now := at(s.at)
		switch s.op {
		case "ok":
			l.Release(now, Result{Outcome: OutcomeSuccess})
			continue
		case "fail":
			l.Release(now, Result{Outcome: OutcomeFailure})
			continue
		case "neutral":
			l.Release(now, Result{Outcome: OutcomeNeutral})
			continue
		case "retryafter":
			l.Release(now, Result{Outcome: OutcomeFailure, RetryAfter: at(s.arg)})
			continue
		}
		var d Decision
		if s.op == "decide" {
			d = l.Decide(now, tok(s.cost))
		} else {
			d = l.Admit(now, tok(s.cost))
		}
		if d.Allowed != s.allowed || d.Reason != s.reason {
			t.Fatalf("step %d at %v: got allowed=%v reason=%v, want allowed=%v reason=%v", i, s.at, d.Allowed, d.Reason, s.allowed, s.reason)
		}
		if s.window != "" && d.Window != s.window {
			t.Fatalf("step %d: window %q, want %q", i, d.Window, s.window)
		}
		timed := !s.allowed && s.reason != ReasonConcurrency && s.reason != ReasonReservation && s.reason != ReasonTooLarge
		if timed && !d.RetryAt.Equal(at(s.retryAt)) {
			t.Fatalf("step %d: retryAt %v, want %v", i, d.RetryAt.Sub(t0), s.retryAt)
		}
		if !timed && !d.RetryAt.IsZero() {
			t.Fatalf("step %d: retryAt %v, want zero", i, d.RetryAt.Sub(t0))
		}
	}
}

// geminiConfig is the original report's Gemini configuration.
func geminiConfig() Config {
	return Config{
		Windows: []Window{
			{Name: "minute", Limit: 10, Period: time.Minute},
			{Name: "hour", Limit: 600, Period: time.Hour},
			{Name: "day", Limit: 1500, Period: 24 * time.Hour},
		},
		MinInterval:    3 * time.Second,
		InitialBackoff: 2 * time.Second,
		MaxBackoff:     60 * time.Second,
	}
}

func TestWindow(t *testing.T) {
	cfg := Config{Windows: []Window{{Name: "w", Limit: 2, Period: 10 * time.Second}}}
	run(t, cfg, []step{
		{at: 0, allowed: true},
		{at: 1 * time.Second, allowed: true},
		{at: 2 * time.Second, reason: ReasonWindow, window: "w", retryAt: 10 * time.Second},
		{at: 10*time.Second - 1, op: "decide", reason: ReasonWindow, retryAt: 10 * time.Second},
		{at: 10 * time.Second, allowed: true}, // the first admission left the window exactly now
		{at: 10 * time.Second, reason: ReasonWindow, retryAt: 11 * time.Second},
		{at: 11 * time.Second, allowed: true},
		{at: 30 * time.Second, allowed: true}, // idle gap: everything expired
		{at: 30 * time.Second, allowed: true},
		{at: 30 * time.Second, reason: ReasonWindow, retryAt: 40 * time.Second},
	})
}

func TestMinInterval(t *testing.T) {
	cfg := Config{MinInterval: 3 * time.Second}
	run(t, cfg, []step{
		{at: 0, allowed: true},
		{at: 1 * time.Second, reason: ReasonMinInterval, retryAt: 3 * time.Second},
		{at: 3 * time.Second, allowed: true},
		{at: 5 * time.Second, reason: ReasonMinInterval, retryAt: 6 * time.Second},
		{at: 100 * time.Second, allowed: true},
	})
}

func TestConcurrency(t *testing.T) {
	cfg := Config{MaxConcurrency: 2}
	run(t, cfg, []step{
		{at: 0, allowed: true},
		{at: 0, allowed: true},
		{at: 0, reason: ReasonConcurrency},
		{at: 1 * time.Second, op: "neutral"},
		{at: 1 * time.Second, allowed: true},
		{at: 1 * time.Second, reason: ReasonConcurrency},
	})
}

// TestOccupiedSlotsHoldWithoutWindows: a call occupied (a previous
// leader's, in flight) takes a slot, even past the limit, until released,
// and takes no place in the windows.
func TestOccupiedSlotsHoldWithoutWindows(t *testing.T) {
	l, err := New(Config{MaxConcurrency: 1, Windows: []Window{{Name: "minute", Period: time.Minute, Limit: 1}}})
	if err != nil {
		t.Fatal(err)
	}
	at := time.Date(2026, 12, 7, 9, 0, 0, 0, time.UTC)
	l.Occupy()
	l.Occupy()
	for i := range 2 {
		if d := l.Admit(at, Cost{}); d.Reason != ReasonConcurrency {
			t.Fatalf("admission with %d occupied slots of 1: %+v, want refused for concurrency", 2-i, d)
		}
		l.Release(at, Result{Outcome: OutcomeNeutral})
	}
	if d := l.Admit(at, Cost{}); !d.Allowed {
		t.Fatalf("admission once both occupied slots were released: %+v; the window must not count them", d)
	}
}

func TestBackoffDoublesToTheCapAndResetsOnSuccess(t *testing.T) {
	cfg := Config{InitialBackoff: 2 * time.Second, MaxBackoff: 60 * time.Second}
	s := time.Second
	run(t, cfg, []step{
		{at: 0, allowed: true},
		{at: 0, op: "fail"}, // 1st failure: 2s
		{at: 1 * s, reason: ReasonBackoff, retryAt: 2 * s},
		{at: 2 * s, allowed: true},
		{at: 2 * s, op: "fail"}, // 2nd: 4s
		{at: 3 * s, reason: ReasonBackoff, retryAt: 6 * s},
		{at: 6 * s, allowed: true},
		{at: 6 * s, op: "fail"}, // 3rd: 8s
		{at: 14 * s, allowed: true},
		{at: 14 * s, op: "fail"}, // 4th: 16s
		{at: 30 * s, allowed: true},
		{at: 30 * s, op: "fail"}, // 5th: 32s
		{at: 62 * s, allowed: true},
		{at: 62 * s, op: "fail"}, // 6th: 64s, capped at 60s
		{at: 63 * s, reason: ReasonBackoff, retryAt: 122 * s},
		{at: 122 * s, allowed: true},
		{at: 122 * s, op: "fail"}, // 7th: still 60s
		{at: 123 * s, reason: ReasonBackoff, retryAt: 182 * s},
		{at: 182 * s, allowed: true},
		{at: 183 * s, op: "ok"}, // success resets
		{at: 183 * s, allowed: true},
		{at: 183 * s, op: "fail"}, // back to 2s
		{at: 184 * s, reason: ReasonBackoff, retryAt: 185 * s},
	})
}

func TestNeutralOutcomeLeavesBackoffAlone(t *testing.T) {
	cfg := Config{InitialBackoff: 2 * time.Second, MaxBackoff: 60 * time.Second}
	run(t, cfg, []step{
		{at: 0, allowed: true},
		{at: 0, op: "neutral"},
		{at: 0, allowed: true},
	})
}

func TestRetryAfterHoldsEveryCall(t *testing.T) {
	cfg := Config{}
	s := time.Second
	run(t, cfg, []step{
		{at: 0, allowed: true},
		{at: 1 * s, allowed: true},
		{at: 1 * s, op: "retryafter", arg: 31 * s},
		{at: 2 * s, reason: ReasonRetryAfter, retryAt: 31 * s},
		{at: 2 * s, op: "ok"}, // a success that was in flight does not lift the server's hold
		{at: 30 * s, reason: ReasonRetryAfter, retryAt: 31 * s},
		{at: 31 * s, allowed: true},
	})
}

func TestTokensWindow(t *testing.T) {
	cfg := Config{Tokens: &Window{Name: "tokens", Limit: 100, Period: time.Minute}}
	s := time.Second
	run(t, cfg, []step{
		{at: 0, cost: 60, allowed: true},
		{at: 10 * s, cost: 30, allowed: true},
		{at: 20 * s, cost: 20, reason: ReasonTokens, window: "tokens", retryAt: 60 * s},
		{at: 20 * s, cost: 10, allowed: true},
		{at: 30 * s, cost: 101, reason: ReasonTooLarge},
		{at: 30 * s, cost: 100, reason: ReasonTokens, retryAt: 80 * s}, // all three must expire
		{at: 80 * s, cost: 100, allowed: true},
	})
}

func TestExtraTokensCountAtRelease(t *testing.T) {
	l, _ := New(Config{Tokens: &Window{Name: "tokens", Limit: 100, Period: time.Minute}})
	l.Admit(at(0), tok(10))
	l.Release(at(time.Second), Result{Outcome: OutcomeSuccess, Extra: tok(85)})
	if d := l.Decide(at(2*time.Second), tok(20)); d.Allowed || !d.RetryAt.Equal(at(61*time.Second)) {
		t.Fatalf("got %+v, want refusal until the extra tokens expire at 61s", d)
	}
	if got := l.Stats(at(2 * time.Second)).Tokens.Used; got != 95 {
		t.Fatalf("tokens used %d, want 95", got)
	}
}

// TestGeminiConfig runs the original report's Gemini limits: the minute
// window binds first, the min interval spaces calls, and the reason named
// is the constraint that holds longest.
func TestGeminiConfig(t *testing.T) {
	s := time.Second
	steps := []step{}
	for i := range 10 {
		steps = append(steps, step{at: time.Duration(3*i) * s, allowed: true})
	}
	steps = append(steps,
		step{at: 28 * s, reason: ReasonWindow, window: "minute", retryAt: 60 * s}, // holds longer than the 30s interval
		step{at: 30 * s, reason: ReasonWindow, window: "minute", retryAt: 60 * s},
		step{at: 60 * s, allowed: true},
		step{at: 61 * s, reason: ReasonWindow, window: "minute", retryAt: 63 * s}, // the 3s call leaves at 63s, as the interval ends: a tie goes to the window
		step{at: 63 * s, allowed: true},
		step{at: 64 * s, reason: ReasonWindow, window: "minute", retryAt: 66 * s},
		step{at: 65 * s, op: "decide", reason: ReasonWindow, retryAt: 66 * s},
		step{at: 66 * s, allowed: true},
		step{at: 67 * s, reason: ReasonWindow, window: "minute", retryAt: 69 * s},
	)
	run(t, geminiConfig(), steps)
}

func TestGeminiHourAndDayWindows(t *testing.T) {
	l, _ := New(geminiConfig())
	now := t0
	admitted := 0
	// Ask every second for 26 hours; record each admission.
	var perHour [27]int
	for i := 0; i < 26*3600; i++ {
		if d := l.Admit(now, Cost{}); d.Allowed {
			admitted++
			perHour[i/3600]++
			l.Release(now, Result{Outcome: OutcomeSuccess})
		}
		now = now.Add(time.Second)
	}
	// 10/min at 3s spacing gives 10 a minute, 600 an hour: the hour window
	// and the minute window agree; the day window stops the 1500th call.
	if perHour[0] != 600 || perHour[1] != 600 {
		t.Fatalf("first hours admitted %v, want 600 each", perHour[:3])
	}
	day := 0
	for h := range 24 {
		day += perHour[h]
	}
	if day != 1500 {
		t.Fatalf("admitted %d in the first 24h, want exactly 1500", day)
	}
}

func TestReservationRequired(t *testing.T) {
	l, _ := New(Config{RequireReservation: true})
	if d := l.Admit(at(0), Cost{}); d.Allowed || d.Reason != ReasonReservation {
		t.Fatalf("got %+v, want ReasonReservation", d)
	}
	l.Reserve(2, Cost{})
	for i := range 2 {
		if d := l.Admit(at(0), Cost{}); !d.Allowed {
			t.Fatalf("admission %d refused: %+v", i, d)
		}
	}
	if d := l.Admit(at(0), Cost{}); d.Reason != ReasonReservation {
		t.Fatalf("got %+v, want ReasonReservation once the block is spent", d)
	}
	l.Reserve(5, tok(50))
	l.Admit(at(0), tok(20))
	if c, tok := l.Unreserve(); c != 4 || tok.Total() != 30 {
		t.Fatalf("unreserved %d calls %d tokens, want 4 and 30", c, tok)
	}
}

func TestJitterShortensWithinBounds(t *testing.T) {
	for _, r := range []float64{0, 0.5, 0.999} {
		cfg := Config{InitialBackoff: 10 * time.Second, MaxBackoff: time.Minute, Jitter: 0.2, Rand: func() float64 { return r }}
		l, _ := New(cfg)
		l.Admit(at(0), Cost{})
		l.Release(at(0), Result{Outcome: OutcomeFailure})
		hold := l.Stats(at(0)).BackoffUntil.Sub(t0)
		want := 10*time.Second - time.Duration(float64(10*time.Second)*0.2*r)
		if hold != want || hold < 8*time.Second || hold > 10*time.Second {
			t.Fatalf("rand %v: hold %v, want %v within [8s, 10s]", r, hold, want)
		}
	}
}

func TestClockGoingBackwardsNeverLoosens(t *testing.T) {
	l, _ := New(Config{Windows: []Window{{Name: "w", Limit: 1, Period: 10 * time.Second}}})
	l.Admit(at(5*time.Second), Cost{})
	if d := l.Admit(at(1*time.Second), Cost{}); d.Allowed || !d.RetryAt.Equal(at(15*time.Second)) {
		t.Fatalf("got %+v, want refusal until 15s", d)
	}
}

func TestHugeBackoffCountDoesNotOverflow(t *testing.T) {
	l, _ := New(Config{InitialBackoff: time.Second, MaxBackoff: time.Minute})
	for range 200 {
		l.Release(at(0), Result{Outcome: OutcomeFailure})
	}
	if got := l.Stats(at(0)).BackoffUntil.Sub(t0); got != time.Minute {
		t.Fatalf("hold %v after 200 failures, want the 1m cap", got)
	}
}

func TestNewRejectsBadConfig(t *testing.T) {
	for name, cfg := range map[string]Config{
		"zero limit":         {Windows: []Window{{Name: "m", Limit: 0, Period: time.Minute}}},
		"zero period":        {Windows: []Window{{Name: "m", Limit: 1}}},
		"negative interval":  {MinInterval: -time.Second},
		"max below initial":  {InitialBackoff: 2 * time.Second, MaxBackoff: time.Second},
		"jitter above one":   {Jitter: 1.5},
		"negative conc":      {MaxConcurrency: -1},
		"bad tokens window":  {Tokens: &Window{Name: "t", Limit: -1, Period: time.Minute}},
		"limit out of range": {Windows: []Window{{Name: "m", Limit: maxRingCapacity + 1, Period: time.Minute}}},
	} {
		if _, err := New(cfg); err == nil {
			t.Errorf("%s: New accepted a bad config", name)
		}
	}
}

func TestStats(t *testing.T) {
	l, _ := New(geminiConfig())
	for i := range 8 {
		l.Admit(at(time.Duration(3*i)*time.Second), Cost{})
	}
	l.Release(at(25*time.Second), Result{Outcome: OutcomeFailure})
	st := l.Stats(at(25 * time.Second))
	if st.Windows[0].Used != 8 || st.Windows[0].Limit != 10 || st.Windows[1].Used != 8 || st.Windows[2].Used != 8 {
		t.Fatalf("windows %+v, want 8/10, 8/600, 8/1500", st.Windows)
	}
	if st.InFlight != 7 || st.ConsecutiveFailures != 1 || !st.BackoffUntil.Equal(at(27*time.Second)) {
		t.Fatalf("stats %+v", st)
	}
	if l.ConsecutiveFailures() != st.ConsecutiveFailures {
		t.Fatalf("ConsecutiveFailures %d, Stats says %d", l.ConsecutiveFailures(), st.ConsecutiveFailures)
	}
	if st.Next.Reason != ReasonBackoff {
		t.Fatalf("next %+v, want backoff", st.Next)
	}
	// A minute later the minute window is empty again.
	if got := l.Stats(at(90 * time.Second)).Windows[0].Used; got != 0 {
		t.Fatalf("minute window used %d after it passed, want 0", got)
	}
}

// TestConcurrentUse: many goroutines on one limiter never admit more than
// the window holds (run with -race, as make test does).
func TestConcurrentUse(t *testing.T) {
	l, _ := New(Config{Windows: []Window{{Name: "w", Limit: 100, Period: time.Hour}}, MaxConcurrency: 8})
	var wg sync.WaitGroup
	var admitted atomic.Int64
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 200 {
				now := at(time.Duration(g*200+i) * time.Millisecond)
				if l.Admit(now, Cost{}).Allowed {
					admitted.Add(1)
					l.Release(now, Result{Outcome: OutcomeSuccess})
				}
			}
		}()
	}
	wg.Wait()
	if admitted.Load() != 100 {
		t.Fatalf("admitted %d, want exactly the window's 100", admitted.Load())
	}
}

// TestReconfigureKeepsWhatWasLearned: lowering, raising and adding windows
// in place keeps the admission history, the calls in flight and the
// backoff (issue 13, item 2).
func TestReconfigureKeepsWhatWasLearned(t *testing.T) {
	l, err := New(Config{Windows: []Window{{Name: "minute", Limit: 10, Period: time.Minute}}, MaxConcurrency: 8,
		InitialBackoff: time.Second, MaxBackoff: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 6 {
		if d := l.Admit(at(time.Duration(i)*time.Second), Cost{}); !d.Allowed {
			t.Fatalf("admission %d refused: %+v", i, d)
		}
	}
	l.Release(at(6*time.Second), Result{Outcome: OutcomeFailure}) // 5 in flight, backoff to t0+7s

	// Lower the minute to 5: the six already sent fill it until the first expires.
	if err := l.Reconfigure(Config{Windows: []Window{{Name: "minute", Limit: 5, Period: time.Minute}}, MaxConcurrency: 8,
		InitialBackoff: time.Second, MaxBackoff: time.Minute}); err != nil {
		t.Fatal(err)
	}
	d := l.Decide(at(30*time.Second), Cost{})
	if d.Allowed || d.Reason != ReasonWindow || !d.RetryAt.Equal(at(61*time.Second)) {
		t.Fatalf("after lowering the minute to 5: %+v, want held by the window until t0+61s", d)
	}

	// Raise it to 100 and add an hour of 7: the hour counts the six too.
	if err := l.Reconfigure(Config{Windows: []Window{{Name: "minute", Limit: 100, Period: time.Minute}, {Name: "hour", Limit: 7, Period: time.Hour}},
		MaxConcurrency: 8, InitialBackoff: time.Second, MaxBackoff: time.Minute}); err != nil {
		t.Fatal(err)
	}
	if d := l.Decide(at(6500*time.Millisecond), Cost{}); d.Reason != ReasonBackoff {
		t.Fatalf("the failure backoff was forgotten: %+v", d)
	}
	if d := l.Admit(at(30*time.Second), Cost{}); !d.Allowed {
		t.Fatalf("the seventh call of the hour: %+v", d)
	}
	d = l.Decide(at(31*time.Second), Cost{})
	if d.Allowed || d.Window != "hour" || !d.RetryAt.Equal(at(time.Hour)) {
		t.Fatalf("the eighth call of the hour: %+v, want held by the hour until t0+1h", d)
	}
	// Six in flight now (five before, one more): concurrency 8 still has room, and
	// lowering it to 6 is full.
	if err := l.Reconfigure(Config{Windows: []Window{{Name: "minute", Limit: 100, Period: time.Minute}}, MaxConcurrency: 6}); err != nil {
		t.Fatal(err)
	}
	if d := l.Decide(at(40*time.Second), Cost{}); d.Reason != ReasonConcurrency {
		t.Fatalf("six calls in flight under a concurrency of 6: %+v", d)
	}
	if err := l.Reconfigure(Config{Windows: []Window{{Name: "minute", Limit: 0, Period: time.Minute}}}); err == nil {
		t.Fatal("a window of limit 0 was accepted")
	}
}

// tok is a cost of n input tokens.
func tok(n int64) Cost { return Cost{Input: n} }

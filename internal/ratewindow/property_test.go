package ratewindow

import (
	"math/rand/v2"
	"testing"
	"time"
)

// randomConfig draws a configuration with small limits so windows fill often.
func randomConfig(r *rand.Rand) Config {
	cfg := Config{}
	periods := []time.Duration{time.Second, 10 * time.Second, time.Minute, time.Hour, 24 * time.Hour}
	for i, n := 0, 1+r.IntN(3); i < n; i++ {
		cfg.Windows = append(cfg.Windows, Window{
			Name:   periods[r.IntN(len(periods))].String(),
			Limit:  int64(1 + r.IntN(12)),
			Period: periods[r.IntN(len(periods))],
		})
	}
	if r.IntN(2) == 0 {
		cfg.MinInterval = time.Duration(r.IntN(5000)) * time.Millisecond
	}
	if r.IntN(2) == 0 {
		cfg.MaxConcurrency = 1 + r.IntN(3)
	}
	if r.IntN(2) == 0 {
		cfg.InitialBackoff = time.Duration(1+r.IntN(3)) * time.Second
		cfg.MaxBackoff = cfg.InitialBackoff * time.Duration(1+r.IntN(40))
	}
	if r.IntN(3) == 0 {
		cfg.Tokens = &Window{Name: "tokens", Limit: int64(50 + r.IntN(200)), Period: time.Minute}
	}
	return cfg
}

// randomGap draws the time to the next event: bursts, steady traffic, idle
// gaps and, rarely, whole days.
func randomGap(r *rand.Rand) time.Duration {
	switch p := r.IntN(100); {
	case p < 30:
		return 0
	case p < 80:
		return time.Duration(r.Int64N(int64(5 * time.Second)))
	case p < 97:
		return time.Duration(r.Int64N(int64(10 * time.Minute)))
	default:
		return time.Duration(r.Int64N(int64(50 * time.Hour)))
	}
}

// TestPropertyAgainstModel replays random schedules against the Limiter and
// the brute-force model. The Limiter must agree with the model on every
// decision: admitting when the model would refuse breaks a window; refusing
// when every constraint had room breaks work conservation. Every RetryAt
// must be exact: allowed at that instant, refused a nanosecond before.
func TestPropertyAgainstModel(t *testing.T) {
	trials, steps := 300, 1500
	if testing.Short() {
		trials = 50
	}
	for trial := range trials {
		r := rand.New(rand.NewPCG(uint64(trial), 0x11a))
		cfg := randomConfig(r)
		l, err := New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		m := &model{cfg: cfg}
		now := t0.UnixNano()
		refusals := 0
		for step := range steps {
			now += int64(randomGap(r))
			if r.IntN(4) == 0 { // land on whole seconds, where window edges meet
				now -= now % int64(time.Second)
				now = max(now, m.last())
			}
			if m.inFlight > 0 && r.IntN(3) == 0 {
				res := Result{Outcome: Outcome(r.IntN(3))}
				if r.IntN(10) == 0 {
					res.RetryAfter = time.Unix(0, now+r.Int64N(int64(time.Minute)))
				}
				l.Release(time.Unix(0, now), res)
				m.release(now, res)
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
			if d.Allowed {
				m.admit(now, cost)
				continue
			}
			refusals++
			if d.RetryAt.IsZero() {
				continue // concurrency: only a release helps
			}
			ra := d.RetryAt.UnixNano()
			if m.allows(ra-1, cost) {
				t.Fatalf("trial %d step %d: RetryAt %v is not the earliest: the model allows a nanosecond before (%v)", trial, step, d.RetryAt, d.Reason)
			}
			saved := m.inFlight // concurrency is not a time constraint
			m.inFlight = 0
			modelAllows := m.allows(ra, cost)
			m.inFlight = saved
			if !modelAllows {
				t.Fatalf("trial %d step %d: RetryAt %v (%v) is too early: the model still refuses then", trial, step, d.RetryAt, d.Reason)
			}
			if got := l.Decide(d.RetryAt, tok(cost)); !got.Allowed && got.Reason != ReasonConcurrency {
				t.Fatalf("trial %d step %d: refused again at its own RetryAt %v: %+v", trial, step, d.RetryAt, got)
			}
		}
		if v := m.violations(); len(v) > 0 {
			t.Fatalf("trial %d: %v", trial, v[0])
		}
		if refusals == 0 {
			t.Fatalf("trial %d never refused: the schedule did not exercise the limits", trial)
		}
	}
}

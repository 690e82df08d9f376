package ratewindow

import (
	"testing"
	"time"
)

// TestSetScaleLowersRequestLimits: a learned scale lowers every request
// window and the concurrency, never below one, and leaves the tokens
// window at its declared limit; scale 1 is the declared limits again.
func TestSetScaleLowersRequestLimits(t *testing.T) {
	t0 := time.Date(2026, 12, 7, 9, 0, 0, 0, time.UTC)
	minute := []Window{{Name: "minute", Limit: 10, Period: time.Minute}}
	cases := []struct {
		name     string
		cfg      Config
		scale    float64
		cost     int64
		admitted int
		reason   Reason
	}{
		{"a window of 10 at half", Config{Windows: minute}, 0.5, 0, 5, ReasonWindow},
		{"never under one", Config{Windows: minute}, 0.01, 0, 1, ReasonWindow},
		{"the declared limits again", Config{Windows: minute}, 1, 0, 10, ReasonWindow},
		{"concurrency of 8 at a quarter", Config{MaxConcurrency: 8}, 0.25, 0, 2, ReasonConcurrency},
		{"the tokens window keeps its limit", Config{Tokens: &Window{Name: "tokens", Limit: 1000, Period: time.Minute}}, 0.1, 100, 10, ReasonTokens},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			l, err := New(c.cfg)
			if err != nil {
				t.Fatal(err)
			}
			l.SetScale(c.scale)
			n := 0
			for ; n < 100 && l.Admit(t0, tok(c.cost)).Allowed; n++ {
			}
			if d := l.Admit(t0, tok(c.cost)); n != c.admitted || d.Reason != c.reason {
				t.Fatalf("admitted %d, then refused by %v; want %d, then %v", n, d.Reason, c.admitted, c.reason)
			}
		})
	}
}

func TestSentInAndLearnedStats(t *testing.T) {
	t0 := time.Date(2026, 12, 7, 9, 0, 0, 0, time.UTC)
	l, err := New(Config{Windows: []Window{{Name: "minute", Limit: 100, Period: time.Minute}, {Name: "hour", Limit: 1000, Period: time.Hour}},
		MaxConcurrency: 50})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 10 {
		if !l.Admit(t0.Add(time.Duration(i)*time.Second), Cost{}).Allowed {
			t.Fatal("refused")
		}
	}
	if sent, allowed := l.SentIn(t0.Add(2*time.Second), t0.Add(7*time.Second)); sent != 4 || allowed != 100 {
		t.Fatalf("SentIn = %d of %d, want the 4 calls strictly between and the minute's 100", sent, allowed)
	}
	if s := l.Stats(t0); s.Windows[0].Learned != 0 || s.LearnedConcurrency != 0 {
		t.Fatalf("learned limits before any scale: %+v", s)
	}
	l.SetScale(0.3)
	if _, allowed := l.SentIn(t0, t0); allowed != 30 {
		t.Fatalf("allowed %d at 0.3, want 30", allowed)
	}
	s := l.Stats(t0.Add(10 * time.Second))
	if s.Windows[0].Learned != 30 || s.Windows[1].Learned != 300 || s.Windows[0].Limit != 100 || s.LearnedConcurrency != 15 {
		t.Fatalf("stats at 0.3: %+v", s)
	}
}

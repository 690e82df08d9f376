package ratewindow

import (
	"testing"
	"time"
)

// TestAdmitKeepingLeavesHeadroom: calls admitted keeping a share admit up to
// what the share leaves of each limit; calls admitted with Admit then take
// the rest, and no more than the limit.
func TestAdmitKeepingLeavesHeadroom(t *testing.T) {
	t0 := time.Date(2026, 12, 6, 9, 0, 0, 0, time.UTC)
	cases := []struct {
		name              string
		cfg               Config
		cost              int64
		keep              int
		keeping, rest     int // admitted keeping the share, then by Admit
		reasonWhenKeeping Reason
	}{
		{"a window of 10, 20% kept", Config{Windows: []Window{{Name: "minute", Limit: 10, Period: time.Minute}}}, 0, 20, 8, 2, ReasonWindow},
		{"the share rounds down what is kept", Config{Windows: []Window{{Name: "minute", Limit: 1, Period: time.Minute}}}, 0, 50, 1, 0, ReasonWindow},
		{"nothing kept", Config{Windows: []Window{{Name: "minute", Limit: 5, Period: time.Minute}}}, 0, 0, 5, 0, ReasonWindow},
		{"tokens: 1,000 a minute, 30% kept, 100 a call", Config{Tokens: &Window{Name: "tokens", Limit: 1000, Period: time.Minute}}, 100, 30, 7, 3, ReasonTokens},
		{"concurrency of 4, 50% kept", Config{MaxConcurrency: 4}, 0, 50, 2, 2, ReasonConcurrency},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			l, err := New(c.cfg)
			if err != nil {
				t.Fatal(err)
			}
			n := 0
			for ; n < 100 && l.AdmitKeeping(t0, tok(c.cost), c.keep).Allowed; n++ {
			}
			if n != c.keeping {
				t.Fatalf("admitted %d keeping %d%%, want %d", n, c.keep, c.keeping)
			}
			if d := l.AdmitKeeping(t0, tok(c.cost), c.keep); d.Reason != c.reasonWhenKeeping {
				t.Fatalf("refused by %v, want %v", d.Reason, c.reasonWhenKeeping)
			}
			m := 0
			for ; m < 100 && l.Admit(t0, tok(c.cost)).Allowed; m++ {
			}
			if m != c.rest {
				t.Fatalf("then admitted %d with Admit, want %d (the headroom)", m, c.rest)
			}
		})
	}
}

// TestAdmitKeepingRetryAtIsWhenTheShareFrees: a call refused for the kept
// share is told when the share frees, not when the whole window does.
func TestAdmitKeepingRetryAtIsWhenTheShareFrees(t *testing.T) {
	t0 := time.Date(2026, 12, 6, 9, 0, 0, 0, time.UTC)
	l, _ := New(Config{Windows: []Window{{Name: "minute", Limit: 4, Period: time.Minute}}})
	for i := range 2 { // 50% kept: two may go, at 0 s and 10 s
		if !l.AdmitKeeping(t0.Add(time.Duration(i)*10*time.Second), Cost{}, 50).Allowed {
			t.Fatalf("call %d refused", i)
		}
	}
	d := l.AdmitKeeping(t0.Add(20*time.Second), Cost{}, 50)
	if d.Allowed || !d.RetryAt.Equal(t0.Add(time.Minute)) {
		t.Fatalf("decision %+v, want refused until the first call leaves the window at %v", d, t0.Add(time.Minute))
	}
}

package ratewindow

import (
	"testing"
	"time"
)

// TestUnadmit: a call unadmitted leaves the request window, the token
// windows and its slot as if never admitted; calls admitted around it stay
// counted; an unadmit whose entry is gone (another time) frees the slot
// only.
func TestUnadmit(t *testing.T) {
	t0 := time.Date(2026, 12, 7, 9, 0, 0, 0, time.UTC)
	l, err := New(Config{
		Windows:        []Window{{Name: "minute", Limit: 3, Period: time.Minute}},
		Tokens:         &Window{Name: "tokens", Limit: 300, Period: time.Minute},
		TokenWindows:   []TokenWindow{{Window: Window{Name: "output", Limit: 150, Period: time.Minute}, Kind: TokensOutput}},
		MaxConcurrency: 5,
	})
	if err != nil {
		t.Fatal(err)
	}
	cost := Cost{Input: 50, Output: 50}
	for i := range 3 {
		if d := l.Admit(t0.Add(time.Duration(i)*time.Millisecond), cost); !d.Allowed {
			t.Fatalf("call %d refused: %+v", i, d)
		}
	}
	if d := l.Admit(t0.Add(3*time.Millisecond), cost); d.Allowed {
		t.Fatal("a fourth call admitted in a window of 3")
	}
	l.Unadmit(t0.Add(time.Millisecond), cost) // the middle one
	s := l.Stats(t0.Add(4 * time.Millisecond))
	if s.Windows[0].Used != 2 || s.Tokens.Used != 200 || s.InFlight != 2 {
		t.Fatalf("after unadmitting one of 3: %+v, want 2 calls, 200 tokens, 2 in flight", s)
	}
	d := l.Admit(t0.Add(4*time.Millisecond), cost)
	if !d.Allowed {
		t.Fatalf("the unadmitted call's place was not given back: %+v", d)
	}
	// The window now frees when the first call leaves it, not the second.
	if d := l.Decide(t0.Add(5*time.Millisecond), cost); d.Allowed || !d.RetryAt.Equal(t0.Add(time.Minute)) {
		t.Fatalf("after the window refilled: %+v, want it to free a minute after the first call", d)
	}
	l.Unadmit(t0.Add(time.Hour), cost) // no such entry: the slot alone comes back
	if s := l.Stats(t0.Add(5 * time.Millisecond)); s.Windows[0].Used != 3 || s.Tokens.Used != 300 || s.InFlight != 2 {
		t.Fatalf("an unadmit of no entry changed the windows: %+v", s)
	}
}

package ratewindow

import (
	"testing"
	"time"
)

// TestIntervalCountsFromTheWrite: with a minimum interval, a call the
// caller writes itself (Writing) holds the next admission until it is
// written (Wrote), and the interval counts from the write.
func TestIntervalCountsFromTheWrite(t *testing.T) {
	t0 := time.Date(2026, 12, 6, 9, 0, 0, 0, time.UTC)
	ms := func(n int) time.Time { return t0.Add(time.Duration(n) * time.Millisecond) }
	l, err := New(Config{MinInterval: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if d := l.Admit(t0, Cost{}); !d.Allowed {
		t.Fatalf("first admission refused: %+v", d)
	}
	l.Writing()
	for _, step := range []struct {
		at      time.Time
		wrote   *time.Time
		allowed bool
		retryAt time.Time
	}{
		// Not written yet: held, though the interval from the admission passed.
		{at: ms(150), allowed: false, retryAt: ms(250)},
		// Written at 120ms: the interval runs to 220ms.
		{at: ms(150), wrote: ptr(ms(120)), allowed: false, retryAt: ms(220)},
		{at: ms(219), allowed: false, retryAt: ms(220)},
		{at: ms(220), allowed: true},
	} {
		if step.wrote != nil {
			l.Wrote(*step.wrote)
		}
		d := l.Admit(step.at, Cost{})
		if d.Allowed != step.allowed || (!d.Allowed && (d.Reason != ReasonMinInterval || !d.RetryAt.Equal(step.retryAt))) {
			t.Fatalf("at %v: %+v, want allowed %v until %v", step.at.Sub(t0), d, step.allowed, step.retryAt.Sub(t0))
		}
		if d.Allowed {
			l.Release(step.at, Result{Outcome: OutcomeSuccess})
		}
	}
	// A call not announced with Writing (a gateway's, written elsewhere)
	// holds nothing beyond the interval from its admission.
	if d := l.Admit(ms(320), Cost{}); !d.Allowed {
		t.Fatalf("the interval after an unannounced call: %+v", d)
	}
}

func ptr[T any](v T) *T { return &v }

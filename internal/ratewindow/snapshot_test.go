package ratewindow

import (
	"errors"
	"math/rand/v2"
	"testing"
	"time"
)

// TestSnapshotContinuesExactly: a Limiter restored from a snapshot answers
// every later call exactly as the one that took it.
func TestSnapshotContinuesExactly(t *testing.T) {
	for trial := range 100 {
		r := rand.New(rand.NewPCG(uint64(trial), 0x5a))
		cfg := randomConfig(r)
		cfg.MaxConcurrency = 0 // in-flight calls do not survive a restart
		a, _ := New(cfg)
		now := t0.UnixNano()
		drive := func(l *Limiter, rr *rand.Rand, n int, check func(Decision)) {
			for range n {
				now += int64(randomGap(rr))
				cost := int64(1 + rr.IntN(30))
				if cfg.Tokens == nil {
					cost = 0
				}
				d := l.Admit(time.Unix(0, now), tok(cost))
				if d.Allowed && rr.IntN(4) == 0 {
					l.Release(time.Unix(0, now), Result{Outcome: Outcome(rr.IntN(3))})
				}
				check(d)
			}
		}
		drive(a, r, 500, func(Decision) {})
		snap := a.Snapshot(time.Unix(0, now), nil)
		b, err := Restore(cfg, snap, time.Unix(0, now))
		if err != nil {
			t.Fatalf("trial %d: %v", trial, err)
		}
		// Drive both with the same random stream from here.
		start := now
		var want []Decision
		drive(a, rand.New(rand.NewPCG(uint64(trial), 1)), 500, func(d Decision) { want = append(want, d) })
		now = start
		i := 0
		drive(b, rand.New(rand.NewPCG(uint64(trial), 1)), 500, func(d Decision) {
			if d.Allowed != want[i].Allowed || !d.RetryAt.Equal(want[i].RetryAt) || d.Reason != want[i].Reason || d.Window != want[i].Window {
				t.Fatalf("trial %d call %d after restore: got %+v, want %+v", trial, i, d, want[i])
			}
			i++
		})
	}
}

// TestReservationSurvivesCrash: slots reserved and persisted before a crash
// count as spent after it, so the window holds even though the calls made
// after the snapshot were never written down.
func TestReservationSurvivesCrash(t *testing.T) {
	cfg := Config{Windows: []Window{{Name: "minute", Limit: 10, Period: time.Minute}}, RequireReservation: true}
	l, _ := New(cfg)
	l.Reserve(5, Cost{})
	for i := range 5 {
		l.Admit(at(time.Duration(i)*time.Second), Cost{})
	}
	l.Reserve(5, Cost{}) // the next block, persisted before it is spent
	snap := l.Snapshot(at(5*time.Second), nil)
	for i := range 3 { // spent, then the process dies before the next snapshot
		l.Admit(at(time.Duration(6+i)*time.Second), Cost{})
	}

	restored, err := Restore(cfg, snap, at(20*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	st := restored.Stats(at(20 * time.Second))
	if st.Windows[0].Used != 10 {
		t.Fatalf("restored window holds %d, want 10 (5 persisted + 5 reserved)", st.Windows[0].Used)
	}
	restored.Reserve(100, Cost{})
	// Real history: calls at 0..4s and 6..8s. The window must refuse until
	// the reserved phantoms (stamped at 20s) leave: never earlier than reality.
	d := restored.Admit(at(21*time.Second), Cost{})
	if d.Allowed {
		t.Fatal("admitted right after restart although the real window was nearly full")
	}
	if d.RetryAt.Before(at(60 * time.Second)) {
		t.Fatalf("retry at %v: before the real history allows a call", d.RetryAt.Sub(t0))
	}
	if calls, _ := restored.Reserved(); calls != 100 {
		t.Fatalf("reservation after restore %d, want only the new one", calls)
	}
}

func TestRestoreRejectsCorruptInput(t *testing.T) {
	l, _ := New(geminiConfig())
	for i := range 20 {
		l.Admit(at(time.Duration(i)*3*time.Second), Cost{})
	}
	good := l.Snapshot(at(time.Minute), nil)
	flip := append([]byte(nil), good...)
	flip[len(flip)/2] ^= 0x40
	wrongVersion := append([]byte(nil), good...)
	wrongVersion[2] = 9
	cases := map[string][]byte{
		"empty":         nil,
		"short":         []byte("RW"),
		"foreign":       []byte(`{"kind":"LLMProvider"}`),
		"flipped bit":   flip,
		"truncated":     good[:len(good)-5],
		"wrong version": wrongVersion,
	}
	for name, data := range cases {
		if _, err := Restore(geminiConfig(), data, at(time.Minute)); !errors.Is(err, ErrCorrupt) {
			t.Errorf("%s: got %v, want ErrCorrupt", name, err)
		}
	}
	if _, err := Restore(geminiConfig(), good, at(time.Minute)); err != nil {
		t.Fatalf("good snapshot refused: %v", err)
	}
}

// TestSnapshotSize bounds the encoding: exact for the original report's
// Gemini limits after a full day, bucketed for a million a day.
func TestSnapshotSize(t *testing.T) {
	l := fullGeminiDay()
	now := t0.Add(1500 * 57 * time.Second)
	snap := l.Snapshot(now, nil)
	if len(snap) > 12<<10 {
		t.Fatalf("1500/day snapshot is %d bytes, want under 12 KiB", len(snap))
	}
	t.Logf("Gemini 10/min 600/h 1500/day, full day: %d bytes", len(snap))

	big := Config{Windows: []Window{{Name: "minute", Limit: 10_000, Period: time.Minute}, {Name: "day", Limit: 1_000_000, Period: 24 * time.Hour}}}
	l, _ = New(big)
	now = t0
	for range 1_000_000 {
		l.Admit(now, Cost{})
		now = now.Add(86 * time.Millisecond)
	}
	snap = l.Snapshot(now, nil)
	if len(snap) > 64<<10 {
		t.Fatalf("1M/day snapshot is %d bytes, want under 64 KiB", len(snap))
	}
	t.Logf("10k/min + 1M/day, full day: %d bytes", len(snap))

	// Bucketing rounds times up: the restored limiter never admits a call
	// the exact one refuses.
	restored, err := Restore(big, snap, now)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 5000 {
		q := now.Add(time.Duration(i) * 20 * time.Second)
		if restored.Decide(q, Cost{}).Allowed && !l.Decide(q, Cost{}).Allowed {
			t.Fatalf("restored limiter admits at %v where the exact one refuses", q.Sub(now))
		}
	}
}

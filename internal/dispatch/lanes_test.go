package dispatch

import (
	"context"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/go-logr/logr"
	clocktesting "k8s.io/utils/clock/testing"

	"github.com/llmquota/llmquota/internal/cost"
	"github.com/llmquota/llmquota/internal/provider"
)

func TestMinuteCounter(t *testing.T) {
	t0 := time.Date(2026, 12, 7, 9, 0, 0, 0, time.UTC)
	cases := []struct {
		name      string
		at        []time.Duration // answered calls of 10 tokens, after t0
		refusedAt []time.Duration
		now       time.Duration
		want      LaneStats
	}{
		{name: "empty", now: 0},
		{name: "same second", at: []time.Duration{0, 500 * time.Millisecond}, now: 900 * time.Millisecond, want: LaneStats{Calls: 2, Tokens: 20}},
		{name: "the whole minute", at: []time.Duration{0, 30 * time.Second, 59 * time.Second}, now: 59 * time.Second, want: LaneStats{Calls: 3, Tokens: 30}},
		{name: "a minute old leaves", at: []time.Duration{0, 30 * time.Second}, now: 60 * time.Second, want: LaneStats{Calls: 1, Tokens: 10}},
		{name: "reused bucket starts empty", at: []time.Duration{0, 60 * time.Second}, now: 60 * time.Second, want: LaneStats{Calls: 1, Tokens: 10}},
		{name: "all old", at: []time.Duration{0, 10 * time.Second}, now: 5 * time.Minute},
		{name: "refusals", at: []time.Duration{time.Second}, refusedAt: []time.Duration{2 * time.Second, 3 * time.Second}, now: 10 * time.Second,
			want: LaneStats{Calls: 1, Tokens: 10, Refused: 2}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var m minuteCounter
			for _, at := range c.at {
				m.answered(t0.Add(at), 10)
			}
			for _, at := range c.refusedAt {
				m.refusal(t0.Add(at))
			}
			if got := m.sum(t0.Add(c.now)); got != c.want {
				t.Fatalf("sum = %+v, want %+v", got, c.want)
			}
		})
	}
}

// TestMinuteCounterMatchesACount: whatever the times, the counter's sum is
// a plain count of the events whose second lies in the minute ending now.
func TestMinuteCounterMatchesACount(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 9))
	t0 := time.Date(2026, 12, 7, 9, 0, 0, 0, time.UTC)
	for trial := range 200 {
		var m minuteCounter
		var events []time.Time
		at := t0
		for range rng.IntN(500) {
			at = at.Add(time.Duration(rng.Int64N(int64(3 * time.Second))))
			m.answered(at, 1)
			events = append(events, at)
		}
		now := at.Add(time.Duration(rng.Int64N(int64(90 * time.Second))))
		want := int64(0)
		for _, e := range events {
			if e.Unix() > now.Unix()-60 {
				want++
			}
		}
		if got := m.sum(now); got.Calls != want || got.Tokens != want {
			t.Fatalf("trial %d: sum %+v, want %d calls", trial, got, want)
		}
	}
}

// TestStatsShowBothLanes: a gateway call and a batch item each count in
// their own lane, with what waits and what is in flight.
func TestStatsShowBothLanes(t *testing.T) {
	fc := clocktesting.NewFakeClock(time.Date(2026, 12, 7, 9, 0, 0, 0, time.UTC))
	d, err := New(Config{Name: "p", Client: &stubClient{}, Limits: minuteLimit(2, 10)}, nil, fc, logr.Discard(), nil)
	if err != nil {
		t.Fatal(err)
	}
	col := newCollector(1)
	d.Submit(Batch{Key: "team-a/b", Namespace: "team-a", Size: 1, Items: items("x", 1), OnResult: col.add})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go d.Run(ctx)
	col.settled(t, 1) // the window has room for one more call

	g, _, err := d.Acquire(ctx, Ask{Namespace: "team-b", MaxTokens: 16})
	if err != nil || g == nil {
		t.Fatalf("Acquire: %v %v", g, err)
	}
	if _, dec, _ := d.Acquire(ctx, Ask{Namespace: "team-b", MaxTokens: 16}); dec.Allowed {
		t.Fatal("a third call in a window of two was granted")
	}
	d.Submit(Batch{Key: "team-a/c", Namespace: "team-a", Size: 1, Items: items("y", 2), OnResult: col.add}) // waits: the window is full
	s := d.Stats(cost.Thresholds{})
	if want := (LaneStats{Refused: 1, InFlight: 1}); s.Interactive != want {
		t.Errorf("interactive while the grant is out = %+v, want %+v", s.Interactive, want)
	}
	g.Done(&provider.Response{Text: "ok", InputTokens: 30, OutputTokens: 40}, nil)

	s = d.Stats(cost.Thresholds{})
	if want := (LaneStats{Calls: 1, Tokens: 70, Refused: 1}); s.Interactive != want {
		t.Errorf("interactive = %+v, want %+v", s.Interactive, want)
	}
	if want := (LaneStats{Calls: 1, Tokens: 2, Waiting: 2}); s.Batch != want {
		t.Errorf("batch = %+v, want %+v", s.Batch, want)
	}
	d.Remove("team-a/c") // so that no batch item is sent in the next minute
	fc.Step(61 * time.Second)
	if s := d.Stats(cost.Thresholds{}); s.Interactive.Calls != 0 || s.Batch.Calls != 0 {
		t.Errorf("a minute later: interactive %+v, batch %+v; want no calls counted", s.Interactive, s.Batch)
	}
}

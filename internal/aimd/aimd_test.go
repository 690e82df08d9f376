package aimd

import (
	"math"
	"math/rand/v2"
	"testing"
	"time"
)

var t0 = time.Date(2026, 12, 7, 9, 0, 0, 0, time.UTC)

func TestRateLimited(t *testing.T) {
	cases := []struct {
		name                string
		scale               float64
		sentBefore, allowed int64
		want                float64
	}{
		{"declared twice the real limit: cut to what the provider took", 1, 60, 120, 0.5},
		{"a little over: cut a little", 0.55, 60, 66, 0.5},
		{"far under the limit: halved at most", 1, 3, 600, 0.5},
		{"no request windows: Decrease", 1, 0, 0, DefaultDecrease},
		{"never under the floor", 0.15, 1, 100, DefaultFloor},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			l := New(Config{}, t0)
			l.scale = c.scale
			l.RateLimited(t0.Add(time.Second), t0, c.sentBefore, c.allowed)
			if math.Abs(l.Scale()-c.want) > 1e-9 {
				t.Fatalf("scale %v, want %v", l.Scale(), c.want)
			}
		})
	}
}

// TestOneCutPerRound: the 429s of calls sent before a cut are answers to
// the traffic the cut accounted for; only a call sent after it cuts again.
func TestOneCutPerRound(t *testing.T) {
	l := New(Config{}, t0)
	if !l.RateLimited(t0.Add(time.Second), t0, 60, 120) {
		t.Fatal("the first 429 changed nothing")
	}
	for i := range 10 {
		if l.RateLimited(t0.Add(2*time.Second), t0.Add(time.Duration(i)*time.Millisecond), 0, 120) {
			t.Fatalf("a 429 for a call sent before the cut cut again (to %v)", l.Scale())
		}
	}
	if !l.RateLimited(t0.Add(3*time.Second), t0.Add(2*time.Second), 10, 60) || l.Scale() != 0.25 {
		t.Fatalf("a 429 for a call sent after the cut: scale %v, want 0.25", l.Scale())
	}
}

func TestTickAddsBackPerCleanPeriod(t *testing.T) {
	l := New(Config{Period: time.Minute}, t0)
	if l.Tick(t0.Add(time.Hour)) || l.Scale() != 1 || !l.NextIncrease().IsZero() {
		t.Fatal("a learner at the declared limits rose")
	}
	l.RateLimited(t0.Add(time.Hour), t0.Add(time.Hour), 30, 120) // 0.5
	steps := []struct {
		after time.Duration
		want  float64
	}{{59 * time.Second, 0.5}, {time.Minute, 0.55}, {3 * time.Minute, 0.65}, {30 * time.Minute, 1}}
	for _, s := range steps {
		l.Tick(t0.Add(time.Hour + s.after))
		if math.Abs(l.Scale()-s.want) > 1e-9 {
			t.Fatalf("%v after the cut: scale %v, want %v", s.after, l.Scale(), s.want)
		}
	}
}

// TestScaleStaysInBounds: whatever the 429s and ticks, the scale stays
// within [Floor, 1].
func TestScaleStaysInBounds(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for trial := range 200 {
		l := New(Config{}, t0)
		now := t0
		for range 500 {
			now = now.Add(time.Duration(rng.Int64N(int64(2 * time.Minute))))
			if rng.IntN(2) == 0 {
				allowed := rng.Int64N(200)
				l.RateLimited(now, now.Add(-time.Duration(rng.Int64N(int64(time.Minute)))), rng.Int64N(allowed+1), allowed)
			} else {
				l.Tick(now)
			}
			if s := l.Scale(); s < DefaultFloor || s > 1 || math.IsNaN(s) {
				t.Fatalf("trial %d: scale %v out of [%v, 1]", trial, s, DefaultFloor)
			}
		}
	}
}

func FuzzRateLimited(f *testing.F) {
	f.Add(0.7, int64(10), int64(20), int64(5))
	f.Fuzz(func(t *testing.T, scale float64, sentBefore, allowed, sentAgo int64) {
		if math.IsNaN(scale) || scale < DefaultFloor || scale > 1 || sentBefore < 0 || allowed < 0 {
			t.Skip("outside the learner's domain: a scale in [floor, 1] and counts that are not negative")
		}
		l := New(Config{}, t0)
		l.scale = scale
		l.RateLimited(t0, t0.Add(-time.Duration(sentAgo)), sentBefore, allowed)
		if s := l.Scale(); s < DefaultFloor || s > scale || s < scale*MaxCut-1e-12 && s != DefaultFloor {
			t.Fatalf("scale %v after a 429 from %v, want within [max(floor, %v), %v]", s, scale, scale*MaxCut, scale)
		}
	})
}

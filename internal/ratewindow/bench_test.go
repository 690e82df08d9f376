package ratewindow

import (
	"fmt"
	"runtime"
	"testing"
	"time"

	"golang.org/x/time/rate"
)

// The original report's Gemini config: three exact windows and a 3s interval.
// Each iteration advances time by 1ms, so most calls are refused (the hot
// path when a dispatcher asks "may I send now?") and some are admitted.

func BenchmarkAdmitGemini(b *testing.B) {
	l, _ := New(geminiConfig())
	now := t0
	b.ReportAllocs()
	for b.Loop() {
		if l.Admit(now, Cost{}).Allowed {
			l.Release(now, Result{Outcome: OutcomeSuccess})
		}
		now = now.Add(time.Millisecond)
	}
}

// BenchmarkAdmitGeminiNow reads the wall clock each call, as rate.Limiter.Allow does.
func BenchmarkAdmitGeminiNow(b *testing.B) {
	l, _ := New(geminiConfig())
	b.ReportAllocs()
	for b.Loop() {
		now := time.Now()
		if l.Admit(now, Cost{}).Allowed {
			l.Release(now, Result{Outcome: OutcomeSuccess})
		}
	}
}

// BenchmarkAdmitGeminiParallel contends on one limiter from every P.
func BenchmarkAdmitGeminiParallel(b *testing.B) {
	l, _ := New(geminiConfig())
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			now := time.Now()
			if l.Admit(now, Cost{}).Allowed {
				l.Release(now, Result{Outcome: OutcomeSuccess})
			}
		}
	})
}

// BenchmarkAdmitAlwaysAdmitted measures the admitting path: generous limits,
// every call recorded in the ring.
func BenchmarkAdmitAlwaysAdmitted(b *testing.B) {
	l, _ := New(Config{Windows: []Window{
		{Name: "minute", Limit: 1 << 20, Period: time.Minute},
		{Name: "day", Limit: 1 << 22, Period: 24 * time.Hour},
	}})
	now := t0
	b.ReportAllocs()
	for b.Loop() {
		l.Admit(now, Cost{})
		l.Release(now, Result{Outcome: OutcomeSuccess})
		now = now.Add(100 * time.Microsecond)
	}
}

// Baselines: golang.org/x/time/rate, one token bucket at 10/min, burst 10.
// It enforces one approximate limit where the Limiter enforces three exact
// windows plus an interval.

func BenchmarkBaselineRateAllow(b *testing.B) {
	l := rate.NewLimiter(rate.Every(6*time.Second), 10)
	b.ReportAllocs()
	for b.Loop() {
		l.Allow()
	}
}

func BenchmarkBaselineRateAllowN(b *testing.B) {
	l := rate.NewLimiter(rate.Every(6*time.Second), 10)
	now := t0
	b.ReportAllocs()
	for b.Loop() {
		l.AllowN(now, 1)
		now = now.Add(time.Millisecond)
	}
}

func BenchmarkBaselineRateAllowParallel(b *testing.B) {
	l := rate.NewLimiter(rate.Every(6*time.Second), 10)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			l.Allow()
		}
	})
}

// BenchmarkSnapshot encodes a full day of the Gemini config.
func BenchmarkSnapshot(b *testing.B) {
	l := fullGeminiDay()
	buf := make([]byte, 0, 16<<10)
	now := t0.Add(24 * time.Hour)
	b.ReportAllocs()
	for b.Loop() {
		buf = l.Snapshot(now, buf[:0])
	}
	b.ReportMetric(float64(len(buf)), "bytes")
}

func fullGeminiDay() *Limiter {
	l, _ := New(geminiConfig())
	now := t0
	for range 1500 {
		l.Admit(now, Cost{})
		l.Release(now, Result{Outcome: OutcomeSuccess})
		now = now.Add(57 * time.Second)
	}
	return l
}

// BenchmarkMemoryPerLimiter reports the heap one limiter holds once its
// windows are full, for the original report's config and for 10k/min + 1M/day.
func BenchmarkMemoryPerLimiter(b *testing.B) {
	cases := []struct {
		name  string
		cfg   Config
		fill  int
		every time.Duration
	}{
		{"gemini-10m-600h-1500d", geminiConfig(), 1500, 57 * time.Second},
		{"10k-per-min-1M-per-day", Config{Windows: []Window{{Name: "minute", Limit: 10_000, Period: time.Minute}, {Name: "day", Limit: 1_000_000, Period: 24 * time.Hour}}}, 1_000_000, 86 * time.Millisecond},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			var heap uint64
			for b.Loop() {
				before := heapInUse()
				l, _ := New(c.cfg)
				now := t0
				for range c.fill {
					l.Admit(now, Cost{})
					l.Release(now, Result{Outcome: OutcomeSuccess})
					now = now.Add(c.every)
				}
				heap = heapInUse() - before
				runtime.KeepAlive(l)
			}
			b.ReportMetric(float64(heap), "heap-bytes/limiter")
		})
	}
}

func heapInUse() uint64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

func ExampleLimiter() {
	l, _ := New(Config{
		Windows:     []Window{{Name: "minute", Limit: 10, Period: time.Minute}},
		MinInterval: 3 * time.Second,
	})
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	fmt.Println(l.Admit(now, Cost{}).Allowed)
	d := l.Admit(now.Add(time.Second), Cost{})
	fmt.Println(d.Allowed, d.Reason, d.RetryAt.Sub(now))
	// Output:
	// true
	// false MinInterval 3s
}

// BenchmarkDecideWithDeferred measures a decision with none and with 12
// deferred calls (3 gateway replicas lent 2 standby calls for each of 2
// namespaces): a window of 100 a minute kept full, a tokens window, each
// decision merging the deferred calls into both.
func BenchmarkDecideWithDeferred(b *testing.B) {
	for _, n := range []int{0, 12} {
		b.Run(fmt.Sprintf("deferred=%d", n), func(b *testing.B) {
			l, _ := New(Config{Windows: []Window{{Name: "minute", Limit: 100, Period: time.Minute}},
				Tokens: &Window{Name: "tokens", Limit: 1 << 30, Period: time.Minute}})
			cost := Cost{Input: 100, Output: 256}
			for range n {
				l.Admit(t0, cost)
				l.Defer(t0, cost, t0.Add(48*time.Hour)) // counted all through the run
			}
			now := t0
			b.ReportAllocs()
			for b.Loop() {
				if l.Admit(now, cost).Allowed {
					l.Release(now, Result{Outcome: OutcomeSuccess})
				}
				now = now.Add(10 * time.Millisecond)
			}
		})
	}
}

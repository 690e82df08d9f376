package dispatch

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"k8s.io/utils/clock"

	"github.com/llmquota/llmquota/internal/emulator"
	"github.com/llmquota/llmquota/internal/provider"
	"github.com/llmquota/llmquota/internal/ratewindow"
)

const benchWorkers = 8

// BenchmarkDispatch sends b.N items through a dispatcher (8 in flight,
// generous limits) to a zero-latency emulator: the dispatcher's overhead
// on top of the HTTP calls themselves.
func BenchmarkDispatch(b *testing.B) {
	_, c := emulated(b, emulator.Config{})
	d, _ := New(Config{Name: "p", Client: c, DefaultModel: "m", Limits: ratewindow.Config{
		Windows:        []ratewindow.Window{{Name: "minute", Limit: 1 << 24, Period: time.Minute}},
		MaxConcurrency: benchWorkers,
	}}, nil, clock.RealClock{}, logr.Discard(), nil)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go d.Run(ctx)
	var wg sync.WaitGroup
	wg.Add(b.N)
	its := make([]Item, b.N)
	for i := range its {
		its[i] = Item{ID: fmt.Sprint(i), Prompt: fmt.Sprint("prompt ", i)}
	}
	b.ResetTimer()
	start := time.Now()
	d.Submit(Batch{Key: "ns/b", Namespace: "ns", Size: b.N, Items: its, OnResult: func(Result) { wg.Done() }})
	wg.Wait()
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "items/s")
}

// BenchmarkBaselineDirectCalls makes the same calls from 8 goroutines with
// no dispatcher: the ceiling the dispatcher is measured against.
func BenchmarkBaselineDirectCalls(b *testing.B) {
	_, c := emulated(b, emulator.Config{})
	var next sync.Mutex
	i := 0
	var wg sync.WaitGroup
	b.ResetTimer()
	start := time.Now()
	for range benchWorkers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				next.Lock()
				if i >= b.N {
					next.Unlock()
					return
				}
				i++
				n := i
				next.Unlock()
				if _, err := c.Generate(context.Background(), provider.Request{Model: "m", Prompt: fmt.Sprint("prompt ", n)}); err != nil {
					b.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "items/s")
}

// BenchmarkQuotaUtilisation runs a real dispatcher against the emulator's
// quota (20 per second) with more work than the quota allows for 5 seconds
// of real time and reports admitted / allowed; the server's log proves no
// window was exceeded. Run with -benchtime 1x. The shortfall from 100% is
// the guard each window carries against network delay (2% of 1s) and the
// start-up.
func BenchmarkQuotaUtilisation(b *testing.B) {
	limits := []emulator.Limit{{Requests: 20, Period: time.Second}}
	for b.Loop() {
		emu, c := emulated(b, emulator.Config{Limits: limits})
		d, _ := New(Config{Name: "p", Client: c, DefaultModel: "m", Limits: ratewindow.Config{
			Windows: []ratewindow.Window{{Name: "second", Limit: 20, Period: time.Second}}, MaxConcurrency: 4}},
			nil, clock.RealClock{}, logr.Discard(), nil)
		ctx, cancel := context.WithCancel(context.Background())
		go d.Run(ctx)
		d.Submit(Batch{Key: "ns/b", Namespace: "ns", Size: 1000, Items: items("u", 1000), OnResult: func(Result) {}})
		time.Sleep(5 * time.Second)
		cancel()
		log := emu.Log()
		if err := emulator.CheckWindows(log, limits); err != nil {
			b.Fatal(err)
		}
		admitted := 0
		for _, r := range log {
			if r.Admitted {
				admitted++
			}
		}
		// What the quota allows from the first request to the last: 20 per started second.
		span := log[len(log)-1].Time.Sub(log[0].Time)
		allowed := 20 * (int(span/time.Second) + 1)
		b.ReportMetric(100*float64(admitted)/float64(allowed), "%utilisation")
		b.ReportMetric(float64(len(log)-admitted), "server-refusals")
	}
}

// BenchmarkNext1000Batches is the scheduling decision step makes for every
// call, over 1,000 admitted batches in 100 namespaces (the scale
// benchmark's shape): it scans every batch.
func BenchmarkNext1000Batches(b *testing.B) {
	now := time.Date(2026, 11, 28, 9, 0, 0, 0, time.UTC)
	d, _ := New(Config{Name: "p", Client: &stubClient{}}, nil, clock.RealClock{}, logr.Discard(), nil)
	for i := range 1000 {
		ns := fmt.Sprintf("team-%03d", i%100)
		d.Submit(Batch{Key: fmt.Sprintf("%s/b%d", ns, i), Namespace: ns, Size: 20, Items: items("x", 100)})
	}
	for b.Loop() {
		if pick, _ := d.next(now); pick != nil {
			d.fair.charge(pick.Namespace, 100)
		}
	}
}

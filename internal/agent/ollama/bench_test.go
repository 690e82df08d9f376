package ollama

import (
	"context"
	"testing"
	"time"

	"k8s.io/utils/clock"

	"github.com/llmquota/llmquota/internal/provider"
)

// BenchmarkFirstRequest times the first request a pod serves: cold (the
// model unloaded, so the request pays the load) against warm (after
// Warmup). It goes through the operator's own Ollama provider client, on
// the tiny generated model and this machine's CPU.
func BenchmarkFirstRequest(b *testing.B) {
	c := client()
	gen, err := provider.New(provider.Config{Type: provider.Ollama, Endpoint: shared.URL})
	if err != nil {
		b.Fatal(err)
	}
	req := provider.Request{Model: "tiny-a", Prompt: "Classify the market sentiment: ACME beats estimates.", MaxTokens: 8}
	ctx := context.Background()
	for _, warm := range []bool{false, true} {
		name := "cold"
		if warm {
			name = "warm"
		}
		b.Run(name, func(b *testing.B) {
			var total time.Duration
			for b.Loop() {
				b.StopTimer()
				if _, err := Unload(ctx, c, []Model{{Name: "tiny-a"}}); err != nil {
					b.Fatal(err)
				}
				if warm {
					if _, err := Warmup(ctx, c, clock.RealClock{}, Spec{Model: "tiny-a", KeepAlive: time.Minute}, 3, 10*time.Millisecond); err != nil {
						b.Fatal(err)
					}
				}
				b.StartTimer()
				start := time.Now()
				if _, err := gen.Generate(ctx, req); err != nil {
					b.Fatal(err)
				}
				total += time.Since(start)
			}
			b.ReportMetric(float64(total.Milliseconds())/float64(b.N), "ms/first-request")
		})
	}
}

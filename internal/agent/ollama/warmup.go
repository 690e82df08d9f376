package ollama

import (
	"context"
	"errors"
	"fmt"
	"time"

	"k8s.io/utils/clock"
)

// Warmed is how a successful warmup went.
type Warmed struct {
	// Attempt is the attempt that succeeded, from 1.
	Attempt int
	// Latency is that attempt's load time, as the original report logs it
	// (gpu_warmup_success latency=420ms attempt=1).
	Latency time.Duration
	// VRAMBytes is the GPU memory the model occupies (0 on CPU).
	VRAMBytes int64
	// ContextLength is the context it was loaded with, as /api/ps says.
	ContextLength int64
}

// Warmup loads model and confirms with /api/ps that it is resident,
// trying up to attempts times (the original report: 3) with a doubling
// pause from backoff between them. It fails with the last attempt's error.
func Warmup(ctx context.Context, c *Client, clk clock.Clock, spec Spec, attempts int, backoff time.Duration) (Warmed, error) {
	model := spec.Model
	var last error
	for attempt := 1; attempt <= max(1, attempts); attempt++ {
		if attempt > 1 {
			select {
			case <-ctx.Done():
				return Warmed{}, errors.Join(ctx.Err(), last)
			case <-clk.After(backoff << (attempt - 2)):
			}
		}
		start := clk.Now()
		if err := c.LoadSpec(ctx, spec); err != nil {
			last = err
			continue
		}
		latency := clk.Since(start)
		running, err := c.PS(ctx)
		if err != nil {
			last = err
			continue
		}
		r, ok := Resident(running, model)
		if !ok {
			last = fmt.Errorf("model %s loaded but not resident in /api/ps", model)
			continue
		}
		return Warmed{Attempt: attempt, Latency: latency, VRAMBytes: r.VRAMBytes, ContextLength: r.ContextLength}, nil
	}
	return Warmed{}, fmt.Errorf("warmup of %s failed after %d attempts: %w", model, max(1, attempts), last)
}

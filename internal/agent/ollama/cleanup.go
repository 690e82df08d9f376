package ollama

import (
	"context"
	"fmt"
	"sort"
	"time"
)

// Model is a resident model as the cleanup policy sees it.
type Model struct {
	Name      string
	VRAMBytes int64
	SizeBytes int64
	// LastUsed is the last time traffic used it (or it was warmed).
	LastUsed time.Time
	// Busy is true while a call to it is in flight: never unloaded.
	Busy bool
}

// Idle returns the models unused for at least idleFor and not busy, least
// recently used first: what a periodic cleanup unloads.
func Idle(models []Model, now time.Time, idleFor time.Duration) []Model {
	var out []Model
	for _, m := range models {
		if !m.Busy && now.Sub(m.LastUsed) >= idleFor {
			out = append(out, m)
		}
	}
	sortLRU(out)
	return out
}

// ToFree returns the fewest not-busy models, least recently used first,
// whose memory adds up to at least need bytes (or all of them, if they do
// not): what a cleanup over the high watermark unloads.
func ToFree(models []Model, need int64) []Model {
	var candidates []Model
	for _, m := range models {
		if !m.Busy {
			candidates = append(candidates, m)
		}
	}
	sortLRU(candidates)
	var out []Model
	freed := int64(0)
	for _, m := range candidates {
		if freed >= need {
			break
		}
		out = append(out, m)
		freed += max(m.VRAMBytes, m.SizeBytes)
	}
	return out
}

func sortLRU(ms []Model) {
	sort.SliceStable(ms, func(i, j int) bool { return ms[i].LastUsed.Before(ms[j].LastUsed) })
}

// UnloadWait bounds how long Unload waits for /api/ps to drop n models:
// Ollama answers keep_alive 0 at once and frees the runners just after, one
// model at a time (0.56-0.69 s each for 6.5 GiB models on an H200), so the
// wait grows with the number of models.
func UnloadWait(n int) time.Duration {
	return 5*time.Second + time.Duration(n)*2*time.Second
}

// Unload unloads the models and waits until /api/ps confirms each is gone,
// returning the memory freed (VRAM, or size on a CPU server).
func Unload(ctx context.Context, c *Client, models []Model) (int64, error) {
	for _, m := range models {
		if err := c.Unload(ctx, m.Name); err != nil {
			return 0, err
		}
	}
	wait := UnloadWait(len(models))
	deadline := time.Now().Add(wait)
	for {
		running, err := c.PS(ctx)
		if err != nil {
			return 0, err
		}
		var still []string
		freed := int64(0)
		for _, m := range models {
			if _, ok := Resident(running, m.Name); ok {
				still = append(still, m.Name)
			} else {
				freed += max(m.VRAMBytes, m.SizeBytes)
			}
		}
		if len(still) == 0 {
			return freed, nil
		}
		if time.Now().After(deadline) {
			return freed, fmt.Errorf("models %v are still resident %v after unloading", still, wait)
		}
		select {
		case <-ctx.Done():
			return freed, ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

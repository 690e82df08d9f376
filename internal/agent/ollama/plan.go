package ollama

import (
	"slices"
	"time"
)

// Trigger is why a cleanup runs.
type Trigger string

const (
	// TriggerForced means someone asked through the pod's annotation.
	TriggerForced Trigger = "Forced"
	// TriggerWatermark means GPU memory use passed the high watermark.
	TriggerWatermark Trigger = "Watermark"
	// TriggerPeriodic means gpuCleanupInterval passed since the last periodic one.
	TriggerPeriodic Trigger = "Periodic"
)

// Policy says when one Ollama server is cleaned up and what goes.
type Policy struct {
	// Interval is gpuCleanupInterval: how often idle models are unloaded,
	// and how long unused makes a model idle.
	Interval time.Duration
	// MinGap is the least time between two cleanups of the server, whatever
	// asks for them, so cleanup itself never adds load.
	MinGap time.Duration
	// Keep is the pool's model, kept warm for traffic: only a forced
	// cleanup unloads it (and it is warmed again right after).
	Keep string
}

// Schedule is when a server was last cleaned up.
type Schedule struct {
	// LastPeriodic is the last periodic cleanup, or when the server was
	// first seen.
	LastPeriodic time.Time
	// LastAny is the last cleanup of any kind (zero: none yet).
	LastAny time.Time
}

// Ran records a cleanup pass of trigger t at now that unloaded n models:
// a periodic pass restarts the periodic clock; the minimum gap between
// cleanups starts only from a pass that did something (unloaded a model, or
// answered a forced request), so a watermark or periodic pass that found
// nothing to unload does not hold back the next cleanup, or a forced one.
func (s *Schedule) Ran(now time.Time, t Trigger, n int) {
	if t == TriggerPeriodic {
		s.LastPeriodic = now
	}
	if n > 0 || t == TriggerForced {
		s.LastAny = now
	}
}

// Pressure is what asks for a cleanup besides the clock.
type Pressure struct {
	// Forced is true while a cleanup request is not yet handled.
	Forced bool
	// NeedBytes is how much GPU memory is over the high watermark (0: under).
	NeedBytes int64
}

// Decide says whether a cleanup runs at now, why, and which models it
// unloads; when none runs yet, wait is how long until one may (0: nothing
// pending). The order of precedence is forced, watermark, periodic.
func (p Policy) Decide(now time.Time, s Schedule, pr Pressure, models []Model) (t Trigger, unload []Model, wait time.Duration) {
	if !s.LastAny.IsZero() && now.Sub(s.LastAny) < p.MinGap {
		if pr.Forced || pr.NeedBytes > 0 || now.Sub(s.LastPeriodic) >= p.Interval {
			return "", nil, s.LastAny.Add(p.MinGap).Sub(now)
		}
		return "", nil, 0
	}
	switch {
	case pr.Forced:
		// Everything goes; Ollama lets requests in flight finish first.
		return TriggerForced, slices.Clone(models), 0
	case pr.NeedBytes > 0:
		return TriggerWatermark, ToFree(p.evictable(models), pr.NeedBytes), 0
	case now.Sub(s.LastPeriodic) >= p.Interval:
		return TriggerPeriodic, Idle(p.evictable(models), now, p.Interval), 0
	}
	return "", nil, 0
}

// evictable are the models an unforced cleanup may unload: all but the
// pool's own (see Resident for the name match).
func (p Policy) evictable(models []Model) []Model {
	var out []Model
	for _, m := range models {
		if _, pinned := Resident([]Running{{Name: m.Name}}, p.Keep); !pinned || p.Keep == "" {
			out = append(out, m)
		}
	}
	return out
}

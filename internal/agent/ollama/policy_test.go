package ollama

import (
	"slices"
	"testing"
	"time"
)

func TestIdleAndToFree(t *testing.T) {
	t0 := time.Date(2026, 11, 26, 9, 0, 0, 0, time.UTC)
	models := []Model{
		{Name: "recent", VRAMBytes: 4, LastUsed: t0.Add(-time.Minute)},
		{Name: "oldest", VRAMBytes: 2, LastUsed: t0.Add(-time.Hour)},
		{Name: "busy-old", VRAMBytes: 8, LastUsed: t0.Add(-2 * time.Hour), Busy: true},
		{Name: "old", VRAMBytes: 3, LastUsed: t0.Add(-30 * time.Minute)},
	}
	cases := map[string]struct {
		got  []Model
		want []string
	}{
		"idle for 5m, LRU first, busy skipped": {Idle(models, t0, 5*time.Minute), []string{"oldest", "old"}},
		"nothing idle for 2h":                  {Idle(models, t0, 2*time.Hour), nil},
		"free 4 bytes: two LRU models":         {ToFree(models, 4), []string{"oldest", "old"}},
		"free 1 byte: the LRU one":             {ToFree(models, 1), []string{"oldest"}},
		"free more than all: every idle one":   {ToFree(models, 100), []string{"oldest", "old", "recent"}},
	}
	for name, c := range cases {
		if got := names(c.got); !slices.Equal(got, c.want) {
			t.Errorf("%s: %v, want %v", name, got, c.want)
		}
	}
}

func names(ms []Model) (s []string) {
	for _, m := range ms {
		s = append(s, m.Name)
	}
	return s
}

// TestTrackerLastUse: a model counts as used when first seen and whenever
// its expires_at moves; it is busy while that was within recent.
func TestTrackerLastUse(t *testing.T) {
	t0 := time.Date(2026, 11, 26, 9, 0, 0, 0, time.UTC)
	exp := t0.Add
	var tr Tracker
	steps := []struct {
		at      time.Duration
		running []Running
		want    map[string]Model // LastUsed offset from t0 in LastUsed, Busy
	}{
		{0, []Running{{Name: "a", ExpiresAt: exp(30 * time.Minute)}}, map[string]Model{"a": {LastUsed: t0, Busy: true}}},
		{time.Minute, []Running{{Name: "a", ExpiresAt: exp(30 * time.Minute)}}, map[string]Model{"a": {LastUsed: t0}}},
		// a used (expires_at moved), b loaded.
		{2 * time.Minute, []Running{{Name: "a", ExpiresAt: exp(32 * time.Minute)}, {Name: "b", ExpiresAt: exp(7 * time.Minute)}},
			map[string]Model{"a": {LastUsed: exp(2 * time.Minute), Busy: true}, "b": {LastUsed: exp(2 * time.Minute), Busy: true}}},
		{10 * time.Minute, []Running{{Name: "a", ExpiresAt: exp(32 * time.Minute)}}, map[string]Model{"a": {LastUsed: exp(2 * time.Minute)}}},
		// b unloaded and forgotten: loaded again, it is new.
		{11 * time.Minute, []Running{{Name: "b", ExpiresAt: exp(7 * time.Minute)}}, map[string]Model{"b": {LastUsed: exp(11 * time.Minute), Busy: true}}},
	}
	for i, s := range steps {
		got := tr.Observe(t0.Add(s.at), s.running, 30*time.Second)
		if len(got) != len(s.want) {
			t.Fatalf("step %d: %+v, want %+v", i, got, s.want)
		}
		for _, m := range got {
			w := s.want[m.Name]
			if !m.LastUsed.Equal(w.LastUsed) || m.Busy != w.Busy {
				t.Errorf("step %d: %s last used %v busy %v, want %v busy %v", i, m.Name, m.LastUsed, m.Busy, w.LastUsed, w.Busy)
			}
		}
	}
}

func TestPolicyDecide(t *testing.T) {
	t0 := time.Date(2026, 11, 26, 9, 0, 0, 0, time.UTC)
	p := Policy{Interval: 5 * time.Minute, MinGap: 30 * time.Second, Keep: "pool"}
	models := []Model{
		{Name: "pool:latest", VRAMBytes: 10, LastUsed: t0.Add(-time.Hour)},
		{Name: "old", VRAMBytes: 3, LastUsed: t0.Add(-20 * time.Minute)},
		{Name: "older", VRAMBytes: 2, LastUsed: t0.Add(-40 * time.Minute)},
		{Name: "fresh", VRAMBytes: 5, LastUsed: t0.Add(-time.Minute)},
		{Name: "busy", VRAMBytes: 7, LastUsed: t0.Add(-time.Hour), Busy: true},
	}
	long := Schedule{LastPeriodic: t0.Add(-6 * time.Minute), LastAny: t0.Add(-6 * time.Minute)}
	recentPeriodic := Schedule{LastPeriodic: t0.Add(-time.Minute), LastAny: t0.Add(-time.Minute)}
	justNow := Schedule{LastPeriodic: t0.Add(-10 * time.Minute), LastAny: t0.Add(-10 * time.Second)}
	cases := []struct {
		name    string
		s       Schedule
		pr      Pressure
		trigger Trigger
		unload  []string
		wait    time.Duration
	}{
		{"periodic: idle ones, LRU first, the pool's model and busy kept", long, Pressure{}, TriggerPeriodic, []string{"older", "old"}, 0},
		{"not due: nothing", recentPeriodic, Pressure{}, "", nil, 0},
		{"watermark: fewest LRU covering the need", recentPeriodic, Pressure{NeedBytes: 4}, TriggerWatermark, []string{"older", "old"}, 0},
		{"watermark over all: every evictable, never the pool's", recentPeriodic, Pressure{NeedBytes: 100}, TriggerWatermark, []string{"older", "old", "fresh"}, 0},
		{"forced: everything, the pool's model too", recentPeriodic, Pressure{Forced: true, NeedBytes: 4}, TriggerForced, []string{"pool:latest", "old", "older", "fresh", "busy"}, 0},
		{"forced within the gap waits", justNow, Pressure{Forced: true}, "", nil, 20 * time.Second},
		{"watermark within the gap waits", justNow, Pressure{NeedBytes: 1}, "", nil, 20 * time.Second},
		{"periodic due within the gap waits", justNow, Pressure{}, "", nil, 20 * time.Second},
		{"first cleanup: no gap to keep", Schedule{LastPeriodic: t0}, Pressure{NeedBytes: 1}, TriggerWatermark, []string{"older"}, 0},
	}
	for _, c := range cases {
		trig, unload, wait := p.Decide(t0, c.s, c.pr, models)
		if trig != c.trigger || !slices.Equal(names(unload), c.unload) || wait != c.wait {
			t.Errorf("%s: got %q %v wait %v, want %q %v wait %v", c.name, trig, names(unload), wait, c.trigger, c.unload, c.wait)
		}
	}
}

// TestAPassThatUnloadsNothingKeepsNoGap: a watermark pass with nothing
// evictable (only the pool's model resident) does not start the minimum
// gap, so a forced request right after runs at once; a pass that unloaded
// something does start it (issue 13, item 8).
func TestAPassThatUnloadsNothingKeepsNoGap(t *testing.T) {
	t0 := time.Date(2026, 11, 27, 9, 0, 0, 0, time.UTC)
	p := Policy{Interval: 5 * time.Minute, MinGap: 30 * time.Second, Keep: "pool"}
	onlyPool := []Model{{Name: "pool:latest", VRAMBytes: 10, LastUsed: t0}}
	s := Schedule{LastPeriodic: t0}
	trig, unload, _ := p.Decide(t0, s, Pressure{NeedBytes: 1}, onlyPool)
	if trig != TriggerWatermark || len(unload) != 0 {
		t.Fatalf("watermark pass: %q %v, want a watermark pass with nothing to unload", trig, names(unload))
	}
	s.Ran(t0, trig, len(unload))
	if trig, _, wait := p.Decide(t0.Add(time.Second), s, Pressure{Forced: true}, onlyPool); trig != TriggerForced {
		t.Fatalf("a forced request a second after an empty watermark pass: %q, held %v", trig, wait)
	}
	s.Ran(t0.Add(time.Second), TriggerForced, 1)
	if trig, _, wait := p.Decide(t0.Add(2*time.Second), s, Pressure{NeedBytes: 1}, onlyPool); trig != "" || wait != 29*time.Second {
		t.Fatalf("a watermark pass a second after a forced cleanup: %q, wait %v; want held 29s", trig, wait)
	}
	periodic := Schedule{LastPeriodic: t0.Add(-10 * time.Minute)}
	periodic.Ran(t0, TriggerPeriodic, 0)
	if !periodic.LastPeriodic.Equal(t0) || !periodic.LastAny.IsZero() {
		t.Fatalf("an empty periodic pass: %+v, want the periodic clock restarted and no gap", periodic)
	}
}

func TestUnloadWaitGrowsWithTheModels(t *testing.T) {
	// Ollama frees one model at a time, ~0.6 s each for 6.5 GiB models.
	for _, n := range []int{1, 8, 16} {
		if w := UnloadWait(n); w < time.Duration(n)*time.Second || w < 5*time.Second {
			t.Errorf("UnloadWait(%d) = %v: too short for %d models freed one at a time", n, w, n)
		}
	}
	if UnloadWait(8) <= UnloadWait(1) {
		t.Error("the wait does not grow with the number of models")
	}
}

package ollama

import (
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
	names := func(ms []Model) (s []string) {
		for _, m := range ms {
			s = append(s, m.Name)
		}
		return s
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
		got := names(c.got)
		if len(got) != len(c.want) {
			t.Errorf("%s: %v, want %v", name, got, c.want)
			continue
		}
		for i := range got {
			if got[i] != c.want[i] {
				t.Errorf("%s: %v, want %v", name, got, c.want)
			}
		}
	}
}

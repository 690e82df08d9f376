package dashboard

import (
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	llmv1 "github.com/llmquota/llmquota/api/v1alpha1"
)

// TestProviderWindowsOfEveryKind: top shows every window the status has,
// token windows of each kind among them, and none it lacks.
func TestProviderWindowsOfEveryKind(t *testing.T) {
	p := llmv1.LLMProvider{ObjectMeta: metav1.ObjectMeta{Name: "claude"}}
	p.Status.Usage = llmv1.ProviderUsage{Minute: &llmv1.WindowUsage{Used: 1, Limit: 50, Summary: "1/50"},
		InputTokensPerMinute:  &llmv1.WindowUsage{Used: 300, Limit: 30000, Summary: "300/30000"},
		OutputTokensPerMinute: &llmv1.WindowUsage{Used: 64, Limit: 8000, Summary: "64/8000"},
		TokensPerDay:          &llmv1.WindowUsage{Used: 364, Limit: 1000000, Summary: "364/1000000"}}
	got := provider(time.Date(2026, 12, 7, 9, 0, 0, 0, time.UTC), &p).Windows
	want := []Window{{Name: "minute", Unit: "requests", Used: 1, Limit: 50}, {Name: "day", Unit: "tokens", Used: 364, Limit: 1000000},
		{Name: "minute", Unit: "input tokens", Used: 300, Limit: 30000}, {Name: "minute", Unit: "output tokens", Used: 64, Limit: 8000}}
	if len(got) != len(want) {
		t.Fatalf("windows %+v, want %+v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("window %d: %+v, want %+v", i, got[i], want[i])
		}
	}
}

// TestIdleLanesShowZero: the status leaves out a lane whose counts are all
// zero; top shows it as zero while the provider's dispatcher runs (its
// windows are shown), and no lanes for one that does not run.
func TestIdleLanesShowZero(t *testing.T) {
	now := time.Date(2026, 12, 7, 9, 0, 0, 0, time.UTC)
	running := llmv1.LLMProvider{ObjectMeta: metav1.ObjectMeta{Name: "running"}}
	running.Status.Usage = llmv1.ProviderUsage{Minute: &llmv1.WindowUsage{Used: 1, Limit: 50, Summary: "1/50"},
		Batch: &llmv1.LaneUsage{CallsLastMinute: 1}}
	got := provider(now, &running).Lanes
	want := []Lane{{Name: "interactive"}, {Name: "batch", Calls: 1}}
	if len(got) != 2 || got[0] != want[0] || got[1] != want[1] {
		t.Fatalf("lanes %+v, want %+v", got, want)
	}
	stopped := llmv1.LLMProvider{ObjectMeta: metav1.ObjectMeta{Name: "stopped"}}
	if got := provider(now, &stopped).Lanes; len(got) != 0 {
		t.Fatalf("lanes of a provider that does not run: %+v", got)
	}
}

// TestTitleCountsInWords: the title says "1 provider" and "2 batches".
func TestTitleCountsInWords(t *testing.T) {
	for _, tc := range []struct {
		providers, batches int
		want               string
	}{
		{1, 2, "1 provider · 2 batches"},
		{2, 1, "2 providers · 1 batch"},
		{0, 0, "0 providers · 0 batches"},
	} {
		s := Snapshot{Providers: make([]Provider, tc.providers), Batches: make([]Batch, tc.batches)}
		title, _, _ := strings.Cut(Render(s, Styles{}, 120), "\n")
		if !strings.HasSuffix(title, tc.want) {
			t.Errorf("title %q, want it to end with %q", title, tc.want)
		}
	}
}

// TestStandbyShownBesideTheCallsInFlight: the standby grants lent to the
// gateways show beside the interactive lane's calls in flight, not in them.
func TestStandbyShownBesideTheCallsInFlight(t *testing.T) {
	now := time.Date(2026, 12, 8, 9, 0, 0, 0, time.UTC)
	p := llmv1.LLMProvider{ObjectMeta: metav1.ObjectMeta{Name: "gemini"}}
	p.Status.Usage = llmv1.ProviderUsage{Minute: &llmv1.WindowUsage{Used: 7, Limit: 50, Summary: "7/50"},
		Interactive: &llmv1.LaneUsage{CallsLastMinute: 1, InFlight: 1, Standby: 6}}
	got := provider(now, &p).Lanes
	if len(got) != 2 || got[0].InFlight != 1 || got[0].Standby != 6 {
		t.Fatalf("lanes %+v, want the interactive one with 1 in flight and 6 standby", got)
	}
	var b strings.Builder
	renderLanes(&b, got, Styles{})
	if !strings.Contains(b.String(), "1 (+6 standby)") {
		t.Fatalf("the lanes read:\n%s\nwant the interactive lane's in flight as %q", b.String(), "1 (+6 standby)")
	}
}

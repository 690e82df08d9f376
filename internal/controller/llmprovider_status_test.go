package controller

import (
	"testing"

	llmv1 "github.com/llmquota/llmquota/api/v1alpha1"
	"github.com/llmquota/llmquota/internal/dispatch"
	"github.com/llmquota/llmquota/internal/ratewindow"
)

// TestSetUsage: what the dispatcher knows reaches the provider's status:
// a learned limit beside the declared one, both lanes side by side, and
// "unlimited" where the spec sets no limit.
func TestSetUsage(t *testing.T) {
	cases := []struct {
		name                 string
		window               ratewindow.WindowStats
		wantSummary          string
		wantLearned          int64
		interactive, batch   dispatch.LaneStats
		wantInteractiveCalls int64
	}{
		{name: "declared", window: ratewindow.WindowStats{Name: windowMinute, Used: 12, Limit: 120}, wantSummary: "12/120"},
		{name: "learned", window: ratewindow.WindowStats{Name: windowMinute, Used: 58, Limit: 120, Learned: 60}, wantSummary: "58/60 (120)", wantLearned: 60},
		{name: "lanes", window: ratewindow.WindowStats{Name: windowMinute, Used: 3, Limit: 10}, wantSummary: "3/10",
			interactive: dispatch.LaneStats{Calls: 2, Tokens: 70, Refused: 1, InFlight: 1}, batch: dispatch.LaneStats{Calls: 1, Waiting: 5}, wantInteractiveCalls: 2},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var st llmv1.LLMProviderStatus
			setUsage(&st, dispatch.Stats{Quota: ratewindow.Stats{Windows: []ratewindow.WindowStats{c.window}}, Interactive: c.interactive, Batch: c.batch})
			if m := st.Usage.Minute; m.Summary != c.wantSummary || m.LearnedLimit != c.wantLearned || m.Limit != c.window.Limit {
				t.Errorf("minute = %+v, want summary %q, learned %d", m, c.wantSummary, c.wantLearned)
			}
			if st.Usage.Hour.Summary != llmv1.UnlimitedSummary {
				t.Errorf("hour = %+v, want unlimited", st.Usage.Hour)
			}
			i, b := st.Usage.Interactive, st.Usage.Batch
			if i.CallsLastMinute != c.wantInteractiveCalls || i.RefusedLastMinute != c.interactive.Refused || i.InFlight != int32(c.interactive.InFlight) ||
				b.Waiting != int32(c.batch.Waiting) || b.CallsLastMinute != c.batch.Calls {
				t.Errorf("lanes interactive %+v batch %+v, from %+v and %+v", i, b, c.interactive, c.batch)
			}
		})
	}
}

// TestSetUsageTokenWindows: each token window shows in the status entry of
// its field.
func TestSetUsageTokenWindows(t *testing.T) {
	var st llmv1.LLMProviderStatus
	setUsage(&st, dispatch.Stats{Quota: ratewindow.Stats{Tokens: &ratewindow.WindowStats{Name: windowTokens, Used: 10, Limit: 100},
		TokenWindows: []ratewindow.WindowStats{{Name: windowTokensPerDay, Used: 500, Limit: 9000}, {Name: windowInputPerMinute, Used: 7, Limit: 50},
			{Name: windowOutputPerMinute, Used: 3, Limit: 30}}}})
	u := st.Usage
	for name, got := range map[string]*llmv1.WindowUsage{"tokensPerMinute": u.TokensPerMinute, "tokensPerDay": u.TokensPerDay,
		"inputTokensPerMinute": u.InputTokensPerMinute, "outputTokensPerMinute": u.OutputTokensPerMinute} {
		if got == nil {
			t.Fatalf("%s missing", name)
		}
	}
	if u.TokensPerDay.Summary != "500/9000" || u.InputTokensPerMinute.Summary != "7/50" || u.OutputTokensPerMinute.Summary != "3/30" || u.TokensPerMinute.Summary != "10/100" {
		t.Fatalf("usage %+v %+v %+v %+v", u.TokensPerMinute, u.TokensPerDay, u.InputTokensPerMinute, u.OutputTokensPerMinute)
	}
}

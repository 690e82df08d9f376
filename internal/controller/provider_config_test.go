package controller

import (
	"maps"
	"reflect"
	"testing"
	"time"

	"k8s.io/utils/ptr"

	llmv1 "github.com/llmquota/llmquota/api/v1alpha1"
	"github.com/llmquota/llmquota/internal/cost"
	"github.com/llmquota/llmquota/internal/ratewindow"
)

func TestDispatchConfigShares(t *testing.T) {
	p := &llmv1.LLMProvider{Spec: llmv1.LLMProviderSpec{Type: llmv1.ProviderGemini, Shares: &llmv1.SharePolicy{
		DefaultWeight:  ptr.To[int32](2),
		DefaultBudgets: &llmv1.CostBudgets{Daily: "1.00"},
		Namespaces: []llmv1.NamespaceShare{{Namespace: "team-a", Weight: ptr.To[int32](1)}, {Namespace: "team-b", Weight: ptr.To[int32](6)},
			{Namespace: "team-c", Budgets: &llmv1.CostBudgets{Daily: "5.00", Monthly: "50.00"}}},
	}}}
	got := dispatchConfig(p).Shares
	if got.DefaultWeight != 2 || !maps.Equal(got.Weights, map[string]int32{"team-a": 1, "team-b": 6}) ||
		got.DefaultBudgets.Daily != "1.00" || got.Budgets["team-c"] != (cost.Budgets{Daily: "5.00", Monthly: "50.00"}) || len(got.Budgets) != 1 {
		t.Fatalf("shares %+v", got)
	}
	if s := dispatchConfig(&llmv1.LLMProvider{}).Shares; s.DefaultWeight != 0 || s.Weights != nil || s.DefaultLimits != nil || s.Limits != nil {
		t.Fatalf("no spec.shares gave %+v, want equal weights and no limits", s)
	}
}

func TestDispatchConfigNamespaceLimits(t *testing.T) {
	p := &llmv1.LLMProvider{Spec: llmv1.LLMProviderSpec{Type: llmv1.ProviderGemini, Shares: &llmv1.SharePolicy{
		DefaultLimits: &llmv1.ScopeLimits{RequestsPerMinute: ptr.To[int32](10)},
		Namespaces: []llmv1.NamespaceShare{{Namespace: "team-a", Limits: &llmv1.ScopeLimits{RequestsPerHour: ptr.To[int32](100),
			RequestsPerDay: ptr.To[int32](1000), TokensPerMinute: ptr.To[int64](5000), MaxConcurrency: ptr.To[int32](2)}}, {Namespace: "team-b", Weight: ptr.To[int32](3)}},
	}}}
	got := dispatchConfig(p).Shares
	want := map[string]*ratewindow.Config{"team-a": {MaxConcurrency: 2, Tokens: &ratewindow.Window{Name: windowTokens, Limit: 5000, Period: time.Minute},
		Windows: []ratewindow.Window{{Name: windowHour, Limit: 100, Period: time.Hour}, {Name: windowDay, Limit: 1000, Period: 24 * time.Hour}}}}
	if !reflect.DeepEqual(got.Limits, want) {
		t.Fatalf("limits %+v, want %+v", got.Limits, want)
	}
	models := dispatchConfig(&llmv1.LLMProvider{Spec: llmv1.LLMProviderSpec{ModelLimits: []llmv1.ModelLimits{{Model: "pro",
		Limits: llmv1.ScopeLimits{RequestsPerMinute: ptr.To[int32](5)}}}}}).ModelLimits
	if m := models["pro"]; len(models) != 1 || m == nil || len(m.Windows) != 1 || m.Windows[0].Limit != 5 {
		t.Fatalf("model limits %+v", models)
	}
	if d := got.DefaultLimits; d == nil || len(d.Windows) != 1 || d.Windows[0] != (ratewindow.Window{Name: windowMinute, Limit: 10, Period: time.Minute}) || d.MaxConcurrency != 0 {
		t.Fatalf("default limits %+v", d)
	}
}

// TestDispatchConfigTokenWindows: tokens per day, input and output tokens
// per minute become token windows of their kind, for the provider and for
// a model's own limits.
func TestDispatchConfigTokenWindows(t *testing.T) {
	p := &llmv1.LLMProvider{Spec: llmv1.LLMProviderSpec{Type: llmv1.ProviderAnthropic,
		Limits: llmv1.RateLimits{TokensPerMinute: ptr.To[int64](90000), TokensPerDay: ptr.To[int64](1000000),
			InputTokensPerMinute: ptr.To[int64](50000), OutputTokensPerMinute: ptr.To[int64](10000)},
		ModelLimits: []llmv1.ModelLimits{{Model: "opus", Limits: llmv1.ScopeLimits{OutputTokensPerMinute: ptr.To[int64](2000)}}}}}
	cfg := dispatchConfig(p)
	want := []ratewindow.TokenWindow{
		{Window: ratewindow.Window{Name: windowTokensPerDay, Limit: 1000000, Period: 24 * time.Hour}, Kind: ratewindow.TokensTotal},
		{Window: ratewindow.Window{Name: windowInputPerMinute, Limit: 50000, Period: time.Minute}, Kind: ratewindow.TokensInput},
		{Window: ratewindow.Window{Name: windowOutputPerMinute, Limit: 10000, Period: time.Minute}, Kind: ratewindow.TokensOutput},
	}
	if !reflect.DeepEqual(cfg.Limits.TokenWindows, want) || cfg.Limits.Tokens == nil || cfg.Limits.Tokens.Limit != 90000 {
		t.Fatalf("token windows %+v (tokens %+v), want %+v", cfg.Limits.TokenWindows, cfg.Limits.Tokens, want)
	}
	if m := cfg.ModelLimits["opus"]; m == nil || len(m.TokenWindows) != 1 || m.TokenWindows[0].Kind != ratewindow.TokensOutput || m.TokenWindows[0].Limit != 2000 {
		t.Fatalf("opus's limits %+v", m)
	}
}

// TestDispatchConfigCapCountedAtStart: OpenAI, whose TPM counts max_tokens
// when a call starts, gets batch items charged their whole cap in every
// window that counts output; the others only in windows of output alone
// (Anthropic's OTPM), which the dispatcher decides.
func TestDispatchConfigCapCountedAtStart(t *testing.T) {
	for typ, want := range map[llmv1.ProviderType]bool{llmv1.ProviderOpenAI: true, llmv1.ProviderAnthropic: false,
		llmv1.ProviderGemini: false, llmv1.ProviderOllama: false} {
		if got := dispatchConfig(&llmv1.LLMProvider{Spec: llmv1.LLMProviderSpec{Type: typ}}).CapCountedAtStart; got != want {
			t.Errorf("%s: CapCountedAtStart %v, want %v", typ, got, want)
		}
	}
}

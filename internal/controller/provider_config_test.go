package controller

import (
	"maps"
	"testing"

	"k8s.io/utils/ptr"

	llmv1 "github.com/llmquota/llmquota/api/v1alpha1"
	"github.com/llmquota/llmquota/internal/cost"
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
	if s := dispatchConfig(&llmv1.LLMProvider{}).Shares; s.DefaultWeight != 0 || s.Weights != nil {
		t.Fatalf("no spec.shares gave %+v, want equal weights", s)
	}
}

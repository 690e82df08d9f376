package dashboard

import (
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	llmv1 "github.com/llmquota/llmquota/api/v1alpha1"
)

func TestCostPerNamespace(t *testing.T) {
	batch := func(ns, name string, in, out int64, usd string) llmv1.InferenceBatch {
		b := llmv1.InferenceBatch{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
			Spec: llmv1.InferenceBatchSpec{ProviderRef: llmv1.ProviderReference{Name: "gemini"}}}
		if in+out > 0 {
			b.Status.Usage = &llmv1.BatchUsage{TokensIn: in, TokensOut: out, CostUSD: llmv1.Decimal(usd)}
		}
		return b
	}
	r := BuildCost([]llmv1.InferenceBatch{
		batch("team-a", "small", 100, 10, "0.000125"),
		batch("team-b", "big", 10000, 1000, "0.0125"),
		batch("team-a", "second", 200, 20, "0.000250"),
		batch("team-c", "new", 0, 0, ""),
	})
	var order []string
	for _, ns := range r.Namespaces {
		order = append(order, ns.Namespace+" "+ns.Usage.CostUSD)
	}
	if got := strings.Join(order, ", "); got != "team-b 0.0125, team-a 0.000375, team-c 0.00" {
		t.Fatalf("namespaces %s", got)
	}
	if a := r.Namespaces[1]; a.Usage.TokensIn != 300 || a.Usage.TokensOut != 30 || len(a.Batches) != 2 || a.Batches[0].Name != "second" {
		t.Fatalf("team-a %+v", a)
	}
	text := RenderCost(r)
	for _, want := range []string{"NAMESPACE", "team-b", "(1 batches)", "big", "0.0125", "0.000375"} {
		if !strings.Contains(text, want) {
			t.Fatalf("the table lacks %q:\n%s", want, text)
		}
	}
}

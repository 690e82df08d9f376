package access

import (
	"errors"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func TestSelects(t *testing.T) {
	team := map[string]string{"kubernetes.io/metadata.name": "team-a", "tier": "gold"}
	for _, tc := range []struct {
		name     string
		selector *metav1.LabelSelector
		ns       string
		labels   map[string]string
		// refused is "" when selected, else a part of the refusal.
		refused string
	}{
		{"unset selects none", nil, "team-a", team, "unset"},
		{"empty selects all", &metav1.LabelSelector{}, "team-a", team, ""},
		{"empty selects a namespace without labels", &metav1.LabelSelector{}, "bare", nil, ""},
		{"matchLabels match", &metav1.LabelSelector{MatchLabels: map[string]string{"tier": "gold"}}, "team-a", team, ""},
		{"matchLabels miss", &metav1.LabelSelector{MatchLabels: map[string]string{"tier": "silver"}}, "team-a", team, "tier=silver"},
		{"by name", &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{
			{Key: "kubernetes.io/metadata.name", Operator: metav1.LabelSelectorOpIn, Values: []string{"team-a", "team-b"}}}}, "team-a", team, ""},
		{"by name miss", &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{
			{Key: "kubernetes.io/metadata.name", Operator: metav1.LabelSelectorOpIn, Values: []string{"team-b"}}}}, "team-a", team, "does not match"},
		{"invalid operator", &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{
			{Key: "tier", Operator: "Near", Values: []string{"gold"}}}}, "team-a", team, "invalid"},
		{"no namespace", &metav1.LabelSelector{}, "", nil, "not a ServiceAccount"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := Selects("gemini", tc.selector, tc.ns, tc.labels)
			if tc.refused == "" {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			var r *Refusal
			if !errors.As(err, &r) {
				t.Fatalf("got %v, want a refusal", err)
			}
			if !strings.Contains(err.Error(), tc.refused) || !strings.Contains(err.Error(), `"gemini"`) {
				t.Fatalf("refusal %q does not name %q and the provider", err, tc.refused)
			}
		})
	}
}

package dashboard

import (
	"cmp"
	"fmt"
	"math/big"
	"slices"
	"strings"

	llmv1 "github.com/llmquota/llmquota/api/v1alpha1"
	"github.com/llmquota/llmquota/internal/cost"
)

// CostReport is what each team's batches used: per namespace, with its
// batches. Its JSON is what `kubectl llmquota cost -o json` prints.
type CostReport struct {
	Namespaces []NamespaceCost `json:"namespaces"`
}

// NamespaceCost is one namespace's usage and its batches'.
type NamespaceCost struct {
	Namespace string      `json:"namespace"`
	Usage     BatchUsage  `json:"usage"`
	Batches   []BatchCost `json:"batches"`
}

// BatchCost is one batch's usage.
type BatchCost struct {
	Name     string     `json:"name"`
	Provider string     `json:"provider"`
	Usage    BatchUsage `json:"usage"`
}

// BatchUsage is tokens and cost (USD, exact decimal).
type BatchUsage struct {
	TokensIn  int64  `json:"tokensIn"`
	TokensOut int64  `json:"tokensOut"`
	CostUSD   string `json:"costUSD"`
}

// BuildCost sums the batches' status.usage per namespace, the most
// expensive namespace first, then by name.
func BuildCost(batches []llmv1.InferenceBatch) CostReport {
	byNS := map[string]*NamespaceCost{}
	totals := map[string]*big.Rat{}
	for i := range batches {
		b := &batches[i]
		u := BatchUsage{CostUSD: "0.00"}
		if s := b.Status.Usage; s != nil {
			u = BatchUsage{TokensIn: s.TokensIn, TokensOut: s.TokensOut, CostUSD: cmp.Or(string(s.CostUSD), "0.00")}
		}
		ns := byNS[b.Namespace]
		if ns == nil {
			ns = &NamespaceCost{Namespace: b.Namespace}
			byNS[b.Namespace], totals[b.Namespace] = ns, new(big.Rat)
		}
		ns.Batches = append(ns.Batches, BatchCost{Name: b.Name, Provider: string(b.Spec.ProviderRef.Name), Usage: u})
		ns.Usage.TokensIn += u.TokensIn
		ns.Usage.TokensOut += u.TokensOut
		if c, ok := new(big.Rat).SetString(u.CostUSD); ok {
			totals[b.Namespace].Add(totals[b.Namespace], c)
		}
	}
	var r CostReport
	for name, ns := range byNS {
		ns.Usage.CostUSD = cost.Format(totals[name])
		slices.SortFunc(ns.Batches, func(a, b BatchCost) int { return strings.Compare(a.Name, b.Name) })
		r.Namespaces = append(r.Namespaces, *ns)
	}
	slices.SortFunc(r.Namespaces, func(a, b NamespaceCost) int {
		if c := totals[b.Namespace].Cmp(totals[a.Namespace]); c != 0 {
			return c
		}
		return strings.Compare(a.Namespace, b.Namespace)
	})
	return r
}

// RenderCost prints the report as a table: a line per namespace, its
// batches indented below it.
func RenderCost(r CostReport) string {
	rows := [][]string{{"NAMESPACE", "BATCH", "PROVIDER", "TOKENS IN", "TOKENS OUT", "COST (USD)"}}
	for _, ns := range r.Namespaces {
		rows = append(rows, []string{ns.Namespace, fmt.Sprintf("(%d batches)", len(ns.Batches)), "",
			fmt.Sprint(ns.Usage.TokensIn), fmt.Sprint(ns.Usage.TokensOut), ns.Usage.CostUSD})
		for _, b := range ns.Batches {
			rows = append(rows, []string{"", b.Name, b.Provider, fmt.Sprint(b.Usage.TokensIn), fmt.Sprint(b.Usage.TokensOut), b.Usage.CostUSD})
		}
	}
	if len(r.Namespaces) == 0 {
		return "No InferenceBatches.\n"
	}
	return table(rows, "")
}

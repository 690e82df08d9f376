package integration

import (
	"context"
	"fmt"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/llmquota/llmquota/internal/items"
)

// One grammar for scores: the API server (inline items, the CRD's rule)
// and the JSONL parser (itemsFrom) accept and refuse the same strings.
var _ = Describe("Score grammar", func() {
	It("is the same inline and in JSONL", func() {
		for _, score := range []string{"0", "1", "0.20", "1.0", "0.000000000001", "1.000000000000",
			"1/3", "5e-1", "0x1p-1", ".5", "1.5", "-0.1", "0.1234567890123", "01", "0.5 ", "+0.5", "1.01"} {
			inline := k8sClient.Create(context.Background(), manifest(goodBatch, set([]any{map[string]any{"id": "a", "prompt": "p", "score": score}}, "spec", "items")), client.DryRunAll)
			parsed, jsonl := items.ParseJSONL(fmt.Appendf(nil, `{"id":"a","prompt":"p","score":%q}`+"\n", score))
			Expect(inline == nil).To(Equal(jsonl == nil), "score %q: the API server says %v, the JSONL parser %v (%v)", score, inline, jsonl, parsed)
		}
	})
})

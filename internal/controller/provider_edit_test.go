package controller

import (
	"context"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	. "github.com/onsi/gomega/gstruct"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	llmv1 "github.com/llmquota/llmquota/api/v1alpha1"
	"github.com/llmquota/llmquota/internal/emulator"
	"github.com/llmquota/llmquota/internal/metrics"
)

// Issue 13, item 2: editing a provider's limits, retry policy or cost
// alerts while its batch runs changes them in place: no call in flight is
// cancelled and sent again, and the quota windows keep what was sent.
var _ = Describe("Editing a provider mid-batch", func() {
	ctx := context.Background()

	It("keeps the calls in flight and the quota windows: no call is sent twice", func() {
		ns := newNamespace()
		emu, url := emulate(emulator.Config{Latency: 300 * time.Millisecond})
		p := providerFor(ns, url, nil)
		b := batchOf(ns, "steady", p.Name, 20, nil)
		Eventually(func() int { return len(emu.Log()) }, timeout, 10*time.Millisecond).Should(BeNumerically(">=", 4))

		edit := `{"spec":{"limits":{"requestsPerMinute":500,"requestsPerHour":5000,"maxConcurrency":3},` +
			`"retry":{"maxRetries":5},"cost":{"inputPerMillionTokens":"0.10","alerts":{"daily":"1.00","monthly":"10.00"}}}}`
		Expect(k8sClient.Patch(ctx, p, client.RawPatch(types.MergePatchType, []byte(edit)))).To(Succeed())
		var got llmv1.LLMProvider
		Eventually(func(g Gomega) {
			g.Expect(k8sClient.Get(ctx, types.NamespacedName{Name: p.Name}, &got)).To(Succeed())
			g.Expect(got.Status.ObservedGeneration).To(Equal(got.Generation))
		}, timeout, interval).Should(Succeed())

		waitFinished(b, timeout)
		log := emu.Log()
		seen := map[string]int{}
		for _, r := range log {
			seen[r.PromptHash]++
		}
		Expect(log).To(HaveLen(20), "calls sent again after the edit")
		Expect(seen).To(HaveLen(20))
		Expect(testutil.ToFloat64(metrics.RequestsTotal.WithLabelValues(p.Name, "Succeeded"))).To(Equal(20.0),
			"llmquota_provider_requests_total counts every call across the edit")
		By("and the new limits show, counting what was sent before the edit")
		Eventually(func(g Gomega) {
			g.Expect(k8sClient.Get(ctx, types.NamespacedName{Name: p.Name}, &got)).To(Succeed())
			g.Expect(got.Status.Usage.Minute).To(PointTo(And(HaveField("Limit", BeNumerically("==", 500)), HaveField("Used", BeNumerically("==", 20)))))
		}, timeout, interval).Should(Succeed())
	})
})

var _ = Describe("Moving a provider to another endpoint mid-batch", func() {
	ctx := context.Background()

	It("lets the calls in flight finish first: no call is sent twice", func() {
		ns := newNamespace()
		before, oldURL := emulate(emulator.Config{Latency: 500 * time.Millisecond})
		after, newURL := emulate(emulator.Config{Latency: 50 * time.Millisecond})
		p := providerFor(ns, oldURL, nil)
		b := batchOf(ns, "moving", p.Name, 12, nil)
		Eventually(func() int { return len(before.Log()) }, timeout, 10*time.Millisecond).Should(BeNumerically(">=", 2))

		Expect(k8sClient.Patch(ctx, p, client.RawPatch(types.MergePatchType, []byte(`{"spec":{"endpoint":"`+newURL+`"}}`)))).To(Succeed())
		waitFinished(b, timeout)
		seen := map[string]int{}
		for _, r := range append(before.Log(), after.Log()...) {
			seen[r.PromptHash]++
		}
		Expect(seen).To(HaveLen(12))
		for prompt, n := range seen {
			Expect(n).To(Equal(1), "prompt %s sent %d times across the move", prompt, n)
		}
		Expect(after.Log()).NotTo(BeEmpty(), "nothing went to the new endpoint")
	})
})

package controller

import (
	"context"
	"encoding/json"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	llmv1 "github.com/llmquota/llmquota/api/v1alpha1"
	"github.com/llmquota/llmquota/internal/emulator"
)

// Issue 28: the LLMProvider status has one writer, its reconcile, which
// applies it server-side; status fields written by an earlier manager
// with updates and patches are handed to it, so none is kept for ever by
// an owner that no longer writes.
var _ = Describe("The LLMProvider status", func() {
	It("is applied by one field manager, which takes over what earlier writers left", func() {
		ctx := context.Background()
		ns := newNamespace()
		_, url := emulate(emulator.Config{})
		p := providerFor(ns, url, nil)
		waitReady(p)
		var base llmv1.LLMProvider // what the reconcile applied
		Eventually(func(g Gomega) []string {
			g.Expect(k8sClient.Get(ctx, client.ObjectKeyFromObject(p), &base)).To(Succeed())
			return statusWriters(&base)
		}, timeout, interval).Should(ConsistOf(fieldManagerProviderStatus + "/Apply"))

		By("an earlier manager's writes: a condition and a commitment, as updates under its field managers")
		old := func(manager string, status map[string]any) {
			data, err := json.Marshal(map[string]any{"status": status})
			Expect(err).NotTo(HaveOccurred())
			Expect(k8sClient.Status().Patch(ctx, p.DeepCopy(), client.RawPatch("application/merge-patch+json", data), client.FieldOwner(manager))).To(Succeed())
		}
		// A merge patch replaces the whole list: the conditions it sends are
		// the ones there, and Stale.
		conditions := append(base.Status.DeepCopy().Conditions, metav1.Condition{Type: "Stale", Status: metav1.ConditionTrue, Reason: "Old",
			Message: "left by an earlier manager", LastTransitionTime: metav1.Now()})
		old("manager", map[string]any{"conditions": conditions})
		old("llmquota-manager-budget", map[string]any{"cost": map[string]any{"committed": map[string]any{
			"day": "2026-01-01", "today": "1.00", "month": "2026-01", "thisMonth": "1.00"}}})

		apply := func(r *LLMProviderReconciler) *llmv1.LLMProvider { // the status of base again, as a reconcile computes it
			var got llmv1.LLMProvider
			Expect(k8sClient.Get(ctx, client.ObjectKeyFromObject(p), &got)).To(Succeed())
			got.Status = *base.Status.DeepCopy()
			Expect(r.applyStatus(ctx, &got)).To(Succeed())
			Expect(k8sClient.Get(ctx, client.ObjectKeyFromObject(p), &got)).To(Succeed())
			return &got
		}
		By("applied without taking over, what they wrote stays (the defect the take-over fixes)")
		kept := &LLMProviderReconciler{Client: k8sClient, APIReader: k8sClient}
		kept.adopted.Store(p.UID, true)
		got := apply(kept)
		Expect(meta.FindStatusCondition(got.Status.Conditions, "Stale")).NotTo(BeNil())
		Expect(statusWriters(got)).To(ContainElements("manager/Update", "llmquota-manager-budget/Update"))

		By("a new manager's first apply takes their fields over, and drops what it does not set")
		got = apply(&LLMProviderReconciler{Client: k8sClient, APIReader: k8sClient})
		Expect(meta.FindStatusCondition(got.Status.Conditions, "Stale")).To(BeNil())
		Expect(got.Status.Cost).To(HaveField("Committed", BeNil()))
		Expect(statusWriters(got)).To(ConsistOf(fieldManagerProviderStatus + "/Apply"))
		Expect(meta.FindStatusCondition(got.Status.Conditions, llmv1.ConditionReady)).NotTo(BeNil(), "what it sets stays")
	})
})

var _ = Describe("The LLMProvider status, applied", func() {
	It("drops an object whose every field went back to zero, which server-side apply would leave null", func() {
		ctx := context.Background()
		_, url := emulate(emulator.Config{})
		p := providerFor(newNamespace(), url, nil)
		waitReady(p)
		r := &LLMProviderReconciler{Client: k8sClient, APIReader: k8sClient}
		apply := func(batch *llmv1.LaneUsage) error {
			var got llmv1.LLMProvider
			Expect(k8sClient.Get(ctx, client.ObjectKeyFromObject(p), &got)).To(Succeed())
			got.Status.Usage.Batch = batch
			return r.applyStatus(ctx, &got)
		}
		Expect(apply(&llmv1.LaneUsage{CallsLastMinute: 5, InFlight: 1})).To(Succeed())
		Expect(apply(&llmv1.LaneUsage{})).To(Succeed(), "a lane whose counts all went back to zero")
		var got llmv1.LLMProvider
		Expect(k8sClient.Get(ctx, client.ObjectKeyFromObject(p), &got)).To(Succeed())
		Expect(got.Status.Usage.Batch).To(Or(BeNil(), Equal(&llmv1.LaneUsage{})))
	})
})

// statusWriters lists the field managers of o's status as manager/operation.
func statusWriters(o metav1.Object) []string {
	var out []string
	for _, f := range o.GetManagedFields() {
		if f.Subresource == "status" {
			out = append(out, f.Manager+"/"+string(f.Operation))
		}
	}
	return out
}

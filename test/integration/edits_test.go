package integration

import (
	"context"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// Issue 13, item 1: a batch's work is fixed once admitted (status.startTime
// set), as a Job's template is; suspend, priority, priorityClassName,
// activeDeadlineSeconds and ttlSecondsAfterFinished still change a
// running batch. The policy in
// config/policy refuses the rest, naming each field that changed.
var _ = Describe("InferenceBatch edits", func() {
	ctx := context.Background()

	create := func() *unstructured.Unstructured {
		u := manifest(goodBatch)
		Expect(k8sClient.Create(ctx, u)).To(Succeed())
		DeferCleanup(func() { _ = k8sClient.Delete(ctx, u) })
		return u
	}
	admit := func(u *unstructured.Unstructured) {
		Expect(k8sClient.Status().Patch(ctx, u, client.RawPatch(types.MergePatchType, []byte(`{"status":{"startTime":"2026-11-27T09:00:00Z"}}`)))).To(Succeed())
	}
	patch := func(u *unstructured.Unstructured, spec string) error {
		return k8sClient.Patch(ctx, u.DeepCopy(), client.RawPatch(types.MergePatchType, []byte(`{"spec":`+spec+`}`)))
	}

	It("lets every field change before admission", func() {
		u := create()
		Expect(patch(u, `{"model":"other","minScore":"0.5","batchSize":2,"items":[{"id":"c","prompt":"third"}]}`)).To(Succeed())
	})

	It("refuses a repeated id brought in by an edit, as at create", func() {
		err := patch(create(), `{"items":[{"id":"c","prompt":"third"},{"id":"c","prompt":"again"}]}`)
		Expect(err).To(MatchError(ContainSubstring("spec.items: item ids must be unique within the batch; repeated: c")))
	})

	DescribeTable("refuses a change of the work once admitted, naming the fields",
		func(spec string, want string) {
			u := create()
			admit(u)
			err := patch(u, spec)
			Expect(err).To(HaveOccurred(), "%s was accepted on an admitted batch", spec)
			Expect(err.Error()).To(ContainSubstring(want))
			Expect(err.Error()).To(ContainSubstring("once the batch is admitted"))
		},
		Entry("model", `{"model":"other"}`, "spec.model cannot change"),
		Entry("providerRef", `{"providerRef":{"name":"anthropic"}}`, "spec.providerRef cannot change"),
		Entry("maxTokens added", `{"maxTokens":64}`, "spec.maxTokens cannot change"),
		Entry("items", `{"items":[{"id":"a","prompt":"changed","score":"0.50"}]}`, "spec.items cannot change"),
		Entry("minScore", `{"minScore":"0.05"}`, "spec.minScore cannot change"),
		Entry("batchSize", `{"batchSize":50}`, "spec.batchSize cannot change"),
		Entry("batchDelayMilliseconds", `{"batchDelayMilliseconds":10000}`, "spec.batchDelayMilliseconds cannot change"),
		Entry("output", `{"output":{"kind":"S3","s3":{"endpoint":"http://minio:9000","bucket":"results","credentialsSecretName":"s3"}}}`, "spec.output cannot change"),
		Entry("system added", `{"system":"be brief"}`, "spec.system cannot change"),
		Entry("several at once, each named", `{"model":"other","batchSize":50,"cache":"Enabled"}`, "spec.batchSize, spec.cache, spec.model cannot change"),
	)

	It("lets suspend, priorityClassName, activeDeadlineSeconds and ttlSecondsAfterFinished change a running batch", func() {
		u := create()
		admit(u)
		Expect(patch(u, `{"suspend":true,"priorityClassName":"urgent","activeDeadlineSeconds":600,"ttlSecondsAfterFinished":60}`)).To(Succeed())
		var got unstructured.Unstructured
		got.SetGroupVersionKind(u.GroupVersionKind())
		Expect(k8sClient.Get(ctx, client.ObjectKeyFromObject(u), &got)).To(Succeed())
		Expect(got.Object["spec"]).To(HaveKeyWithValue("priorityClassName", "urgent"))
	})

	It("lets a raw priority only into a namespace an admin labelled, and never beside a class", func() {
		ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "raw-priority-"}}
		Expect(k8sClient.Create(ctx, ns)).To(Succeed())
		in := func() *unstructured.Unstructured {
			u := manifest(goodBatch)
			u.SetNamespace(ns.Name)
			return u
		}
		raw := in()
		Expect(unstructured.SetNestedField(raw.Object, int64(10), "spec", "priority")).To(Succeed())
		err := k8sClient.Create(ctx, raw.DeepCopy())
		Expect(err).To(MatchError(ContainSubstring("spec.priority: a raw priority other than 0 needs the namespace label llmquota.dev/raw-priority=allowed")))
		Expect(apierrors.IsForbidden(err)).To(BeTrue(), "%v", err)

		By("a priority of 0 and a class need no label")
		zero, class := in(), in()
		Expect(unstructured.SetNestedField(zero.Object, int64(0), "spec", "priority")).To(Succeed())
		Expect(unstructured.SetNestedField(class.Object, "urgent", "spec", "priorityClassName")).To(Succeed())
		Expect(k8sClient.Create(ctx, zero)).To(Succeed())
		Expect(k8sClient.Create(ctx, class)).To(Succeed())
		Expect(patch(class, `{"priority":5}`)).To(MatchError(ContainSubstring("set priorityClassName or priority, not both")))

		By("the admin's label lets it in")
		Expect(k8sClient.Patch(ctx, ns, client.RawPatch(types.MergePatchType, []byte(`{"metadata":{"labels":{"llmquota.dev/raw-priority":"allowed"}}}`)))).To(Succeed())
		Eventually(func() error { return k8sClient.Create(ctx, raw.DeepCopy()) }, "10s", "200ms").Should(Succeed())
	})
})

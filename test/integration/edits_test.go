package integration

import (
	"context"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// Issue 13, item 1: a batch's work is fixed once admitted (status.startTime
// set), as a Job's template is; suspend, priority and activeDeadlineSeconds
// still change a running batch.
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

	DescribeTable("refuses a change of the work once admitted, naming the fields",
		func(spec string, want string) {
			u := create()
			admit(u)
			err := patch(u, spec)
			Expect(err).To(HaveOccurred(), "%s was accepted on an admitted batch", spec)
			Expect(err.Error()).To(ContainSubstring(want))
			Expect(err.Error()).To(ContainSubstring("once the batch is admitted"))
		},
		Entry("model", `{"model":"other"}`, "spec.providerRef, model, system, maxTokens and temperature"),
		Entry("providerRef", `{"providerRef":{"name":"anthropic"}}`, "spec.providerRef, model"),
		Entry("maxTokens added", `{"maxTokens":64}`, "maxTokens"),
		Entry("items", `{"items":[{"id":"a","prompt":"changed","score":"0.50"}]}`, "spec.items, itemsFrom and minScore"),
		Entry("minScore", `{"minScore":"0.05"}`, "spec.items, itemsFrom and minScore"),
		Entry("batchSize", `{"batchSize":50}`, "spec.batchSize, batchDelayMilliseconds, cache and output"),
		Entry("batchDelayMilliseconds", `{"batchDelayMilliseconds":10000}`, "spec.batchSize, batchDelayMilliseconds"),
		Entry("output", `{"output":{"kind":"S3","s3":{"endpoint":"http://minio:9000","bucket":"results","credentialsSecretName":"s3"}}}`, "cache and output"),
	)

	It("lets suspend, priority and activeDeadlineSeconds change a running batch", func() {
		u := create()
		admit(u)
		Expect(patch(u, `{"suspend":true,"priority":10,"activeDeadlineSeconds":600}`)).To(Succeed())
		var got unstructured.Unstructured
		got.SetGroupVersionKind(u.GroupVersionKind())
		Expect(k8sClient.Get(ctx, client.ObjectKeyFromObject(u), &got)).To(Succeed())
		Expect(got.Object["spec"]).To(HaveKeyWithValue("priority", BeNumerically("==", 10)))
	})
})

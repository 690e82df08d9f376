package controller

import (
	"context"
	"fmt"
	"strings"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	llmv1 "github.com/llmquota/llmquota/api/v1alpha1"
	"github.com/llmquota/llmquota/internal/emulator"
	"github.com/llmquota/llmquota/internal/results"
)

var _ = Describe("The ConfigMap sink's size rule", func() {
	It("warns when a batch of more than 10,000 items writes its results to etcd", func() {
		ns := newNamespace()
		var b strings.Builder
		for i := range results.ConfigMapItemsAdvised + 1 {
			fmt.Fprintf(&b, "{\"id\":\"n%05d\",\"prompt\":\"p\",\"score\":0.01}\n", i) // all filtered: no calls
		}
		Expect(k8sClient.Create(context.Background(), &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "many"},
			Data: map[string]string{"items.jsonl": b.String()}})).To(Succeed())
		_, url := emulate(emulator.Config{})
		p := providerFor(ns, url, nil)
		batch := batchOf(ns, "many", p.Name, 0, func(s *llmv1.InferenceBatchSpec) {
			s.Items = nil
			s.ItemsFrom = &llmv1.ItemsSource{ConfigMapKeyRef: &llmv1.ConfigMapKeyReference{Name: "many", Key: "items.jsonl"}}
		})
		got := waitFinished(batch, timeout)
		Expect(got.Status.Counts.Filtered).To(BeEquivalentTo(results.ConfigMapItemsAdvised + 1))
		Eventually(func() []string { return eventReasons(batch) }, timeout, interval).Should(ContainElement("Warning/" + llmv1.ReasonLargeResultsInEtcd))
	})
})

var _ = Describe("A key written with --from-file", func() {
	It("works: its trailing newline is not part of the key", func() {
		ns := newNamespace()
		Expect(k8sClient.Create(context.Background(), &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "from-file"},
			Data: map[string][]byte{"key": []byte(emulatorKey + "\n")}})).To(Succeed())
		_, url := emulate(emulator.Config{})
		p := providerFor(ns, url, func(s *llmv1.LLMProviderSpec) {
			s.CredentialsSecretRef = &llmv1.SecretKeyReference{Namespace: ns, Name: "from-file", Key: "key"}
		})
		got := waitFinished(batchOf(ns, "newline", p.Name, 3, nil), timeout)
		Expect(got.Status.Counts.Succeeded).To(BeEquivalentTo(3))
	})
})

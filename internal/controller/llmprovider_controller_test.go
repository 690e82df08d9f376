package controller

import (
	"context"
	"fmt"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	llmv1 "github.com/llmquota/llmquota/api/v1alpha1"
)

var providerSeq int

// hostedProvider returns a Gemini provider whose key lives in ns/name[key].
func hostedProvider(ns, secret string) *llmv1.LLMProvider {
	providerSeq++
	return &llmv1.LLMProvider{
		ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("gemini-%s-%d", ns, providerSeq)},
		Spec: llmv1.LLMProviderSpec{NamespaceSelector: &metav1.LabelSelector{},
			Type: llmv1.ProviderGemini,
			CredentialsSecretRef: &llmv1.SecretKeyReference{
				Namespace: ns, Name: llmv1.LocalObjectName(secret), Key: "api-key",
			},
		},
	}
}

func ollamaProvider(name string, fallback string) *llmv1.LLMProvider {
	p := &llmv1.LLMProvider{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: llmv1.LLMProviderSpec{NamespaceSelector: &metav1.LabelSelector{},
			Type:   llmv1.ProviderOllama,
			Ollama: &llmv1.OllamaSpec{Namespace: "llm", PodSelector: metav1.LabelSelector{MatchLabels: map[string]string{"app": "ollama"}}},
		},
	}
	if fallback != "" {
		p.Spec.Fallback = &llmv1.ProviderReference{Name: llmv1.LocalObjectName(fallback)}
	}
	return p
}

// readyOf returns the provider's Ready condition once it is observed at the
// current generation, so a stale condition is never mistaken for the answer.
func readyOf(name string) func(g Gomega) *metav1.Condition {
	return func(g Gomega) *metav1.Condition {
		var p llmv1.LLMProvider
		g.Expect(k8sClient.Get(context.Background(), types.NamespacedName{Name: name}, &p)).To(Succeed())
		g.Expect(p.Status.ObservedGeneration).To(Equal(p.Generation))
		c := meta.FindStatusCondition(p.Status.Conditions, llmv1.ConditionReady)
		g.Expect(c).NotTo(BeNil())
		return c
	}
}

func haveReady(status metav1.ConditionStatus, reason string) OmegaMatcher {
	return And(HaveField("Status", status), HaveField("Reason", reason))
}

var _ = Describe("LLMProvider readiness", func() {
	var ns string
	ctx := context.Background()

	BeforeEach(func() { ns = newNamespace() })

	It("waits for the credentials Secret and its key, and turns Ready by itself", func() {
		p := hostedProvider(ns, "gemini-key")
		Expect(k8sClient.Create(ctx, p)).To(Succeed())
		Eventually(readyOf(p.Name), timeout, interval).Should(haveReady(metav1.ConditionFalse, llmv1.ReasonSecretNotFound))

		secret := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "gemini-key"},
			Data: map[string][]byte{"other": []byte("x")}}
		Expect(k8sClient.Create(ctx, secret)).To(Succeed())
		Eventually(readyOf(p.Name), timeout, interval).Should(haveReady(metav1.ConditionFalse, llmv1.ReasonKeyNotFound))

		secret.Data["api-key"] = []byte("sk-test-secret-value")
		Expect(k8sClient.Update(ctx, secret)).To(Succeed())
		Eventually(readyOf(p.Name), timeout, interval).Should(haveReady(metav1.ConditionTrue, llmv1.ReasonConfigured))

		Expect(k8sClient.Delete(ctx, secret)).To(Succeed())
		Eventually(readyOf(p.Name), timeout, interval).Should(haveReady(metav1.ConditionFalse, llmv1.ReasonSecretNotFound))

		By("never copying the key into status or events")
		var got llmv1.LLMProvider
		Expect(k8sClient.Get(ctx, client.ObjectKeyFromObject(p), &got)).To(Succeed())
		Expect(fmt.Sprintf("%+v", got.Status)).NotTo(ContainSubstring("sk-test-secret-value"))
		var evs eventsv1.EventList
		Expect(k8sClient.List(ctx, &evs)).To(Succeed())
		for _, e := range evs.Items {
			Expect(e.Note).NotTo(ContainSubstring("sk-test-secret-value"))
		}
	})

	It("treats an empty key as missing", func() {
		secret := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "empty"},
			Data: map[string][]byte{"api-key": {}}}
		Expect(k8sClient.Create(ctx, secret)).To(Succeed())
		p := hostedProvider(ns, "empty")
		Expect(k8sClient.Create(ctx, p)).To(Succeed())
		Eventually(readyOf(p.Name), timeout, interval).Should(haveReady(metav1.ConditionFalse, llmv1.ReasonKeyNotFound))
	})

	It("records a Warning Event when the provider is not Ready", func() {
		p := hostedProvider(ns, "absent")
		Expect(k8sClient.Create(ctx, p)).To(Succeed())
		Eventually(func(g Gomega) []string {
			var evs eventsv1.EventList
			g.Expect(k8sClient.List(ctx, &evs)).To(Succeed())
			var reasons []string
			for _, e := range evs.Items {
				if e.Regarding.Name == p.Name && e.Type == corev1.EventTypeWarning {
					reasons = append(reasons, e.Reason)
				}
			}
			return reasons
		}, timeout, interval).Should(ContainElement(llmv1.ReasonSecretNotFound))
	})

	It("waits for a missing fallback provider, then turns Ready", func() {
		a := ollamaProvider("local-"+ns, "backup-"+ns)
		Expect(k8sClient.Create(ctx, a)).To(Succeed())
		Eventually(readyOf(a.Name), timeout, interval).Should(haveReady(metav1.ConditionFalse, llmv1.ReasonFallbackNotFound))

		Expect(k8sClient.Create(ctx, ollamaProvider("backup-"+ns, ""))).To(Succeed())
		Eventually(readyOf(a.Name), timeout, interval).Should(haveReady(metav1.ConditionTrue, llmv1.ReasonConfigured))
	})

	It("finds a fallback cycle made by a later change, and recovers when it is broken", func() {
		a, b, c := "a-"+ns, "b-"+ns, "c-"+ns
		Expect(k8sClient.Create(ctx, ollamaProvider(a, b))).To(Succeed())
		Expect(k8sClient.Create(ctx, ollamaProvider(b, c))).To(Succeed())
		Expect(k8sClient.Create(ctx, ollamaProvider(c, ""))).To(Succeed())
		for _, n := range []string{a, b, c} {
			Eventually(readyOf(n), timeout, interval).Should(haveReady(metav1.ConditionTrue, llmv1.ReasonConfigured))
		}

		By("pointing c back at a")
		var pc llmv1.LLMProvider
		Expect(k8sClient.Get(ctx, types.NamespacedName{Name: c}, &pc)).To(Succeed())
		pc.Spec.Fallback = &llmv1.ProviderReference{Name: llmv1.LocalObjectName(a)}
		Expect(k8sClient.Update(ctx, &pc)).To(Succeed())
		for _, n := range []string{a, b, c} {
			Eventually(readyOf(n), timeout, interval).Should(haveReady(metav1.ConditionFalse, llmv1.ReasonFallbackCycle))
		}
		Expect(readyOf(a)(Default).Message).To(ContainSubstring(fmt.Sprintf("%s -> %s -> %s -> %s", a, b, c, a)))

		By("breaking the cycle")
		Expect(k8sClient.Get(ctx, types.NamespacedName{Name: c}, &pc)).To(Succeed())
		pc.Spec.Fallback = nil
		Expect(k8sClient.Update(ctx, &pc)).To(Succeed())
		for _, n := range []string{a, b, c} {
			Eventually(readyOf(n), timeout, interval).Should(haveReady(metav1.ConditionTrue, llmv1.ReasonConfigured))
		}
	})

	It("refuses a provider that falls back to itself at apply", func() {
		self := "self-" + ns
		Expect(k8sClient.Create(ctx, ollamaProvider(self, self))).To(MatchError(ContainSubstring("spec.fallback must name another LLMProvider, not this one")))
	})
})

var _ = Describe("chainReaches", func() {
	DescribeTable("follows fallbacks",
		func(fallbackOf map[string]string, start, target string, want bool) {
			Expect(chainReaches(fallbackOf, start, target)).To(Equal(want))
		},
		Entry("direct", map[string]string{"a": "b"}, "a", "b", true),
		Entry("transitive", map[string]string{"a": "b", "b": "c"}, "a", "c", true),
		Entry("not on the chain", map[string]string{"a": "b", "c": "d"}, "a", "d", false),
		Entry("a loop that never reaches the target", map[string]string{"a": "b", "b": "a"}, "a", "z", false),
		Entry("no fallback", map[string]string{}, "a", "b", false),
	)
})

var _ = Describe("checkCredentials with --secret-namespaces", func() {
	It("names a Secret outside the namespaces the manager may read, without reading it", func() {
		r := &LLMProviderReconciler{SecretNamespaces: []string{"llmquota-system"}}
		cond, err := r.checkCredentials(context.Background(), hostedProvider("team-a", "key"))
		Expect(err).NotTo(HaveOccurred())
		Expect(cond).To(haveReady(metav1.ConditionFalse, llmv1.ReasonSecretNotFound))
		Expect(cond.Message).To(ContainSubstring(`"team-a"`))
		Expect(cond.Message).To(ContainSubstring("--secret-namespaces=llmquota-system"))
	})
})

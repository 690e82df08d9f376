package controller

import (
	"context"
	"encoding/json"
	"fmt"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	llmv1 "github.com/llmquota/llmquota/api/v1alpha1"
	"github.com/llmquota/llmquota/internal/emulator"
)

// The node agent's side is played by the specs here: they set the pods'
// ModelWarm condition and report annotation the way the agent does (the
// agent itself is tested against a real Ollama in internal/agent).
var _ = Describe("Ollama pools", func() {
	var ns string
	BeforeEach(func() { ns = newNamespace() })

	It("shows the pods' warm state, sends only to warm pods, and waits while none is", func() {
		emuA, urlA := emulate(emulator.Config{})
		emuB, urlB := emulate(emulator.Config{})
		a := ollamaPod(ns, "ollama-a", urlA)
		b := ollamaPod(ns, "ollama-b", urlB)
		agentSays(a, corev1.ConditionTrue, llmv1.PodReasonWarm, "model tiny warm in 420ms on attempt 1 of 3",
			&llmv1.EndpointReport{Model: "tiny", VRAMBytes: 5 << 30, GPUMemoryUsedBytes: 20 << 30, GPUMemoryTotalBytes: 80 << 30, Source: llmv1.GPUSourceNVML})
		agentSays(b, corev1.ConditionFalse, llmv1.PodReasonWarmupFailed, "warmup of tiny failed after 3 attempts: HTTP 500", nil)
		p := ollamaPool(ns, "")

		Eventually(providerStatus(p), timeout, interval).Should(And(
			HaveField("Endpoints", ConsistOf(
				And(HaveField("Name", "ollama-a"), HaveField("State", llmv1.EndpointWarm), HaveField("Address", urlA), HaveField("Model", "tiny"),
					HaveField("VRAMBytes", int64(5<<30)), HaveField("GPUMemoryUsedBytes", int64(20<<30)), HaveField("GPUMemoryTotalBytes", int64(80<<30)),
					HaveField("Node", "gpu-1")),
				And(HaveField("Name", "ollama-b"), HaveField("State", llmv1.EndpointFailed), HaveField("Message", ContainSubstring("after 3 attempts"))))),
			WithTransform(warmOf, And(HaveField("Status", metav1.ConditionTrue), HaveField("Message", "1/2 endpoints warm")))))

		first := batchOf(ns, "first", p.Name, 12, nil)
		waitFinished(first, timeout)
		Expect(emuA.Log()).To(HaveLen(12))
		Expect(emuB.Log()).To(BeEmpty(), "nothing goes to the pod whose warmup failed")

		By("no pod warm: Warm=False and the items wait")
		agentSays(a, corev1.ConditionFalse, llmv1.PodReasonWarming, "model tiny is not resident; warming", nil)
		Eventually(providerStatus(p), timeout, interval).Should(WithTransform(warmOf, And(
			HaveField("Status", metav1.ConditionFalse), HaveField("Reason", "NoWarmEndpoint"), HaveField("Message", "0/2 endpoints warm; calls wait until one is"))))
		second := batchOf(ns, "second", p.Name, 6, nil)
		Eventually(getBatch(second), timeout, interval).Should(haveCondition(llmv1.ConditionProgressing, metav1.ConditionFalse, "NoWarmEndpoint"))
		sentAllItCould(p.Name)
		Expect(len(emuA.Log())+len(emuB.Log())).To(Equal(12), "sent with no pod warm")

		By("another pod turns warm: the waiting items go to it")
		agentSays(b, corev1.ConditionTrue, llmv1.PodReasonWarm, "model tiny warm in 300ms on attempt 2 of 3", nil)
		waitFinished(second, timeout)
		Expect(emuB.Log()).To(HaveLen(6))
		Expect(emuA.Log()).To(HaveLen(12))
	})

	It("sends to the pool's Service address while any pod is warm", func() {
		emuSvc, urlSvc := emulate(emulator.Config{})
		_, urlPod := emulate(emulator.Config{})
		pod := ollamaPod(ns, "ollama-0", urlPod)
		agentSays(pod, corev1.ConditionTrue, llmv1.PodReasonWarm, "model tiny is resident", nil)
		p := ollamaPool(ns, urlSvc)
		waitFinished(batchOf(ns, "via-service", p.Name, 4, nil), timeout)
		Expect(emuSvc.Log()).To(HaveLen(4))
	})

	It("asks the node agent for a forced cleanup after repeated server errors from a pod, once per request", func() {
		_, url := emulate(emulator.Config{Faults: emulator.FaultRates{ServerError: 1}})
		pod := ollamaPod(ns, "ollama-0", url)
		agentSays(pod, corev1.ConditionTrue, llmv1.PodReasonWarm, "model tiny is resident", nil)
		p := ollamaPool(ns, "")
		batchOf(ns, "failing", p.Name, 1, nil) // 1 + 3 retries, all 500

		requested := func() string { return getPod(pod).Annotations[llmv1.AnnotationCleanupRequested] }
		Eventually(requested, timeout, interval).ShouldNot(BeEmpty())
		first := requested()
		Eventually(func() []string { return providerEvents(p.Name, "CleanupRequested") }, timeout, interval).Should(ContainElement(ContainSubstring("pod " + ns + "/ollama-0 answered 3 calls in a row with server errors")))

		By("while the agent has not handled it, no new request")
		waitFinished(batchOf(ns, "failing-more", p.Name, 1, nil), timeout) // its four failures seen by the pool
		agentSays(pod, corev1.ConditionTrue, llmv1.PodReasonWarm, "model tiny is resident; looked again", nil)
		Eventually(providerStatus(p), timeout, interval).Should(HaveField("Endpoints", ContainElement(HaveField("Message", "model tiny is resident; looked again"))))
		// The reconcile that shows the new message began after the batch
		// ended and asks for cleanups before it writes status: it had its
		// chance to ask again.
		Expect(requested()).To(Equal(first))

		By("once handled, the next run of errors asks again")
		annotatePod(pod, llmv1.AnnotationCleanupHandled, first)
		batchOf(ns, "failing-again", p.Name, 1, nil)
		Eventually(requested, timeout, interval).ShouldNot(Equal(first))
	})

	It("shows each pod's learned concurrency under adaptive limits, lowered when its GPU memory is nearly full", func() {
		_, url := emulate(emulator.Config{})
		pod := ollamaPod(ns, "ollama-0", url)
		agentSays(pod, corev1.ConditionTrue, llmv1.PodReasonWarm, "model tiny is resident",
			&llmv1.EndpointReport{Model: "tiny", GPUMemoryUsedBytes: 20 << 30, GPUMemoryTotalBytes: 80 << 30, Source: llmv1.GPUSourceNVML})
		p := ollamaPool(ns, "")
		patch := client.MergeFrom(p.DeepCopy())
		p.Spec.Limits.Adaptive = llmv1.AdaptiveLimitsAIMD
		Expect(k8sClient.Patch(context.Background(), p, patch)).To(Succeed())
		limitOf := func(g Gomega) *int32 {
			st := providerStatus(p)(g)
			g.Expect(st.Endpoints).To(HaveLen(1))
			return st.Endpoints[0].ConcurrencyLimit
		}
		Eventually(limitOf, timeout, interval).Should(HaveValue(BeEquivalentTo(2)), "the declared maxConcurrency")
		agentSays(pod, corev1.ConditionTrue, llmv1.PodReasonWarm, "model tiny is resident",
			&llmv1.EndpointReport{Model: "tiny", GPUMemoryUsedBytes: 78 << 30, GPUMemoryTotalBytes: 80 << 30, Source: llmv1.GPUSourceNVML})
		Eventually(limitOf, timeout, interval).Should(HaveValue(BeEquivalentTo(1)), "97% of GPU memory in use, no call in flight")
	})

	It("says when no pod matches the selector", func() {
		p := ollamaPool(ns, "")
		Eventually(providerStatus(p), timeout, interval).Should(WithTransform(warmOf, And(
			HaveField("Status", metav1.ConditionFalse), HaveField("Reason", "NoEndpoints"),
			HaveField("Message", fmt.Sprintf("no pod in namespace %s matches spec.ollama.podSelector; calls wait until one is", ns)))))
	})
})

// ollamaPool creates an Ollama pool of the pods labelled app=ollama in ns.
func ollamaPool(ns, endpoint string) *llmv1.LLMProvider {
	providerSeq++
	p := &llmv1.LLMProvider{
		ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("pool-%s-%d", ns, providerSeq)},
		Spec: llmv1.LLMProviderSpec{NamespaceSelector: &metav1.LabelSelector{},
			Type: llmv1.ProviderOllama, Model: "tiny", Endpoint: endpoint,
			Limits: llmv1.RateLimits{RequestsPerMinute: ptr.To[int32](600), MaxConcurrency: 2},
			Retry:  &llmv1.RetryPolicy{MaxRetries: ptr.To[int32](3), InitialBackoffMilliseconds: ptr.To[int32](10), MaxBackoffMilliseconds: ptr.To[int32](50)},
			Ollama: &llmv1.OllamaSpec{Namespace: ns, PodSelector: metav1.LabelSelector{MatchLabels: map[string]string{"app": "ollama"}}},
		},
	}
	Expect(k8sClient.Create(context.Background(), p)).To(Succeed())
	DeferCleanup(func() { Expect(client.IgnoreNotFound(k8sClient.Delete(context.Background(), p))).To(Succeed()) })
	return p
}

// ollamaPod creates a running pod of the pool whose Ollama is reached at
// url (the endpoint override annotation).
func ollamaPod(ns, name, url string) *corev1.Pod {
	ctx := context.Background()
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: map[string]string{"app": "ollama"},
			Annotations: map[string]string{llmv1.AnnotationOllamaEndpoint: url}},
		Spec: corev1.PodSpec{NodeName: "gpu-1", Containers: []corev1.Container{{Name: "ollama", Image: "ollama/ollama"}}},
	}
	Expect(k8sClient.Create(ctx, pod)).To(Succeed())
	DeferCleanup(func() {
		Expect(client.IgnoreNotFound(k8sClient.Delete(context.Background(), pod, client.GracePeriodSeconds(0)))).To(Succeed())
	})
	return pod
}

// agentSays sets the pod's ModelWarm condition, and its report when
// given, with the strategic merge patch of the status the agent sends.
func agentSays(pod *corev1.Pod, status corev1.ConditionStatus, reason, message string, report *llmv1.EndpointReport) {
	patch := map[string]any{"status": map[string]any{"phase": corev1.PodRunning, "podIP": "127.0.0.1", "conditions": []corev1.PodCondition{{
		Type: llmv1.PodConditionModelWarm, Status: status, Reason: reason, Message: message, LastTransitionTime: metav1.Now()}}}}
	if report != nil {
		raw, _ := json.Marshal(report)
		patch["metadata"] = map[string]any{"annotations": map[string]string{llmv1.AnnotationEndpointReport: string(raw)}}
	}
	data, _ := json.Marshal(patch)
	Expect(k8sClient.Status().Patch(context.Background(), pod, client.RawPatch(types.StrategicMergePatchType, data))).To(Succeed())
}

func annotatePod(pod *corev1.Pod, key, value string) {
	data, _ := json.Marshal(map[string]any{"metadata": map[string]any{"annotations": map[string]string{key: value}}})
	Expect(k8sClient.Patch(context.Background(), pod, client.RawPatch(types.MergePatchType, data))).To(Succeed())
}

func getPod(pod *corev1.Pod) *corev1.Pod {
	var p corev1.Pod
	Expect(k8sClient.Get(context.Background(), client.ObjectKeyFromObject(pod), &p)).To(Succeed())
	return &p
}

func providerStatus(p *llmv1.LLMProvider) func(Gomega) llmv1.LLMProviderStatus {
	return func(g Gomega) llmv1.LLMProviderStatus {
		var got llmv1.LLMProvider
		g.Expect(k8sClient.Get(context.Background(), client.ObjectKeyFromObject(p), &got)).To(Succeed())
		return got.Status
	}
}

func warmOf(s llmv1.LLMProviderStatus) *metav1.Condition {
	return meta.FindStatusCondition(s.Conditions, llmv1.ConditionWarm)
}

// providerEvents are the notes of a provider's Events with reason.
func providerEvents(name, reason string) []string {
	var evs eventsv1.EventList
	Expect(k8sClient.List(context.Background(), &evs)).To(Succeed())
	var out []string
	for _, e := range evs.Items {
		if e.Regarding.Name == name && e.Reason == reason {
			out = append(out, e.Note)
		}
	}
	return out
}

var _ = Describe("Ollama pools with --ollama-namespaces", func() {
	It("names a pool outside the namespaces the manager watches, and sends it nothing", func() {
		r := &LLMProviderReconciler{OllamaNamespaces: []string{"llm", "llm-gpu"}}
		p := &llmv1.LLMProvider{ObjectMeta: metav1.ObjectMeta{Name: "elsewhere"}, Spec: llmv1.LLMProviderSpec{NamespaceSelector: &metav1.LabelSelector{}, Type: llmv1.ProviderOllama,
			Ollama: &llmv1.OllamaSpec{Namespace: "team-a", PodSelector: metav1.LabelSelector{MatchLabels: map[string]string{"app": "ollama"}}}}}
		cond, err := r.observePool(context.Background(), p)
		Expect(err).NotTo(HaveOccurred())
		Expect(cond).To(And(HaveField("Status", metav1.ConditionFalse), HaveField("Reason", "NamespaceNotWatched"),
			HaveField("Message", `namespace "team-a" named by spec.ollama.namespace is not one the manager watches pods in (--ollama-namespaces=llm,llm-gpu)`)))
		Expect(r.pools.get("elsewhere").Len()).To(BeZero())
	})
})

package reconciler

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/NVIDIA/go-nvml/pkg/nvml"
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"github.com/prometheus/client_golang/prometheus/testutil"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	llmv1 "github.com/llmquota/llmquota/api/v1alpha1"
	"github.com/llmquota/llmquota/internal/agent/gpu"
	"github.com/llmquota/llmquota/internal/agent/ollama"
	"github.com/llmquota/llmquota/internal/ollamapod"
)

var _ = Describe("Node agent", func() {
	var ctx context.Context
	var ns string
	ollamaAPI := func() *ollama.Client { return ollama.New(ollamaSrv.URL, nil) }

	BeforeEach(func() {
		ctx = context.Background()
		// Every spec starts with nothing resident. A loaded machine's Ollama
		// can answer /api/ps with a 500 while the last spec's runner exits:
		// the setup asks again rather than failing the spec.
		Eventually(func() error {
			_, err := ollama.Unload(ctx, ollamaAPI(), []ollama.Model{{Name: "tiny-a"}, {Name: "tiny-b"}})
			return err
		}).WithTimeout(timeout).WithPolling(interval).Should(Succeed())
		nsObj := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "agent-"}}
		Expect(k8sClient.Create(ctx, nsObj)).To(Succeed())
		ns = nsObj.Name
	})

	It("loads the pool's model with spec.ollama.contextLength and says which context it got", func() {
		newPool(ctx, ns, "tiny-a", func(o *llmv1.OllamaSpec) { o.ContextLength = ptr.To[int32](512) })
		pod := newRunningPod(ctx, ns, "ollama-0", gpuNode, nil)
		Eventually(podWarm(ctx, pod)).WithTimeout(timeout).WithPolling(interval).Should(And(
			HaveField("Status", corev1.ConditionTrue), HaveField("Message", HaveSuffix(", context 512 tokens"))))
		running, err := ollamaAPI().PS(ctx)
		Expect(err).NotTo(HaveOccurred())
		r, ok := ollama.Resident(running, "tiny-a")
		Expect(ok).To(BeTrue())
		Expect(r.ContextLength).To(BeEquivalentTo(512), "Ollama's /api/ps: the model runs with the pool's context, not Ollama's default")
	})

	It("warms a cold pod, sets ModelWarm with latency and attempt, and reports it; pods on other nodes are not its business", func() {
		newPool(ctx, ns, "tiny-a", nil)
		pod := newRunningPod(ctx, ns, "ollama-0", gpuNode, nil)
		elsewhere := newRunningPod(ctx, ns, "ollama-elsewhere", "other-node", nil)

		Eventually(podWarm(ctx, pod)).WithTimeout(timeout).WithPolling(interval).Should(And(
			HaveField("Status", corev1.ConditionTrue), HaveField("Reason", llmv1.PodReasonWarm),
			HaveField("Message", MatchRegexp(`^model tiny-a warm in \d+(\.\d+)?m?s on attempt 1 of 3, context \d+ tokens$`))))
		Expect(resident(ctx, "tiny-a")).To(BeTrue(), "the model is resident in /api/ps")
		Expect(testutil.ToFloat64(warmups.WithLabelValues(ns, "ollama-0", "tiny-a"))).To(Equal(1.0))
		Eventually(func() []string { return eventReasons(ctx, ns, "ollama-0") }).WithTimeout(timeout).WithPolling(interval).Should(ContainElement(llmv1.PodReasonWarm))

		Eventually(report(ctx, pod)).WithTimeout(timeout).WithPolling(interval).Should(And(
			HaveField("Model", "tiny-a"), HaveField("Source", llmv1.GPUSourceNVML),
			HaveField("GPUMemoryTotalBytes", int64(8*80*gib)), HaveField("GPUMemoryUsedBytes", int64(20*gib+7*gib))))

		Expect(get(ctx, elsewhere)).To(Satisfy(func(p *corev1.Pod) bool {
			return ollamapod.WarmCondition(p) == nil && p.Annotations[llmv1.AnnotationEndpointReport] == ""
		}),
			"a pod of another node is left to that node's agent")
	})

	// Issue 13, item 8: the report right after a warm-up shows the memory
	// the model now holds, not the sample taken while it loaded.
	It("reads the GPUs again after a warm-up, so its first report counts the model", func() {
		const node = "gpu-node-slow"
		// GPUs sampled once an hour: only a read after the warm-up can see the model.
		startAgentSampling(testEnv.Config, node, func() (*gpu.Reader, error) { return gpu.Open(loadAwareH100("tiny-a")) }, time.Hour)
		newPool(ctx, ns, "tiny-a", nil)
		pod := newRunningPod(ctx, ns, "ollama-slow", node, nil)
		Eventually(podWarm(ctx, pod)).WithTimeout(timeout).WithPolling(interval).Should(HaveField("Status", corev1.ConditionTrue))
		Eventually(report(ctx, pod)).WithTimeout(timeout).WithPolling(interval).Should(
			HaveField("GPUMemoryUsedBytes", int64(20*gib+5*gib+7*gib)), "the report kept the reading from before the model loaded")
	})

	It("warms again after the model is unloaded or the container restarts", func() {
		newPool(ctx, ns, "tiny-a", nil)
		pod := newRunningPod(ctx, ns, "ollama-0", gpuNode, nil)
		Eventually(podWarm(ctx, pod)).WithTimeout(timeout).WithPolling(interval).Should(HaveField("Status", corev1.ConditionTrue))

		Expect(ollama.Unload(ctx, ollamaAPI(), []ollama.Model{{Name: "tiny-a"}})).Error().NotTo(HaveOccurred())
		Eventually(func() float64 { return testutil.ToFloat64(warmups.WithLabelValues(ns, "ollama-0", "tiny-a")) }).
			WithTimeout(timeout).WithPolling(interval).Should(Equal(2.0), "the unloaded model is warmed again")
		Expect(resident(ctx, "tiny-a")).To(BeTrue())

		By("the container restarting: cold at once, warm again once it runs")
		setContainer(ctx, pod, false)
		Eventually(podWarm(ctx, pod)).WithTimeout(timeout).WithPolling(interval).Should(And(
			HaveField("Status", corev1.ConditionFalse), HaveField("Reason", llmv1.PodReasonWarming)))
		Expect(ollama.Unload(ctx, ollamaAPI(), []ollama.Model{{Name: "tiny-a"}})).Error().NotTo(HaveOccurred())
		setContainer(ctx, pod, true)
		Eventually(podWarm(ctx, pod)).WithTimeout(timeout).WithPolling(interval).Should(HaveField("Status", corev1.ConditionTrue))
		Expect(testutil.ToFloat64(warmups.WithLabelValues(ns, "ollama-0", "tiny-a"))).To(Equal(3.0))
	})

	It("unloads idle models every gpuCleanupInterval, keeping the pool's model", func() {
		newPool(ctx, ns, "tiny-a", nil)
		pod := newRunningPod(ctx, ns, "ollama-0", gpuNode, nil)
		Eventually(podWarm(ctx, pod)).WithTimeout(timeout).WithPolling(interval).Should(HaveField("Status", corev1.ConditionTrue))
		Expect(ollamaAPI().Load(ctx, "tiny-b", time.Hour)).To(Succeed())
		before := testutil.ToFloat64(cleanups.WithLabelValues("Periodic"))

		// Each turn moves the agent's clock past the 5m interval; once the
		// agent has seen tiny-b, the next periodic cleanup finds it idle.
		Eventually(func() bool {
			agentClock.Shift(6 * time.Minute)
			return resident(ctx, "tiny-b")
		}).WithTimeout(timeout).WithPolling(time.Second).Should(BeFalse())
		Expect(resident(ctx, "tiny-a")).To(BeTrue(), "the pool's model stays warm")
		// The count and the Event follow once Unload has seen /api/ps confirm it.
		Eventually(func() float64 { return testutil.ToFloat64(cleanups.WithLabelValues("Periodic")) - before }).
			WithTimeout(timeout).WithPolling(interval).Should(Equal(1.0))
		Eventually(func() []string { return eventNotes(ctx, ns, "ollama-0", "CleanedUp") }).WithTimeout(timeout).WithPolling(interval).Should(ContainElement(
			MatchRegexp(`^Periodic cleanup unloaded tiny-b(:latest)?: [\d.]+ MiB freed per Ollama; GPU memory 27.0 GiB -> 27.0 GiB of 640.0 GiB$`)))
		Expect(podWarm(ctx, pod)()).To(HaveField("Status", corev1.ConditionTrue))
	})

	It("cleans up at once when GPU memory passes the high watermark", func() {
		newPool(ctx, ns, "tiny-a", nil)
		pod := newRunningPod(ctx, ns, "ollama-0", gpuNode, nil)
		Eventually(podWarm(ctx, pod)).WithTimeout(timeout).WithPolling(interval).Should(HaveField("Status", corev1.ConditionTrue))
		Expect(ollamaAPI().Load(ctx, "tiny-b", time.Hour)).To(Succeed())
		before := testutil.ToFloat64(cleanups.WithLabelValues("Watermark"))

		mockGPUUsed.Store(76 * gib) // 95% of GPU 0, over the default 90
		DeferCleanup(func() { mockGPUUsed.Store(20 * gib) })
		Eventually(func() bool { return resident(ctx, "tiny-b") }).WithTimeout(timeout).WithPolling(interval).Should(BeFalse())
		Expect(resident(ctx, "tiny-a")).To(BeTrue(), "the pool's model is not evicted by pressure")
		Eventually(func() float64 { return testutil.ToFloat64(cleanups.WithLabelValues("Watermark")) - before }).
			WithTimeout(timeout).WithPolling(interval).Should(Equal(1.0))
		Eventually(func() []string { return eventNotes(ctx, ns, "ollama-0", "CleanedUp") }).WithTimeout(timeout).WithPolling(interval).
			Should(ContainElement(HavePrefix("Watermark cleanup unloaded tiny-b")))
	})

	It("maps GPU processes to pods: reports each pod's own memory, and spares a pod holding none on the GPU over its watermark", func() {
		newPool(ctx, ns, "tiny-a", nil)
		pod := newRunningPod(ctx, ns, "ollama-0", gpuNode, nil)
		trainer := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "trainer"}, // no pool selects it
			Spec: corev1.PodSpec{NodeName: gpuNode, Containers: []corev1.Container{{Name: "train", Image: "trainer"}}}}
		Expect(k8sClient.Create(ctx, trainer)).To(Succeed())
		Eventually(podWarm(ctx, pod)).WithTimeout(timeout).WithPolling(interval).Should(HaveField("Status", corev1.ConditionTrue))
		// Two processes on GPU 0, in the two pods' cgroups as the systemd
		// driver names them; a third outside any pod.
		cgroup := func(pid int, p *corev1.Pod) {
			dir := filepath.Join(procRoot, strconv.Itoa(pid))
			Expect(os.MkdirAll(dir, 0o755)).To(Succeed())
			line := "0::/system.slice/nvidia-persistenced.service\n"
			if p != nil {
				line = "0::/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod" + strings.ReplaceAll(string(p.UID), "-", "_") +
					".slice/cri-containerd-" + strings.Repeat("ab", 32) + ".scope\n"
			}
			Expect(os.WriteFile(filepath.Join(dir, "cgroup"), []byte(line), 0o644)).To(Succeed())
		}
		cgroup(4242, pod)
		cgroup(4343, trainer)
		cgroup(4444, nil)
		mockGPUProcesses.Store(&[]nvml.ProcessInfo{{Pid: 4242, UsedGpuMemory: 6 * gib}, {Pid: 4343, UsedGpuMemory: 60 * gib}, {Pid: 4444, UsedGpuMemory: gib}})
		DeferCleanup(func() { mockGPUProcesses.Store(nil) })

		Eventually(report(ctx, pod)).WithTimeout(timeout).WithPolling(interval).Should(HaveField("PodGPUMemoryBytes", int64(6*gib)))
		Eventually(func() float64 { return testutil.ToFloat64(podGPUMemory.WithLabelValues(gpuNode, ns, "trainer", "0")) }).
			WithTimeout(timeout).WithPolling(interval).Should(Equal(float64(60 * gib)))
		// The report and each pod's series are written by different passes:
		// wait for this one too.
		Eventually(func() float64 { return testutil.ToFloat64(podGPUMemory.WithLabelValues(gpuNode, ns, "ollama-0", "0")) }).
			WithTimeout(timeout).WithPolling(interval).Should(Equal(float64(6 * gib)))

		By("GPU 0 over the watermark, held by the trainer: the Ollama pod is not the one to clean up")
		Expect(ollamaAPI().Load(ctx, "tiny-b", time.Hour)).To(Succeed())
		before := testutil.ToFloat64(cleanups.WithLabelValues("Watermark"))
		mockGPUProcesses.Store(&[]nvml.ProcessInfo{{Pid: 4343, UsedGpuMemory: 76 * gib}})
		DeferCleanup(func() { mockGPUUsed.Store(20 * gib) })
		passAfter(ctx, pod, 76*gib, 77*gib, 78*gib) // all over the watermark
		Expect(resident(ctx, "tiny-b")).To(BeTrue())
		Expect(testutil.ToFloat64(cleanups.WithLabelValues("Watermark")) - before).To(BeZero())

		By("the Ollama pod's runner holds memory on GPU 0 too: now it cleans up")
		mockGPUProcesses.Store(&[]nvml.ProcessInfo{{Pid: 4343, UsedGpuMemory: 70 * gib}, {Pid: 4242, UsedGpuMemory: 6 * gib}})
		Eventually(func() bool { return resident(ctx, "tiny-b") }).WithTimeout(timeout).WithPolling(interval).Should(BeFalse())
	})

	It("acts once on a forced cleanup request and records it", func() {
		newPool(ctx, ns, "tiny-a", nil)
		pod := newRunningPod(ctx, ns, "ollama-0", gpuNode, nil)
		Eventually(podWarm(ctx, pod)).WithTimeout(timeout).WithPolling(interval).Should(HaveField("Status", corev1.ConditionTrue))
		Expect(ollamaAPI().Load(ctx, "tiny-b", time.Hour)).To(Succeed())
		before := testutil.ToFloat64(cleanups.WithLabelValues("Forced"))

		kubelet, _ := json.Marshal(map[string]any{"status": map[string]any{"conditions": []corev1.PodCondition{{Type: corev1.ContainersReady, Status: corev1.ConditionTrue}}}})
		Expect(k8sClient.Status().Patch(ctx, pod, client.RawPatch(types.StrategicMergePatchType, kubelet), client.FieldOwner("kubelet"))).To(Succeed())
		annotate(ctx, pod, llmv1.AnnotationCleanupRequested, "2026-11-26T10:00:00Z")
		Eventually(func() string { return get(ctx, pod).Annotations[llmv1.AnnotationCleanupHandled] }).
			WithTimeout(timeout).WithPolling(interval).Should(Equal("2026-11-26T10:00:00Z"))
		Expect(resident(ctx, "tiny-b")).To(BeFalse(), "everything was unloaded")
		Eventually(func() float64 { return testutil.ToFloat64(warmups.WithLabelValues(ns, "ollama-0", "tiny-a")) }).
			WithTimeout(timeout).WithPolling(interval).Should(Equal(2.0), "the pool's model is warmed again")
		Expect(testutil.ToFloat64(cleanups.WithLabelValues("Forced")) - before).To(Equal(1.0))
		Eventually(func() []string { return eventNotes(ctx, ns, "ollama-0", "CleanedUp") }).WithTimeout(timeout).WithPolling(interval).
			Should(ContainElement(HavePrefix("Forced cleanup unloaded")))

		By("each kind of write is its own field manager's, so none took away another's field or the kubelet's")
		Eventually(func(g Gomega) {
			got := get(ctx, pod)
			g.Expect(got.Annotations).To(HaveKey(llmv1.AnnotationEndpointReport))
			g.Expect(got.Annotations).To(HaveKeyWithValue(llmv1.AnnotationCleanupHandled, "2026-11-26T10:00:00Z"))
			g.Expect(ollamapod.WarmCondition(got)).To(HaveField("Status", corev1.ConditionTrue))
			g.Expect(got.Status.Conditions).To(ContainElement(HaveField("Type", corev1.ContainersReady)), "the kubelet's condition")
			var managers []string
			for _, m := range got.ManagedFields {
				if m.Operation == metav1.ManagedFieldsOperationApply {
					managers = append(managers, m.Manager)
				}
			}
			g.Expect(managers).To(ConsistOf(fieldManagerWarm, fieldManagerReport, fieldManagerCleanup))
		}).WithTimeout(timeout).WithPolling(interval).Should(Succeed())

		By("the same request is not acted on again")
		Expect(ollamaAPI().Load(ctx, "tiny-b", time.Hour)).To(Succeed())
		annotate(ctx, pod, "touched", "yes") // wakes the agent
		DeferCleanup(func() { mockGPUUsed.Store(20 * gib) })
		passAfter(ctx, pod, 30*gib, 31*gib, 32*gib) // all under the watermark
		Expect(resident(ctx, "tiny-b")).To(BeTrue())
		Expect(testutil.ToFloat64(cleanups.WithLabelValues("Forced")) - before).To(Equal(1.0))
	})

	It("says why warmup failed, after exactly the configured attempts", func() {
		newPool(ctx, ns, "no-such-model", func(o *llmv1.OllamaSpec) { o.Warmup.Retries = 2 })
		pod := newRunningPod(ctx, ns, "ollama-0", gpuNode, nil)
		Eventually(podWarm(ctx, pod)).WithTimeout(timeout).WithPolling(interval).Should(And(
			HaveField("Status", corev1.ConditionFalse), HaveField("Reason", llmv1.PodReasonWarmupFailed),
			HaveField("Message", And(ContainSubstring("after 2 attempts"), ContainSubstring("404"), ContainSubstring("no-such-model")))))
		Expect(testutil.ToFloat64(warmupFailures.WithLabelValues(ns, "ollama-0", "no-such-model"))).To(BeNumerically(">=", 1))
		Eventually(func() []string { return eventReasons(ctx, ns, "ollama-0") }).WithTimeout(timeout).WithPolling(interval).Should(ContainElement(llmv1.PodReasonWarmupFailed))

		By("a pod whose Ollama is down (endpoint override to a closed port)")
		down := newRunningPod(ctx, ns, "ollama-down", gpuNode, map[string]string{llmv1.AnnotationOllamaEndpoint: "http://127.0.0.1:1"})
		Eventually(podWarm(ctx, down)).WithTimeout(timeout).WithPolling(interval).Should(And(
			HaveField("Reason", llmv1.PodReasonWarmupFailed), HaveField("Message", ContainSubstring("refused"))))
	})

	It("reports from /api/ps on a node without NVML", func() {
		newPool(ctx, ns, "tiny-a", nil)
		pod := newRunningPod(ctx, ns, "ollama-cpu", cpuNode, nil)
		Eventually(podWarm(ctx, pod)).WithTimeout(timeout).WithPolling(interval).Should(HaveField("Status", corev1.ConditionTrue))
		Eventually(report(ctx, pod)).WithTimeout(timeout).WithPolling(interval).Should(And(
			HaveField("Model", "tiny-a"), HaveField("Source", llmv1.GPUSourceOllama), HaveField("GPUMemoryTotalBytes", int64(0))))
		Expect(testutil.ToFloat64(nvmlAvailable.WithLabelValues(cpuNode))).To(Equal(0.0))
		Expect(testutil.ToFloat64(nvmlAvailable.WithLabelValues(gpuNode))).To(Equal(1.0))
		By("the NVML node exports the GPU series the chart's LLMQuotaGPUMemoryHigh alert divides")
		Eventually(func() float64 { return testutil.ToFloat64(gpuTotal.WithLabelValues(gpuNode, "0")) }).WithTimeout(timeout).Should(BeNumerically(">", 0))
		Expect(testutil.ToFloat64(gpuUsed.WithLabelValues(gpuNode, "0"))).To(BeNumerically("<=", testutil.ToFloat64(gpuTotal.WithLabelValues(gpuNode, "0"))))
	})
})

// newPool creates an Ollama LLMProvider (named after the namespace) whose
// pods are labelled app=ollama in ns, on the test's Ollama port.
func newPool(ctx context.Context, ns, model string, mutate func(*llmv1.OllamaSpec)) {
	o := &llmv1.OllamaSpec{Namespace: ns, PodSelector: metav1.LabelSelector{MatchLabels: map[string]string{"app": "ollama"}},
		Port: int32(ollamaSrv.Port), Warmup: llmv1.WarmupSpec{Retries: 3}}
	if mutate != nil {
		mutate(o)
	}
	p := &llmv1.LLMProvider{ObjectMeta: metav1.ObjectMeta{Name: ns},
		Spec: llmv1.LLMProviderSpec{Type: llmv1.ProviderOllama, Model: model, Ollama: o}}
	Expect(k8sClient.Create(ctx, p)).To(Succeed())
	DeferCleanup(func() { Expect(client.IgnoreNotFound(k8sClient.Delete(context.Background(), p))).To(Succeed()) })
}

// newRunningPod creates a pod on node as the scheduler and kubelet would
// leave it: bound, running, with the loopback IP where the test's Ollama listens.
func newRunningPod(ctx context.Context, ns, name, node string, annotations map[string]string) *corev1.Pod {
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: map[string]string{"app": "ollama"}, Annotations: annotations},
		Spec: corev1.PodSpec{NodeName: node, Containers: []corev1.Container{{Name: "ollama", Image: "ollama/ollama"}},
			ReadinessGates: []corev1.PodReadinessGate{{ConditionType: llmv1.PodConditionModelWarm}}},
	}
	Expect(k8sClient.Create(ctx, pod)).To(Succeed())
	DeferCleanup(func() {
		Expect(client.IgnoreNotFound(k8sClient.Delete(context.Background(), pod, client.GracePeriodSeconds(0)))).To(Succeed())
	})
	// A merge patch without resourceVersion: the agent may already have
	// written its first condition (the pod is pending).
	status, _ := json.Marshal(map[string]any{"status": corev1.PodStatus{Phase: corev1.PodRunning, PodIP: "127.0.0.1", PodIPs: []corev1.PodIP{{IP: "127.0.0.1"}}}})
	Expect(k8sClient.Status().Patch(ctx, pod, client.RawPatch(types.MergePatchType, status))).To(Succeed())
	setContainer(ctx, pod, true)
	return pod
}

// setContainer marks the pod's container running, or waiting as after a crash.
func setContainer(ctx context.Context, pod *corev1.Pod, running bool) {
	Eventually(func() error {
		p := get(ctx, pod)
		cs := corev1.ContainerStatus{Name: "ollama", Image: "ollama/ollama", RestartCount: 0}
		if old := p.Status.ContainerStatuses; len(old) == 1 {
			cs.RestartCount = old[0].RestartCount
		}
		if running {
			cs.State.Running = &corev1.ContainerStateRunning{StartedAt: metav1.Now()}
		} else {
			cs.RestartCount++
			cs.State.Waiting = &corev1.ContainerStateWaiting{Reason: "CrashLoopBackOff"}
		}
		p.Status.ContainerStatuses = []corev1.ContainerStatus{cs}
		return k8sClient.Status().Update(ctx, p)
	}).WithTimeout(timeout).Should(Succeed())
}

func annotate(ctx context.Context, pod *corev1.Pod, key, value string) {
	patch, _ := json.Marshal(map[string]any{"metadata": map[string]any{"annotations": map[string]string{key: value}}})
	Expect(k8sClient.Patch(ctx, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: pod.Namespace, Name: pod.Name}},
		client.RawPatch(types.MergePatchType, patch))).To(Succeed())
}

func get(ctx context.Context, pod *corev1.Pod) *corev1.Pod {
	var p corev1.Pod
	Expect(k8sClient.Get(ctx, client.ObjectKeyFromObject(pod), &p)).To(Succeed())
	return &p
}

// podWarm polls the pod's ModelWarm condition.
func podWarm(ctx context.Context, pod *corev1.Pod) func() *corev1.PodCondition {
	return func() *corev1.PodCondition { return ollamapod.WarmCondition(get(ctx, pod)) }
}

func report(ctx context.Context, pod *corev1.Pod) func() llmv1.EndpointReport {
	return func() llmv1.EndpointReport {
		var r llmv1.EndpointReport
		_ = json.Unmarshal([]byte(get(ctx, pod).Annotations[llmv1.AnnotationEndpointReport]), &r)
		return r
	}
}

// passAfter waits for a whole pass of the agent over pod that began after
// the call and after the models loaded before it stopped counting as busy,
// so a check that the pass did nothing is not a hope. It sets device 0's
// used memory to each of used in turn, waiting each time for the pod's
// report to show it (the other seven mock GPUs use 1 GiB each): the pass
// that reports one value began after the pass that reported the one
// before ended. After the first, it waits out the agent's poll interval,
// within which a model just seen counts as busy and is not unloaded
// (ollama.Tracker); the last pass then began after that. Every value
// should be on the same side of the watermark.
func passAfter(ctx context.Context, pod *corev1.Pod, used ...uint64) {
	GinkgoHelper()
	for i, u := range used {
		mockGPUUsed.Store(u)
		Eventually(report(ctx, pod)).WithTimeout(timeout).WithPolling(interval).Should(HaveField("GPUMemoryUsedBytes", int64(u+7*gib)))
		if i == 0 {
			time.Sleep(pollInterval) // a precondition of the passes to come, not a hope: they are waited for
		}
	}
}

func resident(ctx context.Context, model string) bool {
	running, err := ollama.New(ollamaSrv.URL, nil).PS(ctx)
	Expect(err).NotTo(HaveOccurred())
	_, ok := ollama.Resident(running, model)
	return ok
}

func podEvents(ctx context.Context, ns, pod string) []eventsv1.Event {
	var list eventsv1.EventList
	Expect(k8sClient.List(ctx, &list, client.InNamespace(ns))).To(Succeed())
	var out []eventsv1.Event
	for _, e := range list.Items {
		if e.Regarding.Name == pod {
			out = append(out, e)
		}
	}
	return out
}

func eventReasons(ctx context.Context, ns, pod string) []string {
	var out []string
	for _, e := range podEvents(ctx, ns, pod) {
		out = append(out, e.Reason)
	}
	return out
}

func eventNotes(ctx context.Context, ns, pod, reason string) []string {
	var out []string
	for _, e := range podEvents(ctx, ns, pod) {
		if e.Reason == reason {
			out = append(out, strings.TrimSpace(e.Note))
		}
	}
	return out
}

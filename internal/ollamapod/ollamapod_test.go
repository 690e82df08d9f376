package ollamapod

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	llmv1 "github.com/llmquota/llmquota/api/v1alpha1"
)

func pool(name, ns string, sel map[string]string) llmv1.LLMProvider {
	return llmv1.LLMProvider{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: llmv1.LLMProviderSpec{Type: llmv1.ProviderOllama,
		Ollama: &llmv1.OllamaSpec{Namespace: ns, PodSelector: metav1.LabelSelector{MatchLabels: sel}, Port: 8080}}}
}

func TestSelectsAndPoolOf(t *testing.T) {
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "llm", Labels: map[string]string{"app": "ollama", "tier": "gpu"}}}
	hosted := llmv1.LLMProvider{ObjectMeta: metav1.ObjectMeta{Name: "a-gemini"}, Spec: llmv1.LLMProviderSpec{Type: llmv1.ProviderGemini}}
	cases := map[string]struct {
		p    llmv1.LLMProvider
		want bool
	}{
		"matching labels":        {pool("p", "llm", map[string]string{"app": "ollama"}), true},
		"other namespace":        {pool("p", "other", map[string]string{"app": "ollama"}), false},
		"label differs":          {pool("p", "llm", map[string]string{"app": "vllm"}), false},
		"empty selector: none":   {pool("p", "llm", nil), false},
		"hosted provider: never": {hosted, false},
	}
	for name, c := range cases {
		if got := Selects(&c.p, pod); got != c.want {
			t.Errorf("%s: %v, want %v", name, got, c.want)
		}
	}
	providers := []llmv1.LLMProvider{pool("zeta", "llm", map[string]string{"tier": "gpu"}), hosted, pool("alpha", "llm", map[string]string{"app": "ollama"})}
	if got := PoolOf(providers, pod); got == nil || got.Name != "alpha" {
		t.Fatalf("pool %v, want alpha (first by name of those selecting)", got)
	}
}

func TestEndpoint(t *testing.T) {
	o := pool("p", "llm", nil).Spec.Ollama
	cases := map[string]struct {
		pod  corev1.Pod
		port int32
		want string
	}{
		"pod IP and the pool's port": {corev1.Pod{Status: corev1.PodStatus{PodIP: "10.0.0.7"}}, 8080, "http://10.0.0.7:8080"},
		"default port":               {corev1.Pod{Status: corev1.PodStatus{PodIP: "10.0.0.7"}}, 0, "http://10.0.0.7:11434"},
		"IPv6":                       {corev1.Pod{Status: corev1.PodStatus{PodIP: "fd00::7"}}, 8080, "http://[fd00::7]:8080"},
		"no IP yet":                  {corev1.Pod{}, 8080, ""},
		"override": {corev1.Pod{ObjectMeta: metav1.ObjectMeta{Annotations: map[string]string{llmv1.AnnotationOllamaEndpoint: "http://node-1:31434"}},
			Status: corev1.PodStatus{PodIP: "10.0.0.7"}}, 8080, "http://node-1:31434"},
	}
	for name, c := range cases {
		o.Port = c.port
		if got := Endpoint(&c.pod, o); got != c.want {
			t.Errorf("%s: %q, want %q", name, got, c.want)
		}
	}
}

func TestIsWarm(t *testing.T) {
	warm := corev1.Pod{Status: corev1.PodStatus{Conditions: []corev1.PodCondition{
		{Type: corev1.PodReady, Status: corev1.ConditionFalse},
		{Type: llmv1.PodConditionModelWarm, Status: corev1.ConditionTrue}}}}
	if !IsWarm(&warm) || WarmCondition(&warm).Type != llmv1.PodConditionModelWarm {
		t.Fatal("a pod with ModelWarm=True is warm")
	}
	deleting := *warm.DeepCopy()
	deleting.DeletionTimestamp = &metav1.Time{}
	if IsWarm(&deleting) {
		t.Fatal("a terminating pod takes no new calls")
	}
	if IsWarm(&corev1.Pod{}) {
		t.Fatal("a pod without the condition is cold")
	}
}

func TestReport(t *testing.T) {
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Annotations: map[string]string{
		llmv1.AnnotationEndpointReport: `{"model":"tiny","vramBytes":5,"gpuMemoryTotalBytes":80,"source":"NVML"}`}}}
	if r, ok := Report(pod); !ok || r != (llmv1.EndpointReport{Model: "tiny", VRAMBytes: 5, GPUMemoryTotalBytes: 80, Source: llmv1.GPUSourceNVML}) {
		t.Fatalf("report %+v %v", r, ok)
	}
	pod.Annotations[llmv1.AnnotationEndpointReport] = "{not json"
	if _, ok := Report(pod); ok {
		t.Fatal("a report that does not parse is no report")
	}
	if _, ok := Report(&corev1.Pod{}); ok {
		t.Fatal("no annotation, no report")
	}
}

package v1alpha1

// The node agent and the manager meet on the Ollama pods themselves: the
// agent writes what it sees of a pod into that pod's status (a condition and
// a report annotation), and the manager reads it from there into the
// LLMProvider's status and its choice of endpoints. Nothing else carries
// state between them, so either can restart at any time.
const (
	// PodConditionModelWarm is the pod condition the node agent sets: True
	// once the pool's model is resident (reason Warm, message with latency
	// and attempt), False while it is not (reasons below). List it in the
	// pod's spec.readinessGates so a Service sends no traffic to a cold pod.
	PodConditionModelWarm = "llmquota.dev/ModelWarm"

	// AnnotationOllamaEndpoint, set by the user on an Ollama pod, overrides
	// the address the agent and the manager reach it at (default
	// http://<pod IP>:<spec.ollama.port>): for host-network setups behind
	// another port, and for tests.
	AnnotationOllamaEndpoint = "llmquota.dev/ollama-endpoint"

	// AnnotationEndpointReport is written by the node agent: an
	// EndpointReport in JSON, the pod's model, VRAM and its node's GPU memory.
	AnnotationEndpointReport = "llmquota.dev/endpoint-report"

	// AnnotationCleanupRequested asks the node agent for a forced cleanup of
	// the pod's Ollama: every resident model is unloaded, then the pool's
	// model is warmed again. Any new value is a new request (a timestamp
	// reads well); the manager sets it after repeated server errors.
	AnnotationCleanupRequested = "llmquota.dev/cleanup-requested"

	// AnnotationCleanupHandled is written by the node agent once it has
	// acted on a request: the value of AnnotationCleanupRequested it handled.
	// A request equal to it is not acted on again.
	AnnotationCleanupHandled = "llmquota.dev/cleanup-handled"
)

// Reasons of the ModelWarm pod condition.
const (
	// PodReasonWarm surfaces on ModelWarm=True.
	PodReasonWarm = "Warm"
	// PodReasonWarming surfaces on ModelWarm=False while the model is
	// being loaded (it was unloaded, or the pod restarted).
	PodReasonWarming = "Warming"
	// PodReasonWarmupFailed surfaces on ModelWarm=False when every warmup
	// attempt failed; the message has the last error.
	PodReasonWarmupFailed = "WarmupFailed"
	// PodReasonNoModel surfaces on ModelWarm=False when the LLMProvider
	// names no model to keep warm.
	PodReasonNoModel = "NoModel"
)

// GPUSource says where an EndpointReport's GPU figures come from.
type GPUSource string

const (
	// GPUSourceNVML means the node's GPUs, read through NVML.
	GPUSourceNVML GPUSource = "NVML"
	// GPUSourceOllama means no NVML on the node: the VRAM Ollama's /api/ps
	// reports for the pod's resident models (no total known). It is an
	// estimate: size_vram leaves out the runner's CUDA context, cuBLAS and
	// allocator overhead: about 0.7 GiB a runner on an H200 (9.5% of a
	// 6.5 GiB model's real use, 18% of a 3.7 GiB one's).
	GPUSourceOllama GPUSource = "OllamaPS"
)

// EndpointReport is the node agent's view of one Ollama pod, stored in JSON
// in its AnnotationEndpointReport annotation.
//
// +kubebuilder:object:generate=false
type EndpointReport struct {
	// model is the pool model kept warm.
	// +optional
	Model string `json:"model,omitempty"`
	// vramBytes is the GPU memory that model occupies (0 on CPU).
	// +optional
	VRAMBytes int64 `json:"vramBytes,omitempty"`
	// gpuMemoryUsedBytes is the node's GPUs' memory in use (summed over
	// devices).
	// +optional
	GPUMemoryUsedBytes int64 `json:"gpuMemoryUsedBytes,omitempty"`
	// gpuMemoryTotalBytes is the node's GPUs' memory in all; 0 without NVML.
	// +optional
	GPUMemoryTotalBytes int64 `json:"gpuMemoryTotalBytes,omitempty"`
	// source says where the GPU figures come from.
	// +optional
	Source GPUSource `json:"source,omitempty"`
	// podGPUMemoryBytes is the GPU memory this pod's own processes hold,
	// summed over GPUs (NVML's processes mapped to pods through their
	// cgroups); absent where the agent cannot tell pods apart.
	// +optional
	PodGPUMemoryBytes int64 `json:"podGPUMemoryBytes,omitempty"`
}

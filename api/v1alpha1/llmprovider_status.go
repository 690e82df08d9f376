package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// LLMProviderStatus is what the operator observes of a provider.
type LLMProviderStatus struct {
	// conditions are Ready, RateLimited, Degraded, CostAlert and, for
	// Ollama, Warm.
	// +optional
	// +listType=map
	// +listMapKey=type
	// +kubebuilder:validation:MaxItems=16
	Conditions []metav1.Condition `json:"conditions,omitempty"`

	// observedGeneration is the spec generation the status was computed from.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`

	// usage is the live use of each configured window.
	// +optional
	Usage ProviderUsage `json:"usage,omitempty"`

	// consecutiveFailures counts failed calls since the last success.
	// +optional
	ConsecutiveFailures int32 `json:"consecutiveFailures,omitempty"`

	// backoffUntil is when the failure backoff or a server's Retry-After ends.
	// +optional
	BackoffUntil *metav1.Time `json:"backoffUntil,omitempty"`

	// nextRequestAt is the earliest time the quota admits the next call.
	// +optional
	NextRequestAt *metav1.Time `json:"nextRequestAt,omitempty"`

	// cost is what the calls cost today and this month, in USD.
	// +optional
	Cost *CostStatus `json:"cost,omitempty"`

	// endpoints lists the Ollama endpoints with their warm state and GPU memory.
	// +optional
	// +listType=map
	// +listMapKey=name
	// +kubebuilder:validation:MaxItems=256
	Endpoints []EndpointStatus `json:"endpoints,omitempty"`
}

// ProviderUsage holds the use of each window the provider limits.
type ProviderUsage struct {
	// minute is the rolling-minute window.
	// +optional
	Minute *WindowUsage `json:"minute,omitempty"`
	// hour is the rolling-hour window.
	// +optional
	Hour *WindowUsage `json:"hour,omitempty"`
	// day is the rolling-day window.
	// +optional
	Day *WindowUsage `json:"day,omitempty"`
	// tokensPerMinute is the rolling-minute token window.
	// +optional
	TokensPerMinute *WindowUsage `json:"tokensPerMinute,omitempty"`
	// tokensPerDay is the rolling-day token window.
	// +optional
	TokensPerDay *WindowUsage `json:"tokensPerDay,omitempty"`
	// inputTokensPerMinute is the rolling-minute window of input tokens.
	// +optional
	InputTokensPerMinute *WindowUsage `json:"inputTokensPerMinute,omitempty"`
	// outputTokensPerMinute is the rolling-minute window of output tokens.
	// +optional
	OutputTokensPerMinute *WindowUsage `json:"outputTokensPerMinute,omitempty"`
	// interactive is what gateway calls used in the last minute, beside
	// batch, what batch items used: the two lanes side by side.
	// +optional
	Interactive *LaneUsage `json:"interactive,omitempty"`
	// batch is what batch items used in the last minute.
	// +optional
	Batch *LaneUsage `json:"batch,omitempty"`
}

// LaneUsage is one lane's use of the provider over the last minute.
type LaneUsage struct {
	// callsLastMinute counts the calls answered in the last minute.
	// +optional
	// +kubebuilder:validation:Minimum=0
	CallsLastMinute int64 `json:"callsLastMinute,omitempty"`
	// tokensLastMinute counts their tokens, input and output.
	// +optional
	// +kubebuilder:validation:Minimum=0
	TokensLastMinute int64 `json:"tokensLastMinute,omitempty"`
	// refusedLastMinute counts the calls refused for quota in the last
	// minute (the gateway's 429s); batch items wait instead.
	// +optional
	// +kubebuilder:validation:Minimum=0
	RefusedLastMinute int64 `json:"refusedLastMinute,omitempty"`
	// inFlight counts the calls sent and not yet answered.
	// +optional
	// +kubebuilder:validation:Minimum=0
	InFlight int32 `json:"inFlight,omitempty"`
	// standby counts the standby grants lent to gateway replicas and not
	// ended (interactive lane only; spec.interactive.standbyCalls), sent or
	// not: the leader learns that one was sent only when its call ends.
	// inFlight leaves them out.
	// +optional
	// +kubebuilder:validation:Minimum=0
	Standby int32 `json:"standby,omitempty"`
	// waiting counts the calls waiting for quota: gateway calls in the
	// interactive lane, queued items for batch.
	// +optional
	// +kubebuilder:validation:Minimum=0
	Waiting int32 `json:"waiting,omitempty"`
}

// WindowUsage is the use of one window.
type WindowUsage struct {
	// used is what the window holds now.
	// +optional
	Used int64 `json:"used,omitempty"`
	// limit is what the window may hold.
	// +optional
	Limit int64 `json:"limit,omitempty"`
	// learnedLimit is the limit in use when it is less than limit: what
	// spec.limits.adaptive learned the provider really takes.
	// +optional
	// +kubebuilder:validation:Minimum=0
	LearnedLimit int64 `json:"learnedLimit,omitempty"`
	// summary is "used/limit", as kubectl get shows it, or "unlimited" for a
	// window the spec does not limit; with a learned limit, "used/learned
	// (limit)".
	// +optional
	Summary string `json:"summary,omitempty"`
}

// UnlimitedSummary is the summary of a window the spec does not limit.
const UnlimitedSummary = "unlimited"

// CostStatus is what the calls cost, in USD, per UTC period.
type CostStatus struct {
	// day is the UTC day the today figure is for (YYYY-MM-DD).
	// +optional
	Day string `json:"day,omitempty"`
	// today is the cost of the calls made on day.
	// +optional
	Today Decimal `json:"today,omitempty"`
	// month is the UTC month the thisMonth figure is for (YYYY-MM).
	// +optional
	Month string `json:"month,omitempty"`
	// thisMonth is the cost of the calls made in month.
	// +optional
	ThisMonth Decimal `json:"thisMonth,omitempty"`
	// committed is what the manager may have spent by now under
	// spec.cost.budgets. The manager persists it in its own namespace (the
	// ConfigMap llmquota-cost-<provider>) before calls beyond it are sent,
	// so a manager that restarts counts it as spent and cannot overspend;
	// this field shows the last value persisted.
	// +optional
	Committed *CostCommitment `json:"committed,omitempty"`
	// namespaces is what each namespace spent, batches and gateway calls
	// alike: the ten that spent most this month, the most first, then the
	// rest summed under the name "(others)".
	// +optional
	// +listType=atomic
	// +kubebuilder:validation:MaxItems=11
	Namespaces []NamespaceSpend `json:"namespaces,omitempty"`
}

// NamespaceSpend is one namespace's use of a provider.
type NamespaceSpend struct {
	// namespace is the namespace, or "(others)" for the sum of those not
	// listed.
	// +required
	// +kubebuilder:validation:MaxLength=63
	Namespace string `json:"namespace"`
	// today is its cost on the status's day, in USD.
	// +optional
	Today Decimal `json:"today,omitempty"`
	// thisMonth is its cost in the status's month, in USD.
	// +optional
	ThisMonth Decimal `json:"thisMonth,omitempty"`
	// tokensIn are its input tokens this month.
	// +optional
	TokensIn int64 `json:"tokensIn,omitempty"`
	// tokensOut are its output tokens this month, thinking included.
	// +optional
	TokensOut int64 `json:"tokensOut,omitempty"`
}

// CostCommitment is spend committed ahead under budgets, per period.
type CostCommitment struct {
	// day is the UTC day (YYYY-MM-DD) today is for.
	// +optional
	Day string `json:"day,omitempty"`
	// today is the most the calls of day may have cost.
	// +optional
	Today Decimal `json:"today,omitempty"`
	// month is the UTC month (YYYY-MM) thisMonth is for.
	// +optional
	Month string `json:"month,omitempty"`
	// thisMonth is the most the calls of month may have cost.
	// +optional
	ThisMonth Decimal `json:"thisMonth,omitempty"`
}

// EndpointState is the warm state of one Ollama endpoint.
// +kubebuilder:validation:Enum=Warm;Cold;Failed
type EndpointState string

const (
	// EndpointWarm means the model is resident and the pod takes traffic.
	EndpointWarm EndpointState = "Warm"
	// EndpointCold means the model is not loaded yet.
	EndpointCold EndpointState = "Cold"
	// EndpointFailed means warmup failed after its retries.
	EndpointFailed EndpointState = "Failed"
)

// EndpointStatus is one Ollama pod as the node agent reports it.
type EndpointStatus struct {
	// name of the pod.
	// +required
	Name string `json:"name"`
	// node the pod runs on.
	// +optional
	Node string `json:"node,omitempty"`
	// address is the pod's Ollama base URL.
	// +optional
	Address string `json:"address,omitempty"`
	// state says whether the model is warm.
	// +optional
	State EndpointState `json:"state,omitempty"`
	// model is the model kept warm.
	// +optional
	Model string `json:"model,omitempty"`
	// vramBytes is the GPU memory the model occupies.
	// +optional
	VRAMBytes int64 `json:"vramBytes,omitempty"`
	// gpuMemoryUsedBytes is the node's GPU memory in use.
	// +optional
	GPUMemoryUsedBytes int64 `json:"gpuMemoryUsedBytes,omitempty"`
	// gpuMemoryTotalBytes is the node's GPU memory in all (0 where the node
	// has no NVML and the figures come from Ollama).
	// +optional
	GPUMemoryTotalBytes int64 `json:"gpuMemoryTotalBytes,omitempty"`
	// podGPUMemoryBytes is the GPU memory this pod's own processes hold,
	// summed over GPUs, where the node agent maps NVML's processes to pods
	// (nodeAgent.podGPUMemory in the chart); the node's figures above count
	// every pod on its GPUs.
	// +optional
	PodGPUMemoryBytes int64 `json:"podGPUMemoryBytes,omitempty"`
	// gpuMemorySource says where the GPU figures come from: NVML (the
	// node's GPUs as the driver counts them), or OllamaPS where the node
	// has no NVML: an estimate from Ollama's /api/ps size_vram, which
	// leaves out the runner's CUDA context, cuBLAS workspace and allocator
	// slack (on an H200 about 0.7 GiB a runner under what nvidia-smi shows:
	// 9.5% for a 6.5 GiB model, 18% for a 3.7 GiB one).
	// +optional
	GPUMemorySource GPUSource `json:"gpuMemorySource,omitempty"`
	// concurrencyLimit is how many calls at once the manager sends this
	// pod now, learned from its answers' pace and its GPU memory under
	// spec.limits.adaptive: AIMD (at most spec.limits.maxConcurrency).
	// +optional
	// +kubebuilder:validation:Minimum=1
	ConcurrencyLimit *int32 `json:"concurrencyLimit,omitempty"`
	// message says why the endpoint is not warm, or how its warmup went.
	// +optional
	// +kubebuilder:validation:MaxLength=1024
	Message string `json:"message,omitempty"`
}

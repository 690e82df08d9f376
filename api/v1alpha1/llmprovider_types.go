package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// ProviderType names the API an LLMProvider speaks.
// +kubebuilder:validation:Enum=Gemini;Anthropic;OpenAI;Ollama
type ProviderType string

const (
	// ProviderGemini is Google's Gemini API (models/{model}:generateContent).
	ProviderGemini ProviderType = "Gemini"
	// ProviderAnthropic is Anthropic's Messages API.
	ProviderAnthropic ProviderType = "Anthropic"
	// ProviderOpenAI is OpenAI's Chat Completions API, or any server compatible with it.
	ProviderOpenAI ProviderType = "OpenAI"
	// ProviderOllama is a pool of Ollama pods, reached without credentials.
	ProviderOllama ProviderType = "Ollama"
)

// LLMProviderSpec describes what one provider account or Ollama pool may take.
//
// +kubebuilder:validation:XValidation:rule="self.type == 'Ollama' || has(self.credentialsSecretRef)",message="credentialsSecretRef is required for hosted providers (Gemini, Anthropic, OpenAI)",fieldPath=".credentialsSecretRef"
// +kubebuilder:validation:XValidation:rule="!has(self.ollama) || self.type == 'Ollama'",message="ollama is only allowed when type is Ollama",fieldPath=".ollama"
// +kubebuilder:validation:XValidation:rule="!has(self.interactive) || !has(self.interactive.fallback) || self.interactive.fallback != 'WhenLimited' || has(self.fallback)",message="interactive.fallback WhenLimited needs spec.fallback",fieldPath=".interactive.fallback"
type LLMProviderSpec struct {
	// type is the API this provider speaks: Gemini, Anthropic, OpenAI or Ollama.
	// +required
	Type ProviderType `json:"type"`

	// endpoint is the base URL of the API. When empty, the public endpoint of
	// the type is used (for Ollama: each selected pod's address).
	// +optional
	// +kubebuilder:validation:MaxLength=2048
	// +kubebuilder:validation:XValidation:rule="isURL(self) && url(self).getScheme() in ['http', 'https'] && url(self).getHost() != ''",message="endpoint must be an absolute http or https URL"
	Endpoint string `json:"endpoint,omitempty"`

	// model is the model used when an InferenceBatch names none.
	// +optional
	// +kubebuilder:validation:MaxLength=256
	Model string `json:"model,omitempty"`

	// namespaceSelector says which namespaces may use this provider, for
	// batches and gateway calls alike, with the semantics of Kueue's
	// ClusterQueue: unset selects no namespace, {} selects every
	// namespace. A batch in a namespace it does not select waits with
	// Admitted=False (NamespaceNotSelected); a gateway call from one is
	// refused with 403. The gateway's RBAC check (verb use on
	// llmproviders/<name>) must allow the call too. Select namespaces by
	// name with the label kubernetes.io/metadata.name, which every
	// namespace carries.
	// +optional
	NamespaceSelector *metav1.LabelSelector `json:"namespaceSelector,omitempty"`

	// credentialsSecretRef points at the Secret key holding the API key.
	// Required for hosted providers, not used for Ollama. The key is read
	// when the provider's dispatcher starts and again whenever the Secret
	// changes: a rotated key is used for new calls once the calls in flight
	// with the old one have finished, with no restart. It is never copied
	// into status, events, logs or results.
	// +optional
	CredentialsSecretRef *SecretKeyReference `json:"credentialsSecretRef,omitempty"`

	// limits is the quota the operator keeps every call inside.
	// +optional
	// +kubebuilder:default={}
	Limits RateLimits `json:"limits,omitzero"`

	// interactive says how calls through the gateway share the quota with
	// batches. Interactive calls always go first; this can also keep part
	// of the quota for them alone.
	// +optional
	Interactive *InteractivePolicy `json:"interactive,omitempty"`

	// shares weighs the namespaces that compete for this provider. When
	// several have work waiting, each gets calls in proportion to its
	// weight, counted in tokens (input and output), batches and gateway
	// calls alike; a share nobody uses goes to the others until its owner
	// needs it again.
	// +optional
	Shares *SharePolicy `json:"shares,omitempty"`

	// retry says how failed calls are retried.
	// +optional
	// +kubebuilder:default={maxRetries: 3, initialBackoffMilliseconds: 2000, maxBackoffMilliseconds: 60000}
	Retry *RetryPolicy `json:"retry,omitempty"`

	// cost holds prices and the thresholds that raise the CostAlert condition.
	// +optional
	Cost *CostPolicy `json:"cost,omitempty"`

	// modelLimits gives models limits of their own, as providers count
	// many of their limits per model: a call to a model needs room in its
	// limits and in spec.limits, which still hold for all models together.
	// A batch's or gateway call's model is the one it names, else
	// spec.model. At most 100.
	// +optional
	// +listType=map
	// +listMapKey=model
	// +kubebuilder:validation:MaxItems=100
	ModelLimits []ModelLimits `json:"modelLimits,omitempty"`

	// fallback names another LLMProvider that serves items this one cannot:
	// while its circuit is open, while no Ollama endpoint is warm, or when a
	// prompt is longer than maxPromptLength.
	// +optional
	Fallback *ProviderReference `json:"fallback,omitempty"`

	// maxPromptLength is the longest prompt, in characters, this provider
	// takes; longer prompts go to the fallback (the original report's
	// LLM_LOCAL_MAX_LENGTH).
	// At least 1.
	// +optional
	// +kubebuilder:validation:Minimum=1
	MaxPromptLength *int32 `json:"maxPromptLength,omitempty"`

	// ollama configures the pods of an Ollama pool. Only for type Ollama.
	// +optional
	Ollama *OllamaSpec `json:"ollama,omitempty"`

	// crashRepay bounds what a crash of the leader manager may pay for
	// twice. An item counts as done once its result is written; answers
	// the provider already gave (and billed) whose results still wait for
	// their batch's write (at most --results-flush-items or
	// --results-flush-interval) are kept in the provider's results journal,
	// one write for all its batches, from which the next leader takes them
	// back; what is in neither is asked again. Unset, the journal is
	// written once the answers in neither reach maxConcurrency or the
	// provider's answers of the last second, whichever is more, and batch
	// calls wait while twice that does (a journal write that is slow or
	// failing). Set, they stay within it: smaller, more frequent journal
	// writes. Calls in flight at a crash are paid again in any case.
	// +optional
	CrashRepay *CrashRepay `json:"crashRepay,omitempty"`
}

// CrashRepay bounds the answers that are neither in the provider's results
// journal nor in their batch's results, across all of the provider's
// batches: what a crash may pay for twice, besides the calls in flight.
//
// +kubebuilder:validation:MinProperties=1
type CrashRepay struct {
	// maxCalls is the most answers that may wait for the journal at once.
	// 1 to 100000.
	// +optional
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=100000
	MaxCalls *int32 `json:"maxCalls,omitempty"`
	// maxCost is the most their cost may reach, in USD (spec.cost's
	// prices): the journal is written once the answers waiting cost this
	// much.
	// +optional
	MaxCost Decimal `json:"maxCost,omitempty"`
}

// SecretKeyReference names one key of a Secret.
type SecretKeyReference struct {
	// namespace of the Secret.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=63
	Namespace string `json:"namespace"`
	// name of the Secret.
	// +required
	Name LocalObjectName `json:"name"`
	// key within the Secret's data that holds the API key.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	Key string `json:"key"`
}

// ProviderReference names an LLMProvider.
type ProviderReference struct {
	// name of the LLMProvider.
	// +required
	Name LocalObjectName `json:"name"`
}

// RateLimits is a provider's quota. Every window is exact and rolling: there
// are never more than N calls in any interval of its length.
//
// +kubebuilder:validation:XValidation:rule="!has(self.requestsPerHour) || !has(self.requestsPerMinute) || self.requestsPerHour >= self.requestsPerMinute",message="requestsPerHour must not be lower than requestsPerMinute",fieldPath=".requestsPerHour"
// +kubebuilder:validation:XValidation:rule="!has(self.requestsPerDay) || !has(self.requestsPerHour) || self.requestsPerDay >= self.requestsPerHour",message="requestsPerDay must not be lower than requestsPerHour",fieldPath=".requestsPerDay"
// +kubebuilder:validation:XValidation:rule="!has(self.requestsPerDay) || !has(self.requestsPerMinute) || self.requestsPerDay >= self.requestsPerMinute",message="requestsPerDay must not be lower than requestsPerMinute",fieldPath=".requestsPerDay"
type RateLimits struct {
	// requestsPerMinute is the most calls in any rolling minute.
	// 1 to 1000000.
	// +optional
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=1000000
	RequestsPerMinute *int32 `json:"requestsPerMinute,omitempty"`
	// requestsPerHour is the most calls in any rolling hour.
	// 1 to 60000000.
	// +optional
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=60000000
	RequestsPerHour *int32 `json:"requestsPerHour,omitempty"`
	// requestsPerDay is the most calls in any rolling 24 hours.
	// 1 to 1440000000.
	// +optional
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=1440000000
	RequestsPerDay *int32 `json:"requestsPerDay,omitempty"`
	// tokensPerMinute is the most input plus output tokens in any rolling minute.
	// At least 1.
	// +optional
	// +kubebuilder:validation:Minimum=1
	TokensPerMinute *int64 `json:"tokensPerMinute,omitempty"`
	// tokensPerDay is the most input plus output tokens in any rolling 24
	// hours. At least 1.
	// +optional
	// +kubebuilder:validation:Minimum=1
	TokensPerDay *int64 `json:"tokensPerDay,omitempty"`
	// inputTokensPerMinute is the most input tokens in any rolling minute,
	// for providers that limit input and output apart (Anthropic's ITPM).
	// A call is charged its input estimated at about four characters a
	// token, corrected from the answer's usage. At least 1.
	// +optional
	// +kubebuilder:validation:Minimum=1
	InputTokensPerMinute *int64 `json:"inputTokensPerMinute,omitempty"`
	// outputTokensPerMinute is the most output tokens (thinking included) in
	// any rolling minute (Anthropic's OTPM). A call is charged its output
	// cap, corrected from the answer's usage. At least 1.
	// +optional
	// +kubebuilder:validation:Minimum=1
	OutputTokensPerMinute *int64 `json:"outputTokensPerMinute,omitempty"`
	// minIntervalMilliseconds is the least time between the starts of two
	// calls, in milliseconds (the original report's LLM_MIN_INTERVAL_SEC,
	// 3 seconds for Gemini: 3000).
	// 0 to 86400000.
	// +optional
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=86400000
	MinIntervalMilliseconds *int32 `json:"minIntervalMilliseconds,omitempty"`
	// maxConcurrency is the most calls in flight at once.
	// Defaults to 1; 1 to 10000.
	// +optional
	// +kubebuilder:default=1
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=10000
	MaxConcurrency int32 `json:"maxConcurrency,omitempty"`
	// adaptive says whether the limits above are learned down when the
	// provider disagrees. Off (the default): they are used as declared.
	// AIMD: a 429 for a call they allowed (other users of the key, or
	// limits declared higher than the account's) cuts the request windows
	// and maxConcurrency in use to what the provider took in the window
	// before it, by half at most, down to a tenth; each window without
	// such a 429 gives 5% of the declared limits back, never more than
	// declared. tokensPerMinute and the minimum interval stay as declared.
	// What is learned shows in status.usage (learnedLimit) and restarts
	// from the declared limits with a new leader.
	// +optional
	Adaptive AdaptiveLimits `json:"adaptive,omitempty"`
}

// AdaptiveLimits says whether a provider's declared limits are learned down.
// +kubebuilder:validation:Enum=Off;AIMD
type AdaptiveLimits string

// The adaptive limit modes.
const (
	AdaptiveLimitsOff  AdaptiveLimits = "Off"
	AdaptiveLimitsAIMD AdaptiveLimits = "AIMD"
)

// SharePolicy gives namespaces weights.
type SharePolicy struct {
	// defaultWeight is the weight of a namespace not listed in namespaces.
	// Defaults to 1; 1 to 1000.
	// +optional
	// +kubebuilder:default=1
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=1000
	DefaultWeight *int32 `json:"defaultWeight,omitempty"`

	// defaultBudgets are hard spending limits for each namespace not
	// listed in namespaces (each namespace has its own), in USD at
	// spec.cost's prices. Hard like spec.cost.budgets: a call's worst-case
	// cost is set aside before it is sent, so neither concurrency nor a
	// crash overspends. A namespace at its budget waits; the others go on.
	// +optional
	DefaultBudgets *CostBudgets `json:"defaultBudgets,omitempty"`

	// defaultLimits are the limits of each namespace not listed in
	// namespaces (each namespace has its own windows), under the
	// provider's: a namespace's call needs room in both. A namespace at
	// its limits waits; the others go on.
	// +optional
	DefaultLimits *ScopeLimits `json:"defaultLimits,omitempty"`

	// namespaces gives namespaces a weight, budgets or limits of their own.
	// At most 1000.
	// +optional
	// +listType=map
	// +listMapKey=namespace
	// +kubebuilder:validation:MaxItems=1000
	Namespaces []NamespaceShare `json:"namespaces,omitempty"`
}

// NamespaceShare is one namespace's weight.
type NamespaceShare struct {
	// namespace is the namespace's name.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=63
	Namespace string `json:"namespace"`

	// weight is the namespace's weight: a namespace of weight 2 gets twice
	// the tokens of one of weight 1 while both have work waiting.
	// Defaults to defaultWeight; 1 to 1000.
	// +optional
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=1000
	Weight *int32 `json:"weight,omitempty"`

	// budgets are the namespace's hard spending limits, in place of
	// defaultBudgets (see there).
	// +optional
	Budgets *CostBudgets `json:"budgets,omitempty"`

	// limits are the namespace's limits, in place of defaultLimits (see
	// there).
	// +optional
	Limits *ScopeLimits `json:"limits,omitempty"`
}

// ModelLimits are one model's own limits.
type ModelLimits struct {
	// model is the model's name, as batches and gateway calls name it.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=256
	Model string `json:"model"`
	// limits are the model's own limits, under spec.limits.
	// +required
	Limits ScopeLimits `json:"limits"`
}

// ScopeLimits are the limits of one namespace or one model on a provider,
// under the provider's own: a call needs room in both. Unset fields do not
// limit it.
//
// +kubebuilder:validation:MinProperties=1
type ScopeLimits struct {
	// requestsPerMinute is the most calls started in any rolling minute.
	// At least 1.
	// +optional
	// +kubebuilder:validation:Minimum=1
	RequestsPerMinute *int32 `json:"requestsPerMinute,omitempty"`
	// requestsPerHour is the most calls in any rolling hour. At least 1.
	// +optional
	// +kubebuilder:validation:Minimum=1
	RequestsPerHour *int32 `json:"requestsPerHour,omitempty"`
	// requestsPerDay is the most calls in any rolling 24 hours. At least 1.
	// +optional
	// +kubebuilder:validation:Minimum=1
	RequestsPerDay *int32 `json:"requestsPerDay,omitempty"`
	// tokensPerMinute is the most input plus output tokens in any rolling
	// minute, counted as the provider's are. At least 1.
	// +optional
	// +kubebuilder:validation:Minimum=1
	TokensPerMinute *int64 `json:"tokensPerMinute,omitempty"`
	// tokensPerDay is the most input plus output tokens in any rolling 24
	// hours. At least 1.
	// +optional
	// +kubebuilder:validation:Minimum=1
	TokensPerDay *int64 `json:"tokensPerDay,omitempty"`
	// inputTokensPerMinute is the most input tokens in any rolling minute.
	// At least 1.
	// +optional
	// +kubebuilder:validation:Minimum=1
	InputTokensPerMinute *int64 `json:"inputTokensPerMinute,omitempty"`
	// outputTokensPerMinute is the most output tokens (thinking included) in
	// any rolling minute. At least 1.
	// +optional
	// +kubebuilder:validation:Minimum=1
	OutputTokensPerMinute *int64 `json:"outputTokensPerMinute,omitempty"`
	// maxConcurrency is the most calls in flight at once. At least 1.
	// +optional
	// +kubebuilder:validation:Minimum=1
	MaxConcurrency *int32 `json:"maxConcurrency,omitempty"`
}

// InteractivePolicy shapes the gateway's interactive calls on a provider.
type InteractivePolicy struct {
	// reservedPercent of every request window, of tokensPerMinute and of
	// maxConcurrency is kept for interactive calls: batches never use it,
	// interactive calls may use everything. The part kept is rounded down,
	// so a limit of one still serves batches. Defaults to 0; 0 to 90.
	// +optional
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=90
	ReservedPercent *int32 `json:"reservedPercent,omitempty"`

	// maxWaitMilliseconds is how long an interactive call waits for quota
	// before it is answered 429 with the time quota frees, unless the call
	// says otherwise (header X-Llmquota-Max-Wait). Defaults to the
	// gateway's --max-wait (10 s); 0 to 120000.
	// +optional
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=120000
	MaxWaitMilliseconds *int32 `json:"maxWaitMilliseconds,omitempty"`

	// fallback says where a gateway call goes that this provider cannot
	// admit at once (a full request or token window, no free concurrency
	// slot, a budget at its limit, or an open circuit backing off).
	// Never (the default): it waits here for quota. WhenLimited: it goes to
	// spec.fallback at once, and waits there for quota as it would have
	// here, if the caller may use the fallback (RBAC and its
	// namespaceSelector); else it waits here.
	// +optional
	Fallback InteractiveFallback `json:"fallback,omitempty"`

	// standbyCalls is how many calls each gateway replica may hold, per
	// calling namespace and model, to send while no manager leads (an
	// election after the leader crashed): the replica keeps serving that
	// many calls from quota lent before the crash. Each lent call counts
	// in every window from when it is lent until a minute after the last
	// moment it may be sent (a minute later), and holds a concurrency slot
	// while lent, so what is lent and unused costs the provider's other
	// callers that much: keep replicas x namespaces x models x standbyCalls
	// small beside each limit. None are lent under a minimum interval, a
	// window shorter than 10 s, or for a pool of Ollama pods. Defaults to
	// 0 (none); 0 to 64.
	// +optional
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=64
	StandbyCalls *int32 `json:"standbyCalls,omitempty"`

	// cache lets the gateway answer a call identical to an earlier one
	// (same calling namespace, provider, model, messages and output cap) at
	// temperature 0 from that earlier answer, without quota or a provider
	// call. Each gateway replica keeps its own answers, in memory, for
	// cacheTTLSeconds; one namespace never reads another's. Disabled (the
	// default) or Enabled.
	// +optional
	Cache CachePolicy `json:"cache,omitempty"`

	// cacheTTLSeconds is how long a cached answer is reused. Defaults to
	// 600; 1 to 86400.
	// +optional
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=86400
	CacheTTLSeconds *int32 `json:"cacheTTLSeconds,omitempty"`
}

// InteractiveFallback says when gateway calls go to spec.fallback.
// +kubebuilder:validation:Enum=Never;WhenLimited
type InteractiveFallback string

// The gateway's fallback policies.
const (
	InteractiveFallbackNever       InteractiveFallback = "Never"
	InteractiveFallbackWhenLimited InteractiveFallback = "WhenLimited"
)

// RetryPolicy says how failed calls are retried: after k consecutive failures
// the provider holds for min(initialBackoffMilliseconds * 2^(k-1),
// maxBackoffMilliseconds), and a server's Retry-After holds it until the
// time the server gave.
//
// +kubebuilder:validation:XValidation:rule="!has(self.maxBackoffMilliseconds) || !has(self.initialBackoffMilliseconds) || self.maxBackoffMilliseconds >= self.initialBackoffMilliseconds",message="maxBackoffMilliseconds must not be less than initialBackoffMilliseconds",fieldPath=".maxBackoffMilliseconds"
type RetryPolicy struct {
	// maxRetries is how many times one item is retried after its first
	// attempt fails. Bad requests and auth failures are never retried. A
	// 429 or 503 that says when to come back (Retry-After, Gemini's
	// retryDelay) is not a failure: the provider is held until then and the
	// item waits without spending a retry, for up to
	// maxRateLimitedWaitSeconds.
	// Defaults to 3; 0 to 100.
	// +optional
	// +kubebuilder:default=3
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=100
	MaxRetries *int32 `json:"maxRetries,omitempty"`
	// initialBackoffMilliseconds is the hold after the first failure, in
	// milliseconds (2000 gives the original report's 2^failures seconds).
	// Defaults to 2000; 1 to 3600000.
	// +optional
	// +kubebuilder:default=2000
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=3600000
	InitialBackoffMilliseconds *int32 `json:"initialBackoffMilliseconds,omitempty"`
	// maxBackoffMilliseconds caps the hold, in milliseconds (original
	// report: 60 seconds).
	// Defaults to 60000; 1 to 86400000.
	// +optional
	// +kubebuilder:default=60000
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=86400000
	MaxBackoffMilliseconds *int32 `json:"maxBackoffMilliseconds,omitempty"`
	// maxRateLimitedWaitSeconds bounds how long one item waits through
	// rate-limit answers that say when to come back, from the first: past
	// it, each such answer spends a retry like any failure, so a provider
	// that keeps refusing cannot hold an item forever.
	// Defaults to 3600; 1 to 604800.
	// +optional
	// +kubebuilder:default=3600
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=604800
	MaxRateLimitedWaitSeconds *int32 `json:"maxRateLimitedWaitSeconds,omitempty"`
}

// CostPolicy holds prices in USD and the alert thresholds.
type CostPolicy struct {
	// inputPerMillionTokens is the USD price of one million input tokens.
	// +optional
	InputPerMillionTokens Decimal `json:"inputPerMillionTokens,omitempty"`
	// outputPerMillionTokens is the USD price of one million output tokens.
	// +optional
	OutputPerMillionTokens Decimal `json:"outputPerMillionTokens,omitempty"`
	// perRequest is a flat USD price per call, added to the token prices.
	// +optional
	PerRequest Decimal `json:"perRequest,omitempty"`
	// alerts are the spending thresholds that raise CostAlert.
	// +optional
	Alerts CostAlerts `json:"alerts,omitempty"`
	// budgets are hard limits on spend: a call is sent only if its
	// worst-case cost (input tokens estimated from the prompt, the batch's
	// maxTokens of output) fits what is left of the UTC day's and month's
	// budget; batches wait until the period resets.
	// +optional
	Budgets CostBudgets `json:"budgets,omitempty"`
}

// CostBudgets are hard spending limits in USD per UTC day and month.
//
// +kubebuilder:validation:XValidation:rule="!has(self.daily) || !has(self.monthly) || double(self.monthly) >= double(self.daily)",message="budgets.monthly must not be lower than budgets.daily",fieldPath=".monthly"
type CostBudgets struct {
	// daily is the most the calls of one UTC day may cost.
	// +optional
	Daily Decimal `json:"daily,omitempty"`
	// monthly is the most the calls of one UTC month may cost.
	// +optional
	Monthly Decimal `json:"monthly,omitempty"`
}

// CostAlerts are spending thresholds in USD; each raises CostAlert and one
// Warning Event per period when crossed.
//
// +kubebuilder:validation:XValidation:rule="!has(self.daily) || !has(self.monthly) || double(self.monthly) >= double(self.daily)",message="alerts.monthly must not be lower than alerts.daily",fieldPath=".monthly"
type CostAlerts struct {
	// daily is the threshold for the current UTC day.
	// +optional
	Daily Decimal `json:"daily,omitempty"`
	// monthly is the threshold for the current UTC month.
	// +optional
	Monthly Decimal `json:"monthly,omitempty"`
}

// OllamaSpec configures an Ollama pool: which pods serve it and how the node
// agent keeps them warm and their GPUs clean.
type OllamaSpec struct {
	// namespace of the Ollama pods.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=63
	Namespace string `json:"namespace"`
	// podSelector selects the Ollama pods of this pool.
	// +required
	PodSelector metav1.LabelSelector `json:"podSelector"`
	// port is the Ollama API port on each pod.
	// Defaults to 11434; 1 to 65535.
	// +optional
	// +kubebuilder:default=11434
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=65535
	Port int32 `json:"port,omitempty"`
	// warmup says how the node agent preloads the model before traffic arrives.
	// +optional
	// +kubebuilder:default={}
	Warmup WarmupSpec `json:"warmup,omitzero"`
	// gpuCleanupIntervalSeconds is how often idle models are unloaded, in
	// seconds (original report: 5 minutes).
	// Defaults to 300; 10 to 86400.
	// +optional
	// +kubebuilder:default=300
	// +kubebuilder:validation:Minimum=10
	// +kubebuilder:validation:Maximum=86400
	GPUCleanupIntervalSeconds *int32 `json:"gpuCleanupIntervalSeconds,omitempty"`
	// contextLength is the context, in tokens, the pool's model is loaded
	// with (Ollama's num_ctx): at warm-up by the node agent and on every
	// call by the manager, so a call never makes Ollama load the model
	// again with another context. Unset leaves Ollama's default, which
	// v0.17 sizes from the GPU: 4,096 tokens under 24 GiB, 32,768 up to
	// 48 GiB and 262,144 from 48 GiB, so on an H100 or H200 a model's
	// KV cache alone can take tens of GiB. Set it to what your prompts
	// need.
	// 256 to 1048576.
	// +optional
	// +kubebuilder:validation:Minimum=256
	// +kubebuilder:validation:Maximum=1048576
	ContextLength *int32 `json:"contextLength,omitempty"`
	// gpuMemoryHighWatermark is the GPU memory use, in percent of total,
	// above which the agent cleans up at once.
	// Defaults to 90; 1 to 100.
	// +optional
	// +kubebuilder:default=90
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=100
	GPUMemoryHighWatermark int32 `json:"gpuMemoryHighWatermark,omitempty"`
}

// WarmupSpec configures model preloading.
type WarmupSpec struct {
	// retries is how many warmup attempts are made (original report: 3).
	// Defaults to 3; 1 to 20.
	// +optional
	// +kubebuilder:default=3
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=20
	Retries int32 `json:"retries,omitempty"`
	// keepAliveSeconds is how long Ollama keeps the model loaded after a
	// call, in seconds.
	// Defaults to 1800; 0 to 604800.
	// +optional
	// +kubebuilder:default=1800
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=604800
	KeepAliveSeconds *int32 `json:"keepAliveSeconds,omitempty"`
	// timeoutSeconds bounds one warmup attempt, in seconds.
	// Defaults to 60; 1 to 3600.
	// +optional
	// +kubebuilder:default=60
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=3600
	TimeoutSeconds *int32 `json:"timeoutSeconds,omitempty"`
}

// LLMProvider is a provider account (Gemini, Anthropic, OpenAI) or a pool of
// Ollama pods, with the quota every call to it is kept inside.
//
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:scope=Cluster,shortName=llmp,categories=llmquota
// +kubebuilder:printcolumn:name="Type",type=string,JSONPath=`.spec.type`,description="Gemini, Anthropic, OpenAI or Ollama"
// +kubebuilder:printcolumn:name="Minute",type=string,JSONPath=`.status.usage.minute.summary`,description="Requests in the rolling minute of the per-minute limit, or unlimited"
// +kubebuilder:printcolumn:name="Hour",type=string,JSONPath=`.status.usage.hour.summary`,description="Requests in the rolling hour of the per-hour limit, or unlimited"
// +kubebuilder:printcolumn:name="Day",type=string,JSONPath=`.status.usage.day.summary`,description="Requests in the rolling day of the per-day limit, or unlimited"
// +kubebuilder:printcolumn:name="Cost-Today",type=string,JSONPath=`.status.cost.today`,description="USD spent on calls this UTC day"
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`,description="Whether new batches are admitted: credentials and fallback resolve and the provider has not refused the key"
// +kubebuilder:printcolumn:name="Health",type=string,JSONPath=`.status.conditions[?(@.type=="Degraded")].reason`,description="Healthy, AuthFailed, ConsecutiveFailures or CircuitOpen"
// +kubebuilder:printcolumn:name="RateLimited",type=string,JSONPath=`.status.conditions[?(@.type=="RateLimited")].reason`,description="What holds calls back (MinuteWindowFull, RetryAfter, DailyBudgetExhausted...) or WithinLimits"
// +kubebuilder:printcolumn:name="Warm",type=string,JSONPath=`.status.conditions[?(@.type=="Warm")].message`,priority=10,description="Warm endpoints of an Ollama pool"
// +kubebuilder:printcolumn:name="Model",type=string,JSONPath=`.spec.model`,priority=10,description="The default model"
// +kubebuilder:printcolumn:name="Fallback",type=string,JSONPath=`.spec.fallback.name`,priority=10,description="The provider that takes items this one cannot serve"
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`,description="Time since the provider was created"
// +kubebuilder:validation:XValidation:rule="!has(self.spec.fallback) || self.spec.fallback.name != self.metadata.name",message="spec.fallback must name another LLMProvider, not this one",fieldPath=".spec.fallback.name"
type LLMProvider struct {
	metav1.TypeMeta `json:",inline"`
	// metadata is the standard object metadata.
	// +optional
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// spec is what the provider may take.
	// +required
	Spec LLMProviderSpec `json:"spec"`
	// status is what the operator observes.
	// +optional
	Status LLMProviderStatus `json:"status,omitempty"`
}

// LLMProviderList is a list of LLMProviders.
//
// +kubebuilder:object:root=true
type LLMProviderList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []LLMProvider `json:"items"`
}

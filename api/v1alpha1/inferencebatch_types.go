package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// CachePolicy says whether a batch reuses stored results.
// +kubebuilder:validation:Enum=Disabled;Enabled
type CachePolicy string

const (
	// CacheDisabled sends every item to the provider.
	CacheDisabled CachePolicy = "Disabled"
	// CacheEnabled reuses an earlier stored result for the same model,
	// parameters and prompt, without a provider call.
	CacheEnabled CachePolicy = "Enabled"
)

// OutputKind names where results are written.
// +kubebuilder:validation:Enum=ConfigMap;S3
type OutputKind string

const (
	// OutputConfigMap writes results as JSONL into ConfigMaps owned by the
	// batch, sharded below the 1 MiB object limit: for small batches.
	OutputConfigMap OutputKind = "ConfigMap"
	// OutputS3 writes results as JSONL objects (parts of bounded size, then
	// a manifest) into S3-compatible object storage: for large batches.
	OutputS3 OutputKind = "S3"
)

// InferenceBatchSpec describes one unit of prompt work.
//
// +kubebuilder:validation:XValidation:rule="has(self.items) != has(self.itemsFrom)",message="exactly one of items or itemsFrom must be set"
// +kubebuilder:validation:XValidation:rule="!has(self.priorityClassName) || !has(self.priority) || self.priority == 0",message="set priorityClassName or priority, not both",fieldPath=".priorityClassName"
type InferenceBatchSpec struct {
	// providerRef names the LLMProvider that runs the items.
	// +required
	ProviderRef ProviderReference `json:"providerRef"`

	// model overrides the provider's default model.
	// +optional
	// +kubebuilder:validation:MaxLength=256
	Model string `json:"model,omitempty"`

	// system is the system text sent with every prompt.
	// +optional
	// +kubebuilder:validation:MaxLength=32768
	System string `json:"system,omitempty"`

	// maxTokens bounds the output of each call, thinking included: it is
	// the cap sent to the provider and the output the budgets reserve.
	// When unset, 4096 is sent and reserved.
	// 1 to 1000000.
	// +optional
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=1000000
	MaxTokens *int32 `json:"maxTokens,omitempty"`

	// temperature is the sampling temperature, a decimal string such as "0.2".
	// +optional
	Temperature Decimal `json:"temperature,omitempty"`

	// thinkingBudget bounds a thinking model's thinking, in tokens
	// (Gemini's thinkingConfig.thinkingBudget): 0 turns thinking off where
	// the model allows it, -1 lets the model decide. Thinking is billed as
	// output and counted against maxTokens. Only Gemini providers take it.
	// -1 to 1000000.
	// +optional
	// +kubebuilder:validation:Minimum=-1
	// +kubebuilder:validation:Maximum=1000000
	ThinkingBudget *int32 `json:"thinkingBudget,omitempty"`

	// treatTruncatedAs says how an answer cut at maxTokens counts:
	// Succeeded (the default: its text is kept, and status.counts.truncated
	// counts it) or Failed (errorClass Truncated).
	// +optional
	// +kubebuilder:validation:Enum=Succeeded;Failed
	TreatTruncatedAs string `json:"treatTruncatedAs,omitempty"`

	// The list is atomic: as a map keyed by id the API server tracked every
	// item's fields for server-side apply, which made each object half as
	// large again in etcd (7.9 KB of managedFields for 100 items) and,
	// measured the other way, the atomic list saves the API server 27% of
	// its CPU per create and 37% per status write (docs/benchmarks.md, "API
	// server cost per batch"). Items never change once admitted, so nobody
	// needs to own one item apart from the others. Unique ids and the 1 MiB
	// bound are checked by the ValidatingAdmissionPolicy in config/policy,
	// on the main resource only: as CRD rules they ran on every status write.

	// items are the prompts, inline, at most 1 MiB of prompts and ids in all
	// (an object must fit etcd's 1.5 MiB request limit). Use itemsFrom for
	// larger batches. Ids are unique within the batch.
	// +optional
	// +listType=atomic
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=1000
	Items []Item `json:"items,omitempty"`

	// itemsFrom reads the prompts as JSONL ({"id","prompt","score"} per line)
	// from a ConfigMap key in the batch's namespace.
	// +optional
	ItemsFrom *ItemsSource `json:"itemsFrom,omitempty"`

	// minScore drops items scoring below it; they are counted as filtered
	// and never sent (original report: 0.20).
	// Defaults to 0.20.
	// +optional
	// +kubebuilder:default="0.20"
	MinScore Score `json:"minScore,omitempty"`

	// batchSize is how many items are sent together before
	// batchDelayMilliseconds.
	// Defaults to 5; 1 to 1000.
	// +optional
	// +kubebuilder:default=5
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=1000
	BatchSize int32 `json:"batchSize,omitempty"`

	// batchDelayMilliseconds is the pause between two batches, in
	// milliseconds (the original report's 2 seconds: 2000).
	// Defaults to 2000; 0 to 3600000.
	// +optional
	// +kubebuilder:default=2000
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=3600000
	BatchDelayMilliseconds *int32 `json:"batchDelayMilliseconds,omitempty"`

	// priorityClassName names the InferencePriorityClass whose value
	// orders this batch among others sharing its provider (higher first).
	// A class that does not exist holds the batch with Admitted=False
	// (PriorityClassNotFound). Excludes priority.
	// +optional
	PriorityClassName LocalObjectName `json:"priorityClassName,omitempty"`

	// priority orders batches sharing a provider: higher goes first.
	// Prefer priorityClassName: a raw priority other than 0 is refused at
	// apply unless the batch's namespace is labelled
	// llmquota.dev/raw-priority=allowed, which only an admin sets (the
	// InferenceBatch admission policy).
	// Defaults to 0; -1000 to 1000.
	// +optional
	// +kubebuilder:default=0
	// +kubebuilder:validation:Minimum=-1000
	// +kubebuilder:validation:Maximum=1000
	Priority int32 `json:"priority,omitempty"`

	// suspend pauses the batch: calls in flight finish, nothing new starts.
	// +optional
	Suspend bool `json:"suspend,omitempty"`

	// activeDeadlineSeconds fails the batch with DeadlineExceeded this long
	// after it started, keeping the results so far.
	// At least 1.
	// +optional
	// +kubebuilder:validation:Minimum=1
	ActiveDeadlineSeconds *int64 `json:"activeDeadlineSeconds,omitempty"`

	// ttlSecondsAfterFinished deletes the batch this long after it
	// completed or failed, and with it results written to ConfigMaps (the
	// batch owns them). Results written to S3 stay in the bucket: the
	// bucket's own lifecycle rules expire them.
	// At least 0.
	// +optional
	// +kubebuilder:validation:Minimum=0
	TTLSecondsAfterFinished *int32 `json:"ttlSecondsAfterFinished,omitempty"`

	// output says where results go.
	// +optional
	// +kubebuilder:default={}
	Output OutputSpec `json:"output,omitzero"`

	// cache reuses stored results for identical model, parameters and prompt.
	// Defaults to Disabled.
	// +optional
	// +kubebuilder:default=Disabled
	Cache CachePolicy `json:"cache,omitempty"`
}

// Item is one prompt with its pre-score.
type Item struct {
	// id identifies the item in results; unique within the batch.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=128
	ID string `json:"id"`
	// prompt is the text sent to the model.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=16384
	Prompt string `json:"prompt"`
	// score is the item's pre-score; items below minScore are filtered.
	// An item without a score is never filtered.
	// +optional
	Score Score `json:"score,omitempty"`
}

// ItemsSource points at JSONL items kept outside the batch: a ConfigMap
// key (up to 1 MiB) or an object in S3-compatible storage (any size).
//
// +kubebuilder:validation:XValidation:rule="has(self.configMapKeyRef) != has(self.s3)",message="itemsFrom needs exactly one of configMapKeyRef and s3"
type ItemsSource struct {
	// configMapKeyRef names the ConfigMap key holding the JSONL.
	// +optional
	ConfigMapKeyRef *ConfigMapKeyReference `json:"configMapKeyRef,omitempty"`
	// s3 names a JSONL object in S3-compatible object storage, read as a
	// stream when the batch is admitted.
	// +optional
	S3 *S3ObjectReference `json:"s3,omitempty"`
}

// S3Bucket locates a bucket of S3-compatible object storage (AWS S3, GCS
// through its S3 interoperability, MinIO, Ceph RGW) and the credentials
// that reach it.
type S3Bucket struct {
	// endpoint is the store's base URL, such as
	// https://s3.us-east-1.amazonaws.com, https://storage.googleapis.com or
	// http://minio.minio.svc:9000.
	// +required
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:Pattern=`^https?://[^/?#]+/?$`
	Endpoint string `json:"endpoint"`
	// region of the bucket; empty lets the client ask the store.
	// +optional
	// +kubebuilder:validation:MaxLength=63
	Region string `json:"region,omitempty"`
	// bucket is the bucket's name.
	// +required
	// +kubebuilder:validation:MinLength=3
	// +kubebuilder:validation:MaxLength=63
	// +kubebuilder:validation:Pattern=`^[a-z0-9][a-z0-9.-]*[a-z0-9]$`
	Bucket string `json:"bucket"`
	// credentialsSecretName names a Secret in the batch's namespace with
	// the keys accessKeyID and secretAccessKey.
	// +required
	CredentialsSecretName LocalObjectName `json:"credentialsSecretName"`
}

// S3ObjectReference names one object.
type S3ObjectReference struct {
	S3Bucket `json:",inline"`
	// key is the object's key.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=1024
	Key string `json:"key"`
}

// S3Output is where an S3 sink writes: parts <prefix>part-NNNNN.jsonl and,
// once every item has a result, <prefix>manifest.json.
type S3Output struct {
	S3Bucket `json:",inline"`
	// prefix of the result objects; empty means "<namespace>/<batch>/".
	// +optional
	// +kubebuilder:validation:MaxLength=900
	Prefix string `json:"prefix,omitempty"`
}

// ConfigMapKeyReference names one key of a ConfigMap in the batch's namespace.
type ConfigMapKeyReference struct {
	// name of the ConfigMap.
	// +required
	Name LocalObjectName `json:"name"`
	// key in the ConfigMap's data.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	Key string `json:"key"`
}

// OutputSpec says where results are written.
//
// +kubebuilder:validation:XValidation:rule="!has(self.kind) || self.kind != 'S3' || has(self.s3)",message="output.s3 is required when output.kind is S3"
// +kubebuilder:validation:XValidation:rule="(has(self.kind) && self.kind == 'S3') || !has(self.s3)",message="output.s3 is set but output.kind is not S3"
type OutputSpec struct {
	// kind of sink: ConfigMap (the default, for small batches) or S3.
	// Defaults to ConfigMap.
	// +optional
	// +kubebuilder:default=ConfigMap
	Kind OutputKind `json:"kind,omitempty"`
	// s3 is where results go when kind is S3.
	// +optional
	S3 *S3Output `json:"s3,omitempty"`
}

// InferenceBatch is a unit of prompt work: the operator filters its items by
// score, paces them in batches, runs them under the provider's quota with
// retries, and records every item's result.
//
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=ib,categories=llmquota
// +kubebuilder:printcolumn:name="Provider",type=string,JSONPath=`.spec.providerRef.name`,description="The LLMProvider whose quota the calls run under"
// +kubebuilder:printcolumn:name="Progress",type=string,JSONPath=`.status.progress`,description="Items with a stored result (filtered ones included) of all items"
// +kubebuilder:printcolumn:name="Failed",type=integer,JSONPath=`.status.counts.failed`,description="Items that failed after their retries"
// +kubebuilder:printcolumn:name="Status",type=string,JSONPath=`.status.conditions[?(@.type=="Progressing")].reason`,description="Running; why the batch waits (ProviderNotFound, NoModel, MinuteWindowFull, Suspended...); or how it finished (Succeeded, ItemsFailed, DeadlineExceeded)"
// +kubebuilder:printcolumn:name="ETA",type=string,JSONPath=`.status.estimatedCompletionTime`,description="When the remaining items will be done (UTC) if the provider's quota is the only limit"
// +kubebuilder:printcolumn:name="Filtered",type=integer,JSONPath=`.status.counts.filtered`,priority=10,description="Items below minScore, never sent"
// +kubebuilder:printcolumn:name="Succeeded",type=integer,JSONPath=`.status.counts.succeeded`,priority=10,description="Items with a successful result"
// +kubebuilder:printcolumn:name="RateLimited",type=string,JSONPath=`.status.conditions[?(@.type=="RateLimited")].reason`,priority=10,description="What holds the provider's calls back, or WithinLimits"
// +kubebuilder:printcolumn:name="Cost",type=string,JSONPath=`.status.usage.costUSD`,priority=10,description="What the stored answers cost, in USD"
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`,description="Time since the batch was created"
//
// Once admitted, a batch's work is fixed, as a Job's pod template is:
// only suspend, priority, activeDeadlineSeconds and ttlSecondsAfterFinished
// change a running batch (applied at once); the rest is refused at apply by
// the ValidatingAdmissionPolicy in config/policy, which names the fields
// that changed.
type InferenceBatch struct {
	metav1.TypeMeta `json:",inline"`
	// metadata is the standard object metadata.
	// +optional
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// spec is the work.
	// +required
	Spec InferenceBatchSpec `json:"spec"`
	// status is its progress.
	// +optional
	Status InferenceBatchStatus `json:"status,omitempty"`
}

// InferenceBatchList is a list of InferenceBatches.
//
// +kubebuilder:object:root=true
type InferenceBatchList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []InferenceBatch `json:"items"`
}

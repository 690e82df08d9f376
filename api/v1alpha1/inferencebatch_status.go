package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// InferenceBatchStatus is the progress of a batch.
type InferenceBatchStatus struct {
	// conditions are Admitted, RateLimited, BackingOff, Progressing,
	// Suspended, and the terminal Complete, Failed and Finished (see
	// conditions.go).
	// +optional
	// +listType=map
	// +listMapKey=type
	// +kubebuilder:validation:MaxItems=16
	Conditions []metav1.Condition `json:"conditions,omitempty"`

	// observedGeneration is the spec generation the status was computed from.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`

	// counts are the items by state.
	// +optional
	Counts ItemCounts `json:"counts,omitempty"`

	// progress is "done/total" as kubectl get shows it, where done counts
	// items with a stored result (filtered items included: their result
	// says "filtered") and total counts every item.
	// +optional
	Progress string `json:"progress,omitempty"`

	// batches is how many batches of batchSize are done, of how many.
	// +optional
	Batches BatchCounts `json:"batches,omitempty"`

	// usage is what the batch's stored answers used and cost.
	// +optional
	Usage *BatchUsage `json:"usage,omitempty"`

	// startTime is when the batch was admitted.
	// +optional
	StartTime *metav1.Time `json:"startTime,omitempty"`

	// completionTime is when the batch completed or failed.
	// +optional
	CompletionTime *metav1.Time `json:"completionTime,omitempty"`

	// estimatedCompletionTime is when the remaining items will be done if
	// the provider's quota is the only limit. Unset while the batch is
	// suspended, held by a budget or waits to be admitted, and once it
	// finished.
	// +optional
	EstimatedCompletionTime *metav1.Time `json:"estimatedCompletionTime,omitempty"`

	// results lists the objects holding the item results.
	// +optional
	// +kubebuilder:validation:MaxItems=1024
	// +listType=atomic
	Results []ResultReference `json:"results,omitempty"`
}

// ItemCounts are the batch's items by state. Every count is written, 0
// included: status writes carry the counts whole (a merge patch would
// otherwise leave a count that fell to 0 at its last value).
type ItemCounts struct {
	// total is every item of the batch, filtered ones included.
	// +optional
	Total int32 `json:"total"`
	// filtered were below minScore and never sent.
	// +optional
	Filtered int32 `json:"filtered"`
	// pending wait to be sent.
	// +optional
	Pending int32 `json:"pending"`
	// running are in flight.
	// +optional
	Running int32 `json:"running"`
	// succeeded have a stored successful result.
	// +optional
	Succeeded int32 `json:"succeeded"`
	// failed have a stored failure, after their retries.
	// +optional
	Failed int32 `json:"failed"`
	// cached reused an earlier result.
	// +optional
	Cached int32 `json:"cached"`
	// truncated answers were cut at the output cap (spec.maxTokens): they
	// count as succeeded, or as failed with treatTruncatedAs: Failed.
	// +optional
	Truncated int32 `json:"truncated,omitempty"`
	// withheld answers were stopped or withheld by the provider's content
	// policy (finish reason safety); they count as succeeded.
	// +optional
	Withheld int32 `json:"withheld,omitempty"`
	// retries counts every retried call.
	// +optional
	Retries int32 `json:"retries"`
}

// BatchUsage is what a batch's stored answers used, summed from its result
// lines (cached results reused are free and not counted).
type BatchUsage struct {
	// tokensIn are the input tokens.
	// +optional
	TokensIn int64 `json:"tokensIn"`
	// tokensOut are the output tokens, a thinking model's thinking included.
	// +optional
	TokensOut int64 `json:"tokensOut"`
	// costUSD is their cost at the provider's prices, in USD.
	// +optional
	CostUSD Decimal `json:"costUSD,omitempty"`
}

// BatchCounts counts batches of batchSize items.
type BatchCounts struct {
	// done batches have every item's result stored.
	// +optional
	Done int32 `json:"done,omitempty"`
	// total batches after filtering.
	// +optional
	Total int32 `json:"total"`
}

// ResultReference names an object holding results.
type ResultReference struct {
	// kind of the object: ConfigMap, S3 for a manifest in object storage,
	// or ConfigMaps for the result ConfigMaps past the first 31 of a batch
	// (one is written per flush and never again; the status lists at most
	// 32 references).
	// +required
	Kind string `json:"kind"`
	// name of the object, in the batch's namespace (s3://bucket/key for S3;
	// the label selector of all the batch's result ConfigMaps for
	// ConfigMaps).
	// +required
	Name string `json:"name"`
	// items is how many results it holds.
	// +required
	Items int32 `json:"items"`
}

package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// InferencePriorityClass is a named priority an admin creates and tenants
// choose with an InferenceBatch's spec.priorityClassName, as Kueue's
// WorkloadPriorityClass and the core PriorityClass: the admin decides
// what each class is worth, a tenant only which class its work is in.
// Batches sharing a provider go in order of their class's value, higher
// first; the value is read again whenever the batch is reconciled, so an
// edit of the class reorders running batches too.
//
// +kubebuilder:object:root=true
// +kubebuilder:resource:scope=Cluster,shortName=ipc
// +kubebuilder:printcolumn:name="Value",type=integer,JSONPath=`.value`,description="Batches of a higher value go first"
// +kubebuilder:printcolumn:name="Description",type=string,JSONPath=`.description`,description="What the class is for"
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`,description="Time since the class was created"
type InferencePriorityClass struct {
	metav1.TypeMeta `json:",inline"`
	// metadata is the standard object metadata.
	// +optional
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// value orders the batches of the class among others sharing a
	// provider: higher goes first.
	// -1000 to 1000.
	// +required
	// +kubebuilder:validation:Minimum=-1000
	// +kubebuilder:validation:Maximum=1000
	Value *int32 `json:"value,omitempty"`

	// description says what the class is for.
	// +optional
	// +kubebuilder:validation:MaxLength=1024
	Description string `json:"description,omitempty"`
}

// InferencePriorityClassList is a list of InferencePriorityClasses.
//
// +kubebuilder:object:root=true
type InferencePriorityClassList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []InferencePriorityClass `json:"items"`
}

// Package v1alpha1 holds the llmquota.dev/v1alpha1 API: LLMProvider, a
// provider account or Ollama pool with its quota, and InferenceBatch, a unit
// of prompt work run under that quota.
//
// +kubebuilder:object:generate=true
// +kubebuilder:ac:generate=true
// +groupName=llmquota.dev
package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

var (
	// GroupVersion is the API group and version of every type in this package.
	GroupVersion = schema.GroupVersion{Group: "llmquota.dev", Version: "v1alpha1"}

	// SchemeGroupVersion is GroupVersion under the name the generated apply
	// configurations (applyconfiguration/) refer to.
	SchemeGroupVersion = GroupVersion

	// SchemeBuilder registers the types of this package into a runtime.Scheme.
	SchemeBuilder = runtime.NewSchemeBuilder(addKnownTypes)

	// AddToScheme adds the types of this package to a runtime.Scheme.
	AddToScheme = SchemeBuilder.AddToScheme
)

func addKnownTypes(s *runtime.Scheme) error {
	s.AddKnownTypes(GroupVersion,
		&LLMProvider{}, &LLMProviderList{},
		&InferenceBatch{}, &InferenceBatchList{},
		&InferencePriorityClass{}, &InferencePriorityClassList{},
	)
	metav1.AddToGroupVersion(s, GroupVersion)
	return nil
}

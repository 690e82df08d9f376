// Package access decides which namespaces may use an LLMProvider: its
// spec.namespaceSelector, with the semantics of Kueue's ClusterQueue
// (unset selects no namespace, {} selects every namespace). The batch
// controller and the gateway both ask it, so the rule has one reading.
package access

import (
	"fmt"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
)

// Refusal says why a namespace may not use a provider. It is an error, so
// callers can return it; Error is a sentence for a condition or a 403.
type Refusal struct {
	Provider  string
	Namespace string
	// Reason is what refused it: unset, unmatched or invalid selector.
	Reason string
}

func (r *Refusal) Error() string {
	return fmt.Sprintf("LLMProvider %q does not admit namespace %q: %s", r.Provider, r.Namespace, r.Reason)
}

// Selects reports whether selector, a provider's spec.namespaceSelector,
// selects a namespace with the given labels. It returns nil when it does,
// and a Refusal naming why when it does not. A namespace of "" (a caller
// that is not a ServiceAccount) is in no namespace, so nothing selects it.
func Selects(provider string, selector *metav1.LabelSelector, namespace string, nsLabels map[string]string) error {
	refuse := func(reason string) error {
		return &Refusal{Provider: provider, Namespace: namespace, Reason: reason}
	}
	switch {
	case namespace == "":
		return &Refusal{Provider: provider, Reason: "the caller is not a ServiceAccount, so it is in no namespace a selector can select"}
	case selector == nil:
		return refuse("its spec.namespaceSelector is unset, which selects no namespace ({} selects all)")
	}
	sel, err := metav1.LabelSelectorAsSelector(selector)
	if err != nil {
		return refuse(fmt.Sprintf("its spec.namespaceSelector is invalid: %v", err))
	}
	if !sel.Matches(labels.Set(nsLabels)) {
		return refuse(fmt.Sprintf("its spec.namespaceSelector (%s) does not match the namespace's labels", metav1.FormatLabelSelector(selector)))
	}
	return nil
}

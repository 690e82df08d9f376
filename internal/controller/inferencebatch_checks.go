package controller

import (
	"context"
	"errors"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"

	llmv1 "github.com/llmquota/llmquota/api/v1alpha1"
	"github.com/llmquota/llmquota/internal/access"
)

// +kubebuilder:rbac:groups="",resources=namespaces,verbs=get;list;watch
// +kubebuilder:rbac:groups=llmquota.dev,resources=inferencepriorityclasses,verbs=get;list;watch

// hold is why a batch waits for admission.
type hold struct {
	reason, message string
	// recheck is when to look again; 0 when a watch wakes the batch.
	recheck time.Duration
}

// admissionCheck holds a batch back (a hold), lets it through (nil), or
// cannot tell (an error, retried).
type admissionCheck func(ctx context.Context, b *llmv1.InferenceBatch, p *llmv1.LLMProvider) (*hold, error)

// admissionHold runs the admission checks in order, as cert-manager's
// policy chains: the first hold is the batch's. They gate admission
// only: a running batch goes on, as Kueue keeps admitted workloads when a
// ClusterQueue's selector changes (and a refused key fails its calls,
// which it records).
func (r *InferenceBatchReconciler) admissionHold(ctx context.Context, b *llmv1.InferenceBatch, p *llmv1.LLMProvider) (*hold, error) {
	for _, check := range []admissionCheck{r.namespaceSelected, r.priorityClassExists, providerReady} {
		if h, err := check(ctx, b, p); err != nil || h != nil {
			return h, err
		}
	}
	return nil, nil
}

// namespaceSelected holds a batch whose namespace the provider's
// namespaceSelector does not select; the provider and namespace watches
// wake it.
func (r *InferenceBatchReconciler) namespaceSelected(ctx context.Context, b *llmv1.InferenceBatch, p *llmv1.LLMProvider) (*hold, error) {
	ns := namespaceMeta()
	if err := r.Get(ctx, types.NamespacedName{Name: b.Namespace}, ns); err != nil {
		return nil, err
	}
	var refused *access.Refusal
	if errors.As(access.Selects(p.Name, p.Spec.NamespaceSelector, b.Namespace, ns.Labels), &refused) {
		return &hold{reason: llmv1.ReasonNamespaceNotSelected, message: refused.Error()}, nil
	}
	return nil, nil
}

// namespaceMeta is a Namespace's metadata, read from the metadata-only
// informer the namespace watch starts.
func namespaceMeta() *metav1.PartialObjectMetadata {
	m := &metav1.PartialObjectMetadata{}
	m.SetGroupVersionKind(corev1.SchemeGroupVersion.WithKind("Namespace"))
	return m
}

// priorityClassExists holds a batch whose priority class does not exist;
// the class watch wakes it.
func (r *InferenceBatchReconciler) priorityClassExists(ctx context.Context, b *llmv1.InferenceBatch, _ *llmv1.LLMProvider) (*hold, error) {
	_, err := r.priority(ctx, b)
	if errors.Is(err, errNoPriorityClass) {
		return &hold{reason: llmv1.ReasonPriorityClassNotFound, message: err.Error()}, nil
	}
	return nil, err
}

// providerReady holds a batch while its provider is not Ready (a missing
// Secret, a refused key, a fallback loop), looking again every 5s.
func providerReady(_ context.Context, _ *llmv1.InferenceBatch, p *llmv1.LLMProvider) (*hold, error) {
	ready := meta.FindStatusCondition(p.Status.Conditions, llmv1.ConditionReady)
	if ready != nil && ready.Status == metav1.ConditionTrue {
		return nil, nil
	}
	msg := fmt.Sprintf("LLMProvider %q is not Ready", p.Name)
	if ready != nil {
		msg += fmt.Sprintf(" (%s): %s", ready.Reason, ready.Message)
	}
	return &hold{reason: llmv1.ReasonProviderNotReady, message: msg, recheck: waitForProvider}, nil
}

// errNoPriorityClass says spec.priorityClassName names no class.
var errNoPriorityClass = errors.New("no such InferencePriorityClass")

// priority is the batch's priority: its class's value, else spec.priority
// (which the admission policy lets only admin-labelled namespaces set).
func (r *InferenceBatchReconciler) priority(ctx context.Context, b *llmv1.InferenceBatch) (int32, error) {
	name := b.Spec.PriorityClassName
	if name == "" {
		return b.Spec.Priority, nil
	}
	var pc llmv1.InferencePriorityClass
	if err := r.Get(ctx, types.NamespacedName{Name: string(name)}, &pc); err != nil {
		if apierrors.IsNotFound(err) {
			return 0, fmt.Errorf("%w: InferencePriorityClass %q named by spec.priorityClassName does not exist (kubectl get inferencepriorityclasses lists those that do)",
				errNoPriorityClass, name)
		}
		return 0, err
	}
	return ptr.Deref(pc.Value, 0), nil
}

package controller

import (
	"context"
	"encoding/json"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/util/retry"

	llmv1 "github.com/llmquota/llmquota/api/v1alpha1"
	"github.com/llmquota/llmquota/internal/cost"
)

// The spend each namespace committed under its budgets (spec.shares) lives
// in a ConfigMap of the manager's own namespace, one per provider, owned by
// it: one key per namespace, written before the namespace's calls beyond
// it are sent. It is the manager's state, like the quota snapshot, and
// bounded by the namespaces that have budgets.
const namespaceCostPrefix = "llmquota-cost-"

func namespaceCostName(provider string) string {
	return namespaceCostPrefix + quotaStateName(provider)[len(quotaStatePrefix):]
}

// loadNamespaceCost reads the commitments persisted for a provider's
// namespaces, uncached (once per dispatcher start). A ConfigMap of an
// earlier provider of the same name is not this one's.
func (r *LLMProviderReconciler) loadNamespaceCost(ctx context.Context, p *llmv1.LLMProvider) (map[string]cost.Period, error) {
	var cm corev1.ConfigMap
	err := r.APIReader.Get(ctx, types.NamespacedName{Namespace: r.stateNamespace(), Name: namespaceCostName(p.Name)}, &cm)
	switch {
	case apierrors.IsNotFound(err):
		return nil, nil
	case err != nil:
		return nil, fmt.Errorf("reading the namespaces' committed spend of LLMProvider %s: %w", p.Name, err)
	}
	if !metav1.IsControlledBy(&cm, p) {
		return nil, nil
	}
	out := make(map[string]cost.Period, len(cm.Data))
	for ns, v := range cm.Data {
		var c llmv1.CostCommitment
		if err := json.Unmarshal([]byte(v), &c); err != nil {
			return nil, fmt.Errorf("ConfigMap %s/%s, key %s: %w", cm.Namespace, cm.Name, ns, err)
		}
		out[ns] = cost.Period{Day: c.Day, Today: string(c.Today), Month: c.Month, ThisMonth: string(c.ThisMonth)}
	}
	return out, nil
}

// persistNamespaceCost writes one namespace's committed spend into the
// provider's ConfigMap (read, changed, written; again on a conflict).
func (r *LLMProviderReconciler) persistNamespaceCost(p *llmv1.LLMProvider) func(context.Context, string, cost.Period) error {
	controller := true
	owner := metav1.OwnerReference{APIVersion: llmv1.GroupVersion.String(), Kind: "LLMProvider", Name: p.Name, UID: p.UID, Controller: &controller}
	key := types.NamespacedName{Namespace: r.stateNamespace(), Name: namespaceCostName(p.Name)}
	return func(ctx context.Context, ns string, c cost.Period) error {
		value, err := json.Marshal(llmv1.CostCommitment{Day: c.Day, Today: llmv1.Decimal(c.Today), Month: c.Month, ThisMonth: llmv1.Decimal(c.ThisMonth)})
		if err != nil {
			return err
		}
		err = retry.RetryOnConflict(retry.DefaultRetry, func() error {
			var cm corev1.ConfigMap
			err := r.APIReader.Get(ctx, key, &cm)
			if apierrors.IsNotFound(err) {
				cm = corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: key.Namespace, Name: key.Name,
					Labels:          map[string]string{"app.kubernetes.io/managed-by": "llmquota", "llmquota.dev/provider-state": "namespace-cost"},
					OwnerReferences: []metav1.OwnerReference{owner}},
					Data: map[string]string{ns: string(value)}}
				return r.Create(ctx, &cm)
			}
			if err != nil {
				return err
			}
			if !metav1.IsControlledBy(&cm, p) || cm.Data == nil { // an earlier provider's of the same name
				cm.OwnerReferences, cm.Data = []metav1.OwnerReference{owner}, map[string]string{}
			}
			cm.Data[ns] = string(value)
			return r.Update(ctx, &cm)
		})
		if err != nil {
			return fmt.Errorf("writing the committed spend of namespace %s on LLMProvider %s to ConfigMap %s: %w", ns, p.Name, key, err)
		}
		return nil
	}
}

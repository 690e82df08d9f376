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

// The spend committed under budgets lives in a ConfigMap of the manager's
// own namespace, one per provider, owned by it: one key per namespace with
// budgets of its own (spec.shares) and providerCommitment for the
// provider's (spec.cost.budgets), each written before calls beyond it are
// sent. It is the manager's state, like the quota snapshot, and bounded by
// the namespaces that have budgets. Keeping it out of the LLMProvider's
// status leaves that status one writer, the provider's reconcile, which
// shows the commitment it reads from the dispatcher.
const namespaceCostPrefix = "llmquota-cost-"

// providerCommitment is the key of the provider's own commitment: a
// namespace's name cannot begin with a dot, so no namespace shares it.
const providerCommitment = ".provider"

func namespaceCostName(provider string) string {
	return namespaceCostPrefix + quotaStateName(provider)[len(quotaStatePrefix):]
}

// commitments is what a provider's ConfigMap holds: its own commitment
// (nil when none was written) and its namespaces'.
type commitments struct {
	provider   *cost.Period
	namespaces map[string]cost.Period
}

// loadCommitments reads the commitments persisted for a provider, uncached
// (once per dispatcher start). A ConfigMap of an earlier provider of the
// same name is not this one's.
func (r *LLMProviderReconciler) loadCommitments(ctx context.Context, p *llmv1.LLMProvider) (commitments, error) {
	var cm corev1.ConfigMap
	err := r.APIReader.Get(ctx, types.NamespacedName{Namespace: r.stateNamespace(), Name: namespaceCostName(p.Name)}, &cm)
	switch {
	case apierrors.IsNotFound(err):
		return commitments{}, nil
	case err != nil:
		return commitments{}, fmt.Errorf("reading the committed spend of LLMProvider %s: %w", p.Name, err)
	}
	if !metav1.IsControlledBy(&cm, p) {
		return commitments{}, nil
	}
	out := commitments{namespaces: make(map[string]cost.Period, len(cm.Data))}
	for key, v := range cm.Data {
		var c llmv1.CostCommitment
		if err := json.Unmarshal([]byte(v), &c); err != nil {
			return commitments{}, fmt.Errorf("ConfigMap %s/%s, key %s: %w", cm.Namespace, cm.Name, key, err)
		}
		period := cost.Period{Day: c.Day, Today: string(c.Today), Month: c.Month, ThisMonth: string(c.ThisMonth)}
		if key == providerCommitment {
			out.provider = &period
			continue
		}
		out.namespaces[key] = period
	}
	return out, nil
}

// persistCost writes the provider's own commitment (dispatch's
// PersistCost); the dispatcher waits for it before it sends calls beyond.
func (r *LLMProviderReconciler) persistCost(p *llmv1.LLMProvider) func(context.Context, cost.Period) error {
	persist := r.persistCommitment(p)
	return func(ctx context.Context, c cost.Period) error { return persist(ctx, providerCommitment, c) }
}

// persistCommitment writes one commitment, a namespace's or the
// provider's, into the provider's ConfigMap (read, changed, written;
// again on a conflict).
func (r *LLMProviderReconciler) persistCommitment(p *llmv1.LLMProvider) func(context.Context, string, cost.Period) error {
	controller := true
	owner := metav1.OwnerReference{APIVersion: llmv1.GroupVersion.String(), Kind: "LLMProvider", Name: p.Name, UID: p.UID, Controller: &controller}
	key := types.NamespacedName{Namespace: r.stateNamespace(), Name: namespaceCostName(p.Name)}
	return func(ctx context.Context, field string, c cost.Period) error {
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
					Data: map[string]string{field: string(value)}}
				return r.Create(ctx, &cm)
			}
			if err != nil {
				return err
			}
			if !metav1.IsControlledBy(&cm, p) || cm.Data == nil { // an earlier provider's of the same name
				cm.OwnerReferences, cm.Data = []metav1.OwnerReference{owner}, map[string]string{}
			}
			cm.Data[field] = string(value)
			return r.Update(ctx, &cm)
		})
		if err != nil {
			return fmt.Errorf("writing the committed spend (%s) of LLMProvider %s to ConfigMap %s: %w", whose(field), p.Name, key, err)
		}
		return nil
	}
}

// whose names a commitment's owner in an error.
func whose(field string) string {
	if field == providerCommitment {
		return "the provider's own"
	}
	return "namespace " + field
}

package controller

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	llmv1 "github.com/llmquota/llmquota/api/v1alpha1"
)

// The quota engine's snapshot lives in a ConfigMap of the manager's own
// namespace, one per provider, owned by it (deleted with it). It used to be
// in the provider's status, where it made `kubectl describe` unreadable and
// reached every node agent (which caches LLMProviders) on each persist.
const (
	quotaStateKey        = "snapshot"
	quotaStatePrefix     = "llmquota-quota-"
	annotationQuotaTaken = "llmquota.dev/updated-at"
)

// quotaStateName names the ConfigMap of a provider's quota state: the prefix
// and the provider's name, or a hash of it where that would be too long.
func quotaStateName(provider string) string {
	if name := quotaStatePrefix + provider; len(name) <= 253 {
		return name
	}
	sum := sha256.Sum256([]byte(provider))
	return quotaStatePrefix + provider[:200] + "-" + hex.EncodeToString(sum[:8])
}

// StateNamespace is where the manager keeps its own state: the flag if set,
// then the POD_NAMESPACE the chart sets, then the service account's
// namespace, then "default" (a manager run outside a cluster).
func StateNamespace(flag string) string {
	if flag != "" {
		return flag
	}
	if ns := os.Getenv("POD_NAMESPACE"); ns != "" {
		return ns
	}
	if b, err := os.ReadFile("/var/run/secrets/kubernetes.io/serviceaccount/namespace"); err == nil && len(strings.TrimSpace(string(b))) > 0 {
		return strings.TrimSpace(string(b))
	}
	return metav1.NamespaceDefault
}

// loadQuota reads a provider's persisted snapshot, uncached (once per
// dispatcher start). A ConfigMap left by an earlier provider of the same
// name (another UID) is not this provider's state.
func (r *LLMProviderReconciler) loadQuota(ctx context.Context, p *llmv1.LLMProvider) ([]byte, error) {
	var cm corev1.ConfigMap
	err := r.APIReader.Get(ctx, types.NamespacedName{Namespace: r.stateNamespace(), Name: quotaStateName(p.Name)}, &cm)
	switch {
	case apierrors.IsNotFound(err):
		return nil, nil
	case err != nil:
		return nil, fmt.Errorf("reading the quota state of LLMProvider %s: %w", p.Name, err)
	}
	for _, o := range cm.OwnerReferences {
		if o.UID == p.UID {
			return cm.BinaryData[quotaStateKey], nil
		}
	}
	return nil, nil
}

// providerOwner is p as the owner of the manager's state for it (its quota
// state and its results journal), which goes with it.
func providerOwner(p *llmv1.LLMProvider) *metav1.OwnerReference {
	return &metav1.OwnerReference{APIVersion: llmv1.GroupVersion.String(), Kind: "LLMProvider", Name: p.Name, UID: p.UID}
}

// persistQuota writes a quota snapshot into the provider's state ConfigMap,
// unconditionally (only the leader's dispatcher writes it).
func (r *LLMProviderReconciler) persistQuota(p *llmv1.LLMProvider) func(context.Context, []byte) error {
	owner := *providerOwner(p)
	name := quotaStateName(p.Name)
	return func(ctx context.Context, snapshot []byte) error {
		cm := &corev1.ConfigMap{
			ObjectMeta: metav1.ObjectMeta{Namespace: r.stateNamespace(), Name: name,
				Labels:          map[string]string{"app.kubernetes.io/managed-by": "llmquota", "llmquota.dev/provider-state": "quota"},
				Annotations:     map[string]string{annotationQuotaTaken: r.Clock.Now().UTC().Truncate(time.Second).Format(time.RFC3339)},
				OwnerReferences: []metav1.OwnerReference{owner}},
			BinaryData: map[string][]byte{quotaStateKey: snapshot},
		}
		err := r.Update(ctx, cm)
		if apierrors.IsNotFound(err) {
			if err = r.Create(ctx, cm); apierrors.IsAlreadyExists(err) {
				err = r.Update(ctx, cm)
			}
		}
		if err != nil {
			return fmt.Errorf("writing the quota state of LLMProvider %s to ConfigMap %s/%s: %w", p.Name, cm.Namespace, name, err)
		}
		return nil
	}
}

func (r *LLMProviderReconciler) stateNamespace() string {
	if r.StateNamespace != "" {
		return r.StateNamespace
	}
	return metav1.NamespaceDefault
}

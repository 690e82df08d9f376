package controller

import (
	"context"
	"encoding/json"
	"fmt"

	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/sets"
	"k8s.io/client-go/util/csaupgrade"
	"sigs.k8s.io/controller-runtime/pkg/client"

	llmv1 "github.com/llmquota/llmquota/api/v1alpha1"
	llmapply "github.com/llmquota/llmquota/api/v1alpha1/applyconfiguration/api/v1alpha1"
)

// fieldManagerProviderStatus is the one writer of an LLMProvider's status:
// its reconcile, which applies the whole status it computed. The spend
// committed under budgets, which the dispatcher must persist before it
// sends calls beyond it, lives in a ConfigMap (commitments.go), not here.
const fieldManagerProviderStatus = "llmquota-manager-provider-status"

// earlierStatusWriters are the field managers that wrote the status with
// updates and patches before it was applied: the reconcile's merge patch
// and the budget's, and the client's default name (the manager's binary).
var earlierStatusWriters = sets.New(fieldManagerProviderStatus, "llmquota-manager-budget", "manager")

// applyStatus applies p's status server-side. Fields an earlier writer
// owns are first handed to the status's field manager, so that a field
// the reconcile no longer sets is removed rather than kept by its old
// owner.
func (r *LLMProviderReconciler) applyStatus(ctx context.Context, p *llmv1.LLMProvider) error {
	if err := r.adoptStatusFields(ctx, p); err != nil {
		return err
	}
	status, err := statusApplyConfiguration(p.Status)
	if err != nil {
		return err
	}
	ac := llmapply.LLMProvider(p.Name).WithStatus(status)
	return r.Status().Apply(ctx, ac, client.FieldOwner(fieldManagerProviderStatus), client.ForceOwnership)
}

// adoptStatusFields moves the status fields of earlierStatusWriters to the
// status's field manager. The cache holds no managed fields, so each
// provider is read once from the API server per manager; an object written
// only by apply needs no patch.
func (r *LLMProviderReconciler) adoptStatusFields(ctx context.Context, p *llmv1.LLMProvider) error {
	if _, done := r.adopted.Load(p.UID); done {
		return nil
	}
	var live llmv1.LLMProvider
	if err := r.APIReader.Get(ctx, client.ObjectKeyFromObject(p), &live); err != nil {
		return fmt.Errorf("reading LLMProvider %s's field managers: %w", p.Name, err)
	}
	patch, err := csaupgrade.UpgradeManagedFieldsPatch(&live, earlierStatusWriters, fieldManagerProviderStatus, csaupgrade.Subresource("status"))
	if err != nil {
		return err
	}
	if patch != nil {
		if err := r.Patch(ctx, &live, client.RawPatch(types.JSONPatchType, patch)); err != nil {
			return fmt.Errorf("handing the status fields of LLMProvider %s to %s: %w", p.Name, fieldManagerProviderStatus, err)
		}
	}
	r.adopted.Store(p.UID, true)
	return nil
}

// statusApplyConfiguration is status as an apply configuration. The two
// types share their JSON form, so the conversion is a JSON round trip, with
// the objects left empty dropped on the way (see dropEmpty).
func statusApplyConfiguration(status llmv1.LLMProviderStatus) (*llmapply.LLMProviderStatusApplyConfiguration, error) {
	data, err := json.Marshal(status)
	if err != nil {
		return nil, err
	}
	var tree map[string]any
	if err := json.Unmarshal(data, &tree); err != nil {
		return nil, err
	}
	dropEmpty(tree)
	if data, err = json.Marshal(tree); err != nil {
		return nil, err
	}
	var ac llmapply.LLMProviderStatusApplyConfiguration
	if err := json.Unmarshal(data, &ac); err != nil {
		return nil, err
	}
	return &ac, nil
}

// dropEmpty removes the empty objects of tree, deepest first. Applied as
// {}, an object whose fields this manager owned (a lane whose counts all
// went back to zero, omitted as zero) is left null by the API server,
// which the schema refuses; left out, it is removed whole.
func dropEmpty(tree map[string]any) {
	for k, v := range tree {
		switch v := v.(type) {
		case map[string]any:
			if dropEmpty(v); len(v) == 0 {
				delete(tree, k)
			}
		case []any:
			for _, e := range v {
				if m, ok := e.(map[string]any); ok {
					dropEmpty(m)
				}
			}
		}
	}
}

package controller

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	logf "sigs.k8s.io/controller-runtime/pkg/log"

	llmv1 "github.com/llmquota/llmquota/api/v1alpha1"
	"github.com/llmquota/llmquota/internal/cost"
	"github.com/llmquota/llmquota/internal/dispatch"
	"github.com/llmquota/llmquota/internal/ollamapod"
	"github.com/llmquota/llmquota/internal/provider"
)

// drainTimeout bounds how long a provider's reconcile waits for the calls
// in flight of a dispatcher it replaces.
const drainTimeout = 30 * time.Second

// ensureDispatcher runs a dispatcher matching the provider's spec and
// credentials, carrying the quota state over from the previous one, or from
// the status persisted by an earlier manager.
func (r *LLMProviderReconciler) ensureDispatcher(ctx context.Context, p *llmv1.LLMProvider) error {
	secretVersion := ""
	if ref := p.Spec.CredentialsSecretRef; ref != nil {
		var err error
		if secretVersion, err = r.secretVersion(ctx, ref); err != nil {
			return err
		}
	}
	// The connection (what the client talks to, with which key) needs a new
	// dispatcher; any other edit is applied to the running one in place.
	conn := fmt.Sprintf("%s %s %s %t", p.Spec.Type, p.Spec.Endpoint, secretVersion, ollamapod.IsPool(p))
	version := fmt.Sprintf("%s|%d", conn, p.Generation)
	running, ok := r.Registry.Version(p.Name)
	if ok && running == version {
		return nil
	}
	if d := r.Registry.Get(p.Name); ok && d != nil && strings.HasPrefix(running, conn+"|") {
		if err := d.Reconfigure(dispatchConfig(p)); err != nil {
			return err
		}
		r.Registry.SetVersion(p.Name, version)
		logf.FromContext(ctx).Info("Reconfigured dispatcher in place", "generation", p.Generation)
		return nil
	}
	key, err := r.apiKey(ctx, p)
	if err != nil {
		return err
	}
	var snapshot []byte
	if old := r.Registry.Get(p.Name); old != nil {
		// A new endpoint or key: let the calls in flight finish and report
		// first, so none is cancelled and sent again (bounded: a call that
		// outlasts drainTimeout is cancelled and sent again by the new one).
		dctx, cancel := context.WithTimeout(ctx, drainTimeout)
		old.Drain(dctx)
		cancel()
	}
	if old := r.Registry.Stop(p.Name); old != nil {
		snapshot = old.Snapshot()
	} else if snapshot, err = r.loadQuota(ctx, p); err != nil {
		return err
	}
	cfg := dispatchConfig(p)
	hc := r.HTTPClient
	if hc == nil {
		hc = provider.NewHTTPClient(cfg.Limits.MaxConcurrency)
	}
	cfg.Client, err = provider.New(provider.Config{Type: provider.Type(p.Spec.Type), Endpoint: p.Spec.Endpoint, APIKey: key, HTTPClient: hc})
	if err != nil {
		return err
	}
	if ollamapod.IsPool(p) {
		cfg.Endpoints = r.pools.get(p.Name)
	}
	cfg.Persist = r.persistQuota(p)
	cfg.OnCall = observeCall(p.Name)
	cfg.OnSend = observeSend(p.Name)
	cfg.OnInteractive = observeInteractive(p.Name)
	cfg.OnUsage = observeUsage(p.Name)
	cfg.PersistCost = r.persistCost(p.Name)
	cfg.PersistNamespaceCost = r.persistNamespaceCost(p)
	namespaceCost, err := r.loadNamespaceCost(ctx, p)
	if err != nil {
		return err
	}
	d, err := dispatch.New(cfg, snapshot, r.Clock, logf.FromContext(ctx), r.Registry.Get)
	if err != nil {
		return err
	}
	if c := p.Status.Cost; c != nil {
		var committed cost.Period
		if k := c.Committed; k != nil {
			committed = cost.Period{Day: k.Day, Today: string(k.Today), Month: k.Month, ThisMonth: string(k.ThisMonth)}
		}
		d.SeedCost(cost.Period{Day: c.Day, Today: string(c.Today), Month: c.Month, ThisMonth: string(c.ThisMonth)}, committed)
		teams := make([]dispatch.TeamUsage, len(c.Namespaces))
		for i, n := range c.Namespaces {
			teams[i] = dispatch.TeamUsage{Namespace: n.Namespace, Day: c.Day, Today: string(n.Today), Month: c.Month,
				ThisMonth: string(n.ThisMonth), TokensIn: n.TokensIn, TokensOut: n.TokensOut}
		}
		d.SeedTeams(teams)
	}
	d.SeedNamespaceCost(namespaceCost)
	r.Registry.Run(d, version)
	logf.FromContext(ctx).Info("Started dispatcher", "version", version, "restoredQuota", len(snapshot) > 0)
	return nil
}

// apiKey reads the provider's key, uncached, when its dispatcher starts
// (a rotated key changes the Secret's resourceVersion and restarts it).
func (r *LLMProviderReconciler) apiKey(ctx context.Context, p *llmv1.LLMProvider) (string, error) {
	ref := p.Spec.CredentialsSecretRef
	if ref == nil {
		return "", nil
	}
	var s corev1.Secret
	if err := readSecret(ctx, r.APIReader, types.NamespacedName{Namespace: ref.Namespace, Name: string(ref.Name)}, &s); err != nil {
		return "", fmt.Errorf("reading credentials Secret %s/%s: %w", ref.Namespace, ref.Name, err)
	}
	// A key written with `kubectl create secret --from-file` ends with a
	// newline, which no provider's key holds and no HTTP header may carry.
	return strings.TrimSpace(string(s.Data[ref.Key])), nil
}

// committedPatch is a merge patch of the provider's committed spend alone.
type committedPatch struct {
	Status struct {
		Cost struct {
			Committed llmv1.CostCommitment `json:"committed"`
		} `json:"cost"`
	} `json:"status"`
}

// persistCost writes the spend committed under budgets into the
// provider's status, with a merge patch of that field alone, as its own
// field manager: the dispatcher waits for this write before it sends calls
// beyond it, so it cannot wait for the reconciler's next status write.
func (r *LLMProviderReconciler) persistCost(name string) func(context.Context, cost.Period) error {
	return func(ctx context.Context, c cost.Period) error {
		var patch committedPatch
		patch.Status.Cost.Committed = llmv1.CostCommitment{Day: c.Day, Today: llmv1.Decimal(c.Today), Month: c.Month, ThisMonth: llmv1.Decimal(c.ThisMonth)}
		data, err := json.Marshal(patch)
		if err != nil {
			return err
		}
		p := &llmv1.LLMProvider{ObjectMeta: metav1.ObjectMeta{Name: name}}
		return r.Status().Patch(ctx, p, client.RawPatch(types.MergePatchType, data), client.FieldOwner(fieldManagerBudget))
	}
}

// The manager's field managers of the LLMProvider status: the reconciler's
// and the budget's committed spend.
const (
	fieldManagerProviderStatus = "llmquota-manager-provider-status"
	fieldManagerBudget         = "llmquota-manager-budget"
)

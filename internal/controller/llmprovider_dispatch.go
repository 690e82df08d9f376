package controller

import (
	"context"
	"fmt"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
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
	cfg.PersistCost = r.persistCost(p)
	cfg.PersistNamespaceCost = r.persistCommitment(p)
	committed, err := r.loadCommitments(ctx, p)
	if err != nil {
		return err
	}
	d, err := dispatch.New(cfg, snapshot, r.Clock, logf.FromContext(ctx), r.Registry.Get)
	if err != nil {
		return err
	}
	seedCost(d, p.Status.Cost, committed)
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

// seedCost restores the dispatcher's spend: the totals its status last
// showed, and the commitments from the provider's ConfigMap (or, written
// by a manager before they moved there, from its status).
func seedCost(d *dispatch.Dispatcher, shown *llmv1.CostStatus, c commitments) {
	if shown != nil {
		var committed cost.Period
		switch {
		case c.provider != nil:
			committed = *c.provider
		case shown.Committed != nil:
			k := shown.Committed
			committed = cost.Period{Day: k.Day, Today: string(k.Today), Month: k.Month, ThisMonth: string(k.ThisMonth)}
		}
		d.SeedCost(cost.Period{Day: shown.Day, Today: string(shown.Today), Month: shown.Month, ThisMonth: string(shown.ThisMonth)}, committed)
		teams := make([]dispatch.TeamUsage, len(shown.Namespaces))
		for i, n := range shown.Namespaces {
			teams[i] = dispatch.TeamUsage{Namespace: n.Namespace, Day: shown.Day, Today: string(n.Today), Month: shown.Month,
				ThisMonth: string(n.ThisMonth), TokensIn: n.TokensIn, TokensOut: n.TokensOut}
		}
		d.SeedTeams(teams)
	} else if c.provider != nil {
		d.SeedCost(cost.Period{}, *c.provider)
	}
	d.SeedNamespaceCost(c.namespaces)
}

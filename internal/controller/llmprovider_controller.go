package controller

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/events"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	llmv1 "github.com/llmquota/llmquota/api/v1alpha1"
	"github.com/llmquota/llmquota/internal/dispatch"
	"github.com/llmquota/llmquota/internal/ollamapod"
)

// secretRefIndex indexes LLMProviders by the "namespace/name" of their
// credentials Secret, so a Secret event wakes exactly the providers using it.
const secretRefIndex = "spec.credentialsSecretRef"

// LLMProviderReconciler keeps an LLMProvider's Ready condition true to what
// only a controller can check: the credentials Secret and key exist, and the
// fallback chain resolves without a cycle.
type LLMProviderReconciler struct {
	client.Client
	// APIReader reads Secrets straight from the API server, so their data
	// never sits in the manager's cache (the cache holds Secret metadata only).
	APIReader client.Reader
	Recorder  events.EventRecorder
	Clock     clock.Clock
	// Registry holds the running dispatchers; nil runs readiness checks only.
	Registry *dispatch.Registry
	// HTTPClient calls the providers; nil uses a default.
	HTTPClient *http.Client
	// SecretNamespaces, when set, are the only namespaces whose Secrets the
	// manager may read (--secret-namespaces).
	SecretNamespaces []string
	// OllamaNamespaces, when set, are the only namespaces whose pods the
	// manager watches (--ollama-namespaces).
	OllamaNamespaces []string
	// StateNamespace holds the manager's own state (each provider's quota
	// snapshot); see StateNamespace. Empty means "default".
	StateNamespace string

	keys  keyChecks
	pools pools
	// adopted holds the UIDs of providers whose status fields are known to
	// be the status's field manager's alone (llmprovider_apply.go).
	adopted sync.Map
}

// statusRefresh is how often a provider with a running dispatcher has its
// usage refreshed; the status is written only when it changed.
const statusRefresh = 2 * time.Second

var _ reconcile.Reconciler = (*LLMProviderReconciler)(nil)

// +kubebuilder:rbac:groups=llmquota.dev,resources=llmproviders,verbs=get;list;watch;update;patch
// +kubebuilder:rbac:groups=llmquota.dev,resources=llmproviders/status,verbs=get;update;patch
// +kubebuilder:rbac:groups="",resources=secrets,verbs=get;list;watch
// +kubebuilder:rbac:groups="",resources=pods,verbs=get;list;watch;patch
// +kubebuilder:rbac:groups=events.k8s.io,resources=events,verbs=create;patch

// Reconcile computes the provider's conditions, runs its dispatcher while it
// is Ready, and writes status if it changed.
func (r *LLMProviderReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	var p llmv1.LLMProvider
	if err := r.Get(ctx, req.NamespacedName, &p); err != nil {
		if apierrors.IsNotFound(err) {
			r.pools.drop(req.Name)
			if r.Registry != nil {
				r.Registry.Stop(req.Name)
				forgetProviderMetrics(req.Name)
			}
		}
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	orig := p.DeepCopy()
	now := r.Clock.Now()

	ready, err := r.readiness(ctx, &p)
	if err != nil {
		return ctrl.Result{}, err
	}
	var events []metav1.Condition // conditions whose change deserves an Event
	if ollamapod.IsPool(&p) {
		warm, err := r.observePool(ctx, &p)
		if err != nil {
			return ctrl.Result{}, err
		}
		if setCondition(&p.Status.Conditions, warm, p.Generation, now) {
			events = append(events, warm)
		}
	} else {
		p.Status.Endpoints = nil
		meta.RemoveStatusCondition(&p.Status.Conditions, llmv1.ConditionWarm)
	}
	result := ctrl.Result{}
	if r.Registry != nil {
		if ready.Status == metav1.ConditionTrue {
			if err := r.ensureDispatcher(ctx, &p); err != nil {
				return ctrl.Result{}, err
			}
			events = append(events, r.observeDispatcher(&p, now)...)
			result.RequeueAfter = statusRefresh
		} else {
			r.Registry.Stop(p.Name)
		}
	}
	// A key the provider refuses resolves, but no batch should start on it:
	// Ready says so (the dispatcher keeps running, so a call that succeeds
	// or a new key clears it).
	if d := meta.FindStatusCondition(p.Status.Conditions, llmv1.ConditionDegraded); ready.Status == metav1.ConditionTrue && d != nil &&
		d.Status == metav1.ConditionTrue && d.Reason == llmv1.ReasonAuthFailed {
		ready = *notReady(llmv1.ReasonAuthFailed, "%s; new batches wait until a call succeeds or the Secret changes", d.Message)
	}
	if setCondition(&p.Status.Conditions, ready, p.Generation, now) && ready.Reason != llmv1.ReasonAuthFailed { // Degraded's Event said it
		events = append([]metav1.Condition{ready}, events...)
	}
	p.Status.ObservedGeneration = p.Generation

	if !equality.Semantic.DeepEqual(orig.Status, p.Status) {
		if err := r.applyStatus(ctx, &p); err != nil {
			return ctrl.Result{}, err
		}
	}
	for _, c := range events {
		r.record(ctx, &p, c)
	}
	return result, nil
}

// observeDispatcher copies usage, cost and health into status, returning
// the conditions that turned in a way worth an Event.
func (r *LLMProviderReconciler) observeDispatcher(p *llmv1.LLMProvider, now time.Time) []metav1.Condition {
	d := r.Registry.Get(p.Name)
	if d == nil {
		return nil
	}
	s := d.Stats(thresholds(p))
	setUsage(&p.Status, s)
	publishProviderMetrics(p.Name, s, now)
	publishCostLimits(p)
	var changed []metav1.Condition
	for _, c := range []metav1.Condition{rateLimitedCondition(heldBy(s), s.Batch.Waiting), degradedCondition(s), costAlertCondition(p, s)} {
		if setCondition(&p.Status.Conditions, c, p.Generation, now) && c.Status == metav1.ConditionTrue && c.Type != llmv1.ConditionRateLimited {
			changed = append(changed, c)
		}
	}
	return changed
}

// record emits an Event for a condition change: Warning unless it is a
// healthy state.
func (r *LLMProviderReconciler) record(ctx context.Context, p *llmv1.LLMProvider, c metav1.Condition) {
	eventType := corev1.EventTypeWarning
	healthyWhenTrue := c.Type == llmv1.ConditionReady || c.Type == llmv1.ConditionWarm
	if healthyWhenTrue == (c.Status == metav1.ConditionTrue) {
		eventType = corev1.EventTypeNormal
	}
	r.Recorder.Eventf(p, nil, eventType, c.Reason, "Reconcile", "%s", c.Message)
	logf.FromContext(ctx).Info("Provider condition changed", "type", c.Type, "status", c.Status, "reason", c.Reason)
}

// readiness returns the Ready condition: the first problem found, or Configured.
func (r *LLMProviderReconciler) readiness(ctx context.Context, p *llmv1.LLMProvider) (metav1.Condition, error) {
	if cond, err := r.checkCredentials(ctx, p); err != nil || cond != nil {
		return derefCondition(cond), err
	}
	if cond, err := r.checkFallback(ctx, p); err != nil || cond != nil {
		return derefCondition(cond), err
	}
	return metav1.Condition{Type: llmv1.ConditionReady, Status: metav1.ConditionTrue,
		Reason: llmv1.ReasonConfigured, Message: "credentials and fallback chain resolve"}, nil
}

func derefCondition(c *metav1.Condition) metav1.Condition {
	if c == nil {
		return metav1.Condition{}
	}
	return *c
}

func notReady(reason, format string, args ...any) *metav1.Condition {
	return &metav1.Condition{Type: llmv1.ConditionReady, Status: metav1.ConditionFalse,
		Reason: reason, Message: fmt.Sprintf(format, args...)}
}

// checkCredentials reports a missing Secret or key. It reads the Secret's
// data (uncached) only when its resourceVersion changed since the last
// check, and never looks at, logs or returns the key's value.
func (r *LLMProviderReconciler) checkCredentials(ctx context.Context, p *llmv1.LLMProvider) (*metav1.Condition, error) {
	ref := p.Spec.CredentialsSecretRef
	if ref == nil {
		return nil, nil
	}
	if len(r.SecretNamespaces) > 0 && !slices.Contains(r.SecretNamespaces, ref.Namespace) {
		return notReady(llmv1.ReasonSecretNotFound, "Secret namespace %q named by spec.credentialsSecretRef is not one the manager may read (--secret-namespaces=%s)",
			ref.Namespace, strings.Join(r.SecretNamespaces, ",")), nil
	}
	version, err := r.secretVersion(ctx, ref)
	switch {
	case err != nil:
		return nil, err
	case version == "":
		return notReady(llmv1.ReasonSecretNotFound, "Secret %s/%s named by spec.credentialsSecretRef does not exist", ref.Namespace, ref.Name), nil
	}
	hasKey, known := r.keys.lookup(p.Name, version+"/"+ref.Key)
	if !known {
		var secret corev1.Secret
		err := readSecret(ctx, r.APIReader, types.NamespacedName{Namespace: ref.Namespace, Name: string(ref.Name)}, &secret)
		switch {
		case apierrors.IsNotFound(err):
			return notReady(llmv1.ReasonSecretNotFound, "Secret %s/%s named by spec.credentialsSecretRef does not exist", ref.Namespace, ref.Name), nil
		case err != nil:
			return nil, fmt.Errorf("reading credentials Secret %s/%s: %w", ref.Namespace, ref.Name, err)
		}
		hasKey = len(secret.Data[ref.Key]) > 0
		r.keys.remember(p.Name, version+"/"+ref.Key, hasKey)
	}
	if !hasKey {
		return notReady(llmv1.ReasonKeyNotFound, "Secret %s/%s has no non-empty key %q named by spec.credentialsSecretRef.key", ref.Namespace, ref.Name, ref.Key), nil
	}
	return nil, nil
}

// secretVersion returns the credentials Secret's resourceVersion from the
// metadata-only cache the Secret watch keeps, or "" if it does not exist.
func (r *LLMProviderReconciler) secretVersion(ctx context.Context, ref *llmv1.SecretKeyReference) (string, error) {
	m := &metav1.PartialObjectMetadata{}
	m.SetGroupVersionKind(corev1.SchemeGroupVersion.WithKind("Secret"))
	err := r.Get(ctx, types.NamespacedName{Namespace: ref.Namespace, Name: string(ref.Name)}, m)
	if apierrors.IsNotFound(err) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("reading credentials Secret %s/%s: %w", ref.Namespace, ref.Name, err)
	}
	return m.ResourceVersion, nil
}

// keyChecks remembers, per provider, whether the Secret at one
// resourceVersion held the key: the answer, never the key.
type keyChecks struct {
	mu sync.Mutex
	m  map[string]keyCheck
}

type keyCheck struct {
	version string
	hasKey  bool
}

func (k *keyChecks) lookup(provider, version string) (hasKey, known bool) {
	k.mu.Lock()
	defer k.mu.Unlock()
	c, ok := k.m[provider]
	if !ok || c.version != version {
		return false, false
	}
	return c.hasKey, true
}

func (k *keyChecks) remember(provider, version string, hasKey bool) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.m == nil {
		k.m = map[string]keyCheck{}
	}
	k.m[provider] = keyCheck{version: version, hasKey: hasKey}
}

// checkFallback follows the fallback chain and reports a missing provider or a loop.
func (r *LLMProviderReconciler) checkFallback(ctx context.Context, p *llmv1.LLMProvider) (*metav1.Condition, error) {
	chain := []string{p.Name}
	for next := p.Spec.Fallback; next != nil; {
		name := string(next.Name)
		chain = append(chain, name)
		if slices.Contains(chain[:len(chain)-1], name) {
			return notReady(llmv1.ReasonFallbackCycle, "fallback chain loops: %s", strings.Join(chain, " -> ")), nil
		}
		var fb llmv1.LLMProvider
		err := r.Get(ctx, types.NamespacedName{Name: name}, &fb)
		switch {
		case apierrors.IsNotFound(err):
			return notReady(llmv1.ReasonFallbackNotFound, "fallback LLMProvider %q does not exist (chain: %s)", name, strings.Join(chain, " -> ")), nil
		case err != nil:
			return nil, fmt.Errorf("reading fallback LLMProvider %q: %w", name, err)
		}
		next = fb.Spec.Fallback
	}
	return nil, nil
}

// SetupWithManager registers the reconciler. It watches Secret metadata only
// (their data is read uncached when needed) and other providers, because a
// change anywhere in a fallback chain can change this provider's readiness.
func (r *LLMProviderReconciler) SetupWithManager(mgr ctrl.Manager) error {
	if err := mgr.GetFieldIndexer().IndexField(context.Background(), &llmv1.LLMProvider{}, secretRefIndex,
		func(o client.Object) []string {
			ref := o.(*llmv1.LLMProvider).Spec.CredentialsSecretRef
			if ref == nil {
				return nil
			}
			return []string{ref.Namespace + "/" + string(ref.Name)}
		}); err != nil {
		return err
	}
	// Status writes (ours, the one writer of the status) change no
	// generation; they must not wake the reconciler, which refreshes on a timer.
	specChanged := builder.WithPredicates(predicate.GenerationChangedPredicate{})
	return ctrl.NewControllerManagedBy(mgr).
		For(&llmv1.LLMProvider{}, specChanged).
		Watches(&corev1.Secret{}, handler.EnqueueRequestsFromMapFunc(r.providersForSecret), builder.OnlyMetadata).
		Watches(&llmv1.LLMProvider{}, handler.EnqueueRequestsFromMapFunc(r.providersReaching), specChanged).
		// Ollama pools follow their pods' warm state (see SlimPod).
		Watches(&corev1.Pod{}, handler.EnqueueRequestsFromMapFunc(r.poolsOfPod)).
		Named("llmprovider").
		Complete(r)
}

func (r *LLMProviderReconciler) providersForSecret(ctx context.Context, o client.Object) []reconcile.Request {
	var list llmv1.LLMProviderList
	if err := r.List(ctx, &list, client.MatchingFields{secretRefIndex: o.GetNamespace() + "/" + o.GetName()}); err != nil {
		logf.FromContext(ctx).Error(err, "Listing providers for Secret", "secret", client.ObjectKeyFromObject(o))
		return nil
	}
	return requestsFor(list.Items)
}

// providersReaching enqueues every provider whose fallback chain passes
// through the changed one. Providers are few and cluster-scoped, so a scan
// of the cache is cheap.
func (r *LLMProviderReconciler) providersReaching(ctx context.Context, o client.Object) []reconcile.Request {
	var list llmv1.LLMProviderList
	if err := r.List(ctx, &list); err != nil {
		logf.FromContext(ctx).Error(err, "Listing providers")
		return nil
	}
	fallbackOf := make(map[string]string, len(list.Items))
	for _, p := range list.Items {
		if p.Spec.Fallback != nil {
			fallbackOf[p.Name] = string(p.Spec.Fallback.Name)
		}
	}
	var reaching []llmv1.LLMProvider
	for _, p := range list.Items {
		if p.Name != o.GetName() && chainReaches(fallbackOf, p.Name, o.GetName()) {
			reaching = append(reaching, p)
		}
	}
	return requestsFor(reaching)
}

// chainReaches reports whether following fallbacks from start reaches target.
func chainReaches(fallbackOf map[string]string, start, target string) bool {
	seen := map[string]bool{start: true}
	for cur, ok := fallbackOf[start]; ok; cur, ok = fallbackOf[cur] {
		if cur == target {
			return true
		}
		if seen[cur] {
			return false
		}
		seen[cur] = true
	}
	return false
}

func requestsFor(providers []llmv1.LLMProvider) []reconcile.Request {
	reqs := make([]reconcile.Request, 0, len(providers))
	for _, p := range providers {
		reqs = append(reqs, reconcile.Request{NamespacedName: types.NamespacedName{Name: p.Name}})
	}
	return reqs
}

package gateway

import (
	"context"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/clock"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	llmv1 "github.com/llmquota/llmquota/api/v1alpha1"
	"github.com/llmquota/llmquota/internal/access"
	"github.com/llmquota/llmquota/internal/ollamapod"
	"github.com/llmquota/llmquota/internal/provider"
)

// Providers finds LLMProviders and holds a client for each, with its key
// read from the provider's Secret. A client is built again when the
// provider's spec or its Secret changes. The Secret is read again at most
// every SecretRecheck, so a rotated key is used within that much: a read
// per call was the largest part of a call's own work in the gateway (the
// cache maps a namespaced kind to its REST mapping on every read).
type Providers struct {
	// Reader reads LLMProviders and Secrets (a cache in production).
	Reader client.Reader
	// HTTP is the client for the providers' APIs.
	HTTP *http.Client
	// SecretRecheck is how long a client's key is used before its Secret
	// is read again; 0 reads it on every call.
	SecretRecheck time.Duration
	// Clock times SecretRecheck; nil is the real clock.
	Clock clock.PassiveClock

	mu      sync.Mutex
	clients map[string]target
	// endpoints are the clients of pool servers, by address and context
	// length: the leader names the server of each call.
	endpoints map[endpointKey]provider.Client
}

// endpointKey is what a pool server's client is built from.
type endpointKey struct {
	address string
	numCtx  int32
}

// DefaultSecretRecheck is how often cmd/gateway reads a provider's Secret
// again for a rotated key.
const DefaultSecretRecheck = time.Second

// maxEndpointClients bounds the pool servers' clients kept: pods come and
// go, each with an address of its own, and a client is cheap to build again.
const maxEndpointClients = 1024

// clientVersion is what a provider's client is built from: a change of
// any part needs a new client.
type clientVersion struct {
	typ, endpoint string
	uid           types.UID
	secretRef     llmv1.SecretKeyReference
	secretVersion string
	numCtx        int32
}

// target is a provider's client and what it was built from.
type target struct {
	version      clientVersion
	client       provider.Client
	defaultModel string
	// maxWait is the provider's spec.interactive.maxWaitMilliseconds, if set.
	maxWait *time.Duration
	// fallback is the provider calls go to when this one cannot admit them
	// at once (spec.interactive.fallback WhenLimited); "" when none.
	fallback string
	// pool is true for an Ollama pool: client is nil, and each call goes to
	// the warm pod the leader names in its grant (Providers.Endpoint).
	pool bool
	// cacheTTL is how long answers at temperature 0 are reused
	// (spec.interactive.cache); 0 when they are not.
	cacheTTL time.Duration
	// secretRead is when the key's Secret was last read.
	secretRead time.Time
}

// Get returns a provider, with a 404 failure when it does not exist.
func (p *Providers) Get(ctx context.Context, name string) (*llmv1.LLMProvider, *failure) {
	var lp llmv1.LLMProvider
	// Read-only from here on: the cache's object is not copied.
	err := p.Reader.Get(ctx, types.NamespacedName{Name: name}, &lp, client.UnsafeDisableDeepCopy)
	switch {
	case apierrors.IsNotFound(err):
		return nil, fail(http.StatusNotFound, "model_not_found", "no LLMProvider named %q", name)
	case err != nil:
		return nil, fail(http.StatusServiceUnavailable, "provider_unavailable", "reading LLMProvider %q: %v", name, err)
	}
	return &lp, nil
}

// Admits returns a 403 failure when the provider's namespaceSelector does
// not select the caller's namespace (access.Selects).
func (p *Providers) Admits(ctx context.Context, lp *llmv1.LLMProvider, namespace string) *failure {
	var labels map[string]string
	if namespace != "" {
		ns := &metav1.PartialObjectMetadata{}
		ns.SetGroupVersionKind(corev1.SchemeGroupVersion.WithKind("Namespace"))
		if err := p.Reader.Get(ctx, types.NamespacedName{Name: namespace}, ns, client.UnsafeDisableDeepCopy); err != nil && !apierrors.IsNotFound(err) {
			return fail(http.StatusServiceUnavailable, "provider_unavailable", "reading namespace %q: %v", namespace, err)
		}
		labels = ns.Labels
	}
	if err := access.Selects(lp.Name, lp.Spec.NamespaceSelector, namespace, labels); err != nil {
		return fail(http.StatusForbidden, "permission_denied", "%v", err)
	}
	return nil
}

// ClientOf returns the client of a provider already read (Get).
func (p *Providers) ClientOf(ctx context.Context, lp *llmv1.LLMProvider) (target, *failure) {
	name := lp.Name
	version := clientVersion{typ: string(lp.Spec.Type), endpoint: lp.Spec.Endpoint, uid: lp.UID}
	if ollamapod.IsPool(lp) {
		version.numCtx = ptr.Deref(lp.Spec.Ollama.ContextLength, 0)
		return target{version: version, pool: true}.refreshed(lp), nil
	}
	ref := lp.Spec.CredentialsSecretRef
	if ref != nil {
		version.secretRef = *ref
	}
	now := p.now()
	p.mu.Lock()
	t, ok := p.clients[name]
	p.mu.Unlock()
	if ok && ref != nil && t.version.sameSpec(version) && now.Sub(t.secretRead) < p.SecretRecheck {
		return t.refreshed(lp), nil
	}
	var secret corev1.Secret
	if ref != nil {
		// A context whose logger drops everything: client-go logs response
		// bodies (the Secret's data) at its highest verbosity.
		err := p.Reader.Get(logr.NewContext(ctx, logr.Discard()), types.NamespacedName{Namespace: ref.Namespace, Name: string(ref.Name)}, &secret,
			client.UnsafeDisableDeepCopy)
		if err != nil {
			return target{}, fail(http.StatusServiceUnavailable, "provider_unavailable",
				"provider %q: its credentials Secret %s/%s cannot be read", name, ref.Namespace, ref.Name)
		}
		version.secretVersion = secret.ResourceVersion
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if t, ok := p.clients[name]; ok && t.version == version {
		t = t.refreshed(lp)
		t.secretRead = now
		p.clients[name] = t
		return t, nil
	}
	key := ""
	if ref != nil {
		key = strings.TrimSpace(string(secret.Data[ref.Key]))
	}
	c, err := provider.New(provider.Config{Type: provider.Type(lp.Spec.Type), Endpoint: lp.Spec.Endpoint, APIKey: key, HTTPClient: p.HTTP})
	if err != nil {
		return target{}, fail(http.StatusServiceUnavailable, "provider_unavailable", "provider %q: %v", name, err)
	}
	if p.clients == nil {
		p.clients = map[string]target{}
	}
	t = target{version: version, client: c, secretRead: now}.refreshed(lp)
	p.clients[name] = t
	return t, nil
}

// sameSpec reports whether v and o are built from the same spec, whatever
// their Secret's version.
func (v clientVersion) sameSpec(o clientVersion) bool {
	v.secretVersion, o.secretVersion = "", ""
	return v == o
}

// refreshed is t with the settings of lp that need no new client.
func (t target) refreshed(lp *llmv1.LLMProvider) target {
	t.defaultModel, t.maxWait, t.fallback, t.cacheTTL = lp.Spec.Model, interactiveWait(lp), interactiveFallback(lp), interactiveCacheTTL(lp)
	return t
}

func (p *Providers) now() time.Time {
	if p.Clock == nil {
		return time.Now()
	}
	return p.Clock.Now()
}

// Endpoint returns the client of a pool's server at address, which asks
// for the context the node agent warmed the model with (numCtx), as the
// manager's clients of the pool do.
func (p *Providers) Endpoint(address string, numCtx int32) (provider.Client, *failure) {
	key := endpointKey{address, numCtx}
	p.mu.Lock()
	defer p.mu.Unlock()
	if c, ok := p.endpoints[key]; ok {
		return c, nil
	}
	c, err := provider.New(provider.Config{Type: provider.Ollama, Endpoint: address, HTTPClient: p.HTTP, ContextLength: numCtx})
	if err != nil {
		return nil, fail(http.StatusBadGateway, "upstream_error", "the pool server %q: %v", address, err)
	}
	if p.endpoints == nil || len(p.endpoints) >= maxEndpointClients {
		p.endpoints = map[endpointKey]provider.Client{}
	}
	p.endpoints[key] = c
	return c, nil
}

// List returns every LLMProvider.
func (p *Providers) List(ctx context.Context) ([]llmv1.LLMProvider, error) {
	var list llmv1.LLMProviderList
	if err := p.Reader.List(ctx, &list); err != nil {
		return nil, err
	}
	return list.Items, nil
}

// interactiveWait is a provider's default wait for quota, nil when unset.
func interactiveWait(lp *llmv1.LLMProvider) *time.Duration {
	if i := lp.Spec.Interactive; i != nil && i.MaxWaitMilliseconds != nil {
		d := time.Duration(*i.MaxWaitMilliseconds) * time.Millisecond
		return &d
	}
	return nil
}

// interactiveFallback is where a provider's gateway calls go when it
// cannot admit them at once, "" when they wait for it.
func interactiveFallback(lp *llmv1.LLMProvider) string {
	if i := lp.Spec.Interactive; i != nil && i.Fallback == llmv1.InteractiveFallbackWhenLimited && lp.Spec.Fallback != nil {
		return string(lp.Spec.Fallback.Name)
	}
	return ""
}

// DefaultCacheTTL is how long a cached answer is reused when the provider
// does not say (spec.interactive.cacheTTLSeconds).
const DefaultCacheTTL = 10 * time.Minute

// interactiveCacheTTL is how long a provider's answers at temperature 0 are
// reused, 0 when its cache is not enabled.
func interactiveCacheTTL(lp *llmv1.LLMProvider) time.Duration {
	i := lp.Spec.Interactive
	switch {
	case i == nil || i.Cache != llmv1.CacheEnabled:
		return 0
	case i.CacheTTLSeconds != nil:
		return time.Duration(*i.CacheTTLSeconds) * time.Second
	}
	return DefaultCacheTTL
}

package gateway_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/tools/events"
	"k8s.io/utils/clock"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	llmv1 "github.com/llmquota/llmquota/api/v1alpha1"
	"github.com/llmquota/llmquota/internal/authority"
	"github.com/llmquota/llmquota/internal/dispatch"
	"github.com/llmquota/llmquota/internal/emulator"
	"github.com/llmquota/llmquota/internal/gateway"
	"github.com/llmquota/llmquota/internal/kubeauth"
	"github.com/llmquota/llmquota/internal/provider"
	"github.com/llmquota/llmquota/internal/ratewindow"
	"github.com/llmquota/llmquota/internal/testbed/apiserver"
)

const (
	apiKey        = "emulator-key"
	systemNS      = "llmquota-system"
	audience      = "llmquota.dev"
	gatewayMember = systemNS + "/llmquota-gateway"
)

// bed is a real API server (TokenReview, SubjectAccessReview, RBAC), the
// provider emulator over HTTP, a dispatcher as the quota authority's, the
// authority over HTTP, and a gateway over HTTP in front of them.
type bed struct {
	c       client.Client
	emu     *emulator.Server
	d       *dispatch.Dispatcher
	gateway string // the first gateway replica's base URL
	// gateways are the base URLs of three replicas, each with its own
	// caches, clients and releaser, drawing on one authority.
	gateways []string
	// spares are each gateway's spare grants, in the order of gateways;
	// standby, its standby grants.
	spares  []*authority.Spares
	standby []*authority.Standby
	// tokens of team-a/app (may use emu), team-a/other (may use nothing),
	// team-b/ops (may use every provider), team-c/ops (RBAC lets it use
	// every provider, but emu's namespaceSelector does not select team-c).
	app, other, ops, unselected string
	// auth is the leader's quota authority (nextLeader replaces it).
	auth *authority.Server
	// authorize is the authority's check of the gateways' tokens.
	authorize func(ctx context.Context, token string) error

	runCtx      context.Context //nolint:containedctx // the bed's lifetime, for the dispatchers added to it
	mu          sync.Mutex
	dispatchers map[string]*dispatch.Dispatcher // the authority's, by provider
	configs     map[string]dispatch.Config      // what each was made from
	notServed   atomic.Int64                    // acquires answered that the authority does not serve the provider

	// authDown, while set, makes the authority's address drop every
	// connection unanswered, as a crashed leader's does; authDropped
	// counts the acquires it dropped.
	authDown    atomic.Bool
	authDropped atomic.Int64

	// slowWrites, when set, holds each of the gateways' requests to a
	// provider up to that many nanoseconds (at random) before it is
	// written, as a loaded replica does between its grant and its write.
	slowWrites atomic.Int64
}

// slowTransport is a gateway's transport to the providers, held before
// each request by up to b.slowWrites.
type slowTransport struct {
	b    *bed
	base http.RoundTripper
}

func (s slowTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	if most := s.b.slowWrites.Load(); most > 0 {
		time.Sleep(time.Duration(rand.Int64N(most)))
	}
	return s.base.RoundTrip(r)
}

// dispatcher is the authority's lookup.
func (b *bed) dispatcher(name string) *dispatch.Dispatcher {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.dispatchers[name]
}

// notServedCounter counts an acquire answered 404 (a provider the
// authority does not serve) in the bed's notServed: the replicas' standby
// requests and pings are not the calls a test follows.
type notServedCounter struct {
	http.ResponseWriter
	b *bed
}

func (c notServedCounter) WriteHeader(code int) {
	if code == http.StatusNotFound {
		c.b.notServed.Add(1)
	}
	c.ResponseWriter.WriteHeader(code)
}

// serve makes the authority serve name from d, or serve it no more (nil),
// as a new leader does before its provider's dispatcher started.
func (b *bed) serve(name string, d *dispatch.Dispatcher) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if d == nil {
		delete(b.dispatchers, name)
		return
	}
	b.dispatchers[name] = d
}

// addProvider adds an LLMProvider of the OpenAI dialect (default model
// gpt-test), with an emulator of its own that, like its dispatcher,
// allows limit calls in any period; edit adjusts its spec.
func (b *bed) addProvider(t *testing.T, name string, limit int, period time.Duration, edit func(*llmv1.LLMProviderSpec)) (*emulator.Server, *dispatch.Dispatcher) {
	t.Helper()
	return b.addProviderWith(t, name, limit, period, providerOptions{spec: edit})
}

// providerOptions adjust a provider the bed adds: its spec, its
// dispatcher's config (what the manager would make of the spec's other
// fields) and its emulator's config.
type providerOptions struct {
	spec     func(*llmv1.LLMProviderSpec)
	dispatch func(*dispatch.Config)
	emulator func(*emulator.Config)
}

// addProviderWith is addProvider with more to adjust.
func (b *bed) addProviderWith(t *testing.T, name string, limit int, period time.Duration, o providerOptions) (*emulator.Server, *dispatch.Dispatcher) {
	t.Helper()
	emuCfg := emulator.Config{Limits: []emulator.Limit{{Requests: limit, Period: period}}, Keys: []string{apiKey}}
	if o.emulator != nil {
		o.emulator(&emuCfg)
	}
	emu := emulator.New(emuCfg)
	emuSrv := emulator.NewTestServer(emu)
	t.Cleanup(emuSrv.Close)
	spec := llmv1.LLMProviderSpec{
		Type: llmv1.ProviderOpenAI, Endpoint: emuSrv.URL + "/v1", Model: "gpt-test",
		CredentialsSecretRef: &llmv1.SecretKeyReference{Namespace: systemNS, Name: "emu-key", Key: "api-key"},
		Limits:               llmv1.RateLimits{RequestsPerMinute: ptr.To(int32(limit)), MaxConcurrency: 256},
		NamespaceSelector:    &metav1.LabelSelector{},
	}
	if o.spec != nil {
		o.spec(&spec)
	}
	must(t, b.c.Create(context.Background(), &llmv1.LLMProvider{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: spec}))
	batchClient, err := provider.New(provider.Config{Type: provider.OpenAI, Endpoint: emuSrv.URL + "/v1", APIKey: apiKey})
	must(t, err)
	cfg := dispatch.Config{Name: name, Client: batchClient, DefaultModel: "gpt-test", Limits: ratewindow.Config{
		Windows: []ratewindow.Window{{Name: "window", Limit: int64(limit), Period: period}}, MaxConcurrency: 256}}
	if o.dispatch != nil {
		o.dispatch(&cfg)
	}
	d, err := dispatch.New(cfg, nil, clock.RealClock{}, logr.Discard(), nil)
	must(t, err)
	ctx, stop := context.WithCancel(b.runCtx)
	stopped := make(chan struct{})
	go func() { d.Run(ctx); close(stopped) }()
	t.Cleanup(func() { stop(); <-stopped })
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.dispatchers == nil {
		b.dispatchers = map[string]*dispatch.Dispatcher{}
	}
	b.dispatchers[name] = d
	if b.configs == nil {
		b.configs = map[string]dispatch.Config{}
	}
	b.configs[name] = cfg
	return emu, d
}

// gatewayPod is the pod name the bed's gateway replica i checks in as.
func gatewayPod(i int) string { return fmt.Sprintf("%s/gateway-%d", systemNS, i) }

// nextLeader is another manager taking over, as after a kill -9 of the
// leader: a new quota authority, with a new dispatcher for every provider,
// that admits nothing until the bed's three gateway replicas told it
// their calls in flight. The old dispatchers are no longer asked.
func (b *bed) nextLeader(t *testing.T) *authority.Server {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0") // unused: the bed's own address reaches the authority
	must(t, err)
	next := &authority.Server{Listener: ln, Lookup: b.dispatcher, Authorize: b.authorize, Log: logr.Discard(),
		Gateways: func(context.Context) ([]string, error) {
			return []string{gatewayPod(0), gatewayPod(1), gatewayPod(2)}, nil
		}}
	b.mu.Lock()
	fresh := map[string]*dispatch.Dispatcher{}
	for name, cfg := range b.configs {
		d, err := dispatch.New(cfg, nil, clock.RealClock{}, logr.Discard(), nil)
		must(t, err)
		d.HoldUntil(next.Ready())
		ctx, stop := context.WithCancel(b.runCtx)
		stopped := make(chan struct{})
		go func() { d.Run(ctx); close(stopped) }()
		t.Cleanup(func() { stop(); <-stopped })
		fresh[name] = d
	}
	b.dispatchers = fresh
	b.auth = next
	b.mu.Unlock()
	go func() { _ = next.Start(b.runCtx) }()
	return next
}

// authority is the quota authority that leads now.
func (b *bed) authority() *authority.Server {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.auth
}

// newBed starts a bed whose provider "emu" (OpenAI dialect, default
// model gpt-test) allows limit calls in any period, at the emulator and in
// the dispatcher alike.
func newBed(t *testing.T, limit int, period time.Duration) *bed {
	ctx := context.Background()
	cfg, c := apiserver.StartConfig(t)
	b := &bed{c: c}
	for _, ns := range []string{systemNS, "team-a", "team-b", "team-c"} {
		must(t, b.c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}))
	}
	must(t, b.c.Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: systemNS, Name: "emu-key"},
		Data: map[string][]byte{"api-key": []byte(apiKey + "\n")}}))
	runCtx, stop := context.WithCancel(ctx)
	t.Cleanup(stop)
	b.runCtx = runCtx
	b.emu, b.d = b.addProvider(t, "emu", limit, period, func(spec *llmv1.LLMProviderSpec) {
		spec.NamespaceSelector = &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{
			Key: corev1.LabelMetadataName, Operator: metav1.LabelSelectorOpIn, Values: []string{"team-a", "team-b"}}}}
	})
	grant(t, b.c, "use-emu", []string{"emu"}, "team-a", "app")
	grant(t, b.c, "use-all", nil, "team-b", "ops")
	grant(t, b.c, "use-all", nil, "team-c", "ops")
	b.unselected = token(t, b.c, "team-c", "ops", audience)
	b.app, b.other, b.ops = token(t, b.c, "team-a", "app", audience), token(t, b.c, "team-a", "other", audience), token(t, b.c, "team-b", "ops", audience)

	reviewer := &kubeauth.Reviewer{Client: b.c, Audiences: []string{audience}}
	b.authorize = authority.OnlyGateways(reviewer, []string{gatewayMember})
	b.auth = &authority.Server{Lookup: b.dispatcher, Authorize: b.authorize, Log: logr.Discard()}
	authSrv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !b.authDown.Load() {
			if r.URL.Path == authority.AcquirePath {
				w = notServedCounter{ResponseWriter: w, b: b}
			}
			b.authority().ServeHTTP(w, r)
			return
		}
		if r.URL.Path == authority.AcquirePath { // not the replicas' pings
			b.authDropped.Add(1)
		}
		conn, _, err := http.NewResponseController(w).Hijack()
		if err == nil {
			_ = conn.Close() // no answer at all: the caller's request fails
		}
	}))
	t.Cleanup(authSrv.Close)
	gatewayToken := token(t, b.c, systemNS, "llmquota-gateway", audience)

	broadcaster := events.NewBroadcaster(&events.EventSinkImpl{Interface: kubernetes.NewForConfigOrDie(cfg).EventsV1()})
	must(t, broadcaster.StartRecordingToSinkWithContext(runCtx))
	t.Cleanup(broadcaster.Shutdown)
	denials := gateway.NewDenials(broadcaster.NewRecorder(scheme.Scheme, "llmquota-gateway"), gateway.DeniedEventsPerSecond, gateway.DeniedEventsBurst)

	for i := range 3 {
		quota := &authority.Client{Resolver: authority.StaticURL(authSrv.URL), HTTP: &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 256}},
			Token: func() (string, error) { return gatewayToken, nil }}
		releases := authority.NewReleaser(runCtx, quota, logr.Discard())
		spares := &authority.Spares{Quota: quota, Return: releases.Release} // as cmd/gateway wires it
		go spares.Run(runCtx)
		b.spares = append(b.spares, spares)
		standby := &authority.Standby{Quota: spares, Lender: quota, Return: releases.Release, Every: 200 * time.Millisecond, Log: logr.Discard()}
		go standby.Run(runCtx)
		b.standby = append(b.standby, standby)
		ledger := &authority.Ledger{Quota: standby, Releases: releases}
		go (&authority.CheckIns{Client: quota, Ledger: ledger, Pod: gatewayPod(i), Every: 250 * time.Millisecond, Log: logr.Discard()}).Run(runCtx)
		gw := &gateway.Gateway{
			Providers: &gateway.Providers{Reader: b.c, HTTP: b.slowed(provider.NewHTTPClient(256)), SecretRecheck: gateway.DefaultSecretRecheck},
			Auth:      &kubeauth.Reviewer{Client: b.c, Audiences: []string{audience}}, Quota: ledger,
			Releases: ledger,
			Metrics:  gateway.NewMetrics(prometheus.NewRegistry()), Log: logr.Discard(), Denials: denials,
			Cache: gateway.NewAnswerCache(1 << 20),
		}
		gwSrv := httptest.NewServer(gw.Handler())
		t.Cleanup(gwSrv.Close)
		b.gateways = append(b.gateways, gwSrv.URL)
	}
	b.gateway = b.gateways[0]
	return b
}

// slowed wraps c's transport in a slowTransport.
func (b *bed) slowed(c *http.Client) *http.Client {
	c.Transport = slowTransport{b: b, base: c.Transport}
	return c
}

// waitIdle waits until no call holds d's quota: every grant was released.
func waitIdle(t *testing.T, d *dispatch.Dispatcher) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for d.Quota().InFlight != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("%d calls still hold quota", d.Quota().InFlight)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// token makes a ServiceAccount and returns a token of it for audiences.
func token(t *testing.T, c client.Client, ns, name string, audiences ...string) string {
	t.Helper()
	tok, err := apiserver.ServiceAccountToken(context.Background(), c, ns, name, audiences...)
	must(t, err)
	return tok
}

// grant lets a ServiceAccount use the named providers (all when names is nil).
func grant(t *testing.T, c client.Client, role string, names []string, ns, sa string) {
	t.Helper()
	must(t, apiserver.GrantUse(context.Background(), c, role, names, ns, sa))
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

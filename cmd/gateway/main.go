// Command gateway serves the providers to any pod in the cluster, in their
// own dialects, under the quota the leader manager keeps (docs/gateway.md).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	crmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"
	"sigs.k8s.io/controller-runtime/pkg/metrics/filters"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	llmv1 "github.com/llmquota/llmquota/api/v1alpha1"
	"github.com/llmquota/llmquota/internal/authority"
	"github.com/llmquota/llmquota/internal/gateway"
	"github.com/llmquota/llmquota/internal/kubeauth"
	"github.com/llmquota/llmquota/internal/provider"
	"github.com/llmquota/llmquota/internal/version"
)

func main() {
	var (
		addr, metricsAddr, probeAddr string
		pprofAddr                    string
		authorityURL, authorityLease string
		authorityPort                int
		tokenFile, audience          string
		secretNS                     string
		maxWait, authTTL             time.Duration
		secureMetrics                bool
		cacheMiB                     int
		maxSpares                    int
	)
	flag.StringVar(&addr, "bind-address", ":8080", "Address the dialects are served on.")
	flag.StringVar(&metricsAddr, "metrics-bind-address", ":8443", "Address the metrics endpoint binds to; \"0\" disables it.")
	flag.BoolVar(&secureMetrics, "metrics-secure", true, "Serve metrics over HTTPS, authenticated and authorized through the API server.")
	flag.StringVar(&probeAddr, "health-probe-bind-address", ":8081", "Address the /healthz and /readyz probes bind to.")
	flag.StringVar(&pprofAddr, "pprof-bind-address", "0", "Address of the Go profiling endpoints (/debug/pprof); \"0\" disables them.")
	flag.StringVar(&authorityURL, "authority-url", "", "Base URL of the quota authority; when empty, the leader is found from --authority-lease.")
	flag.StringVar(&authorityLease, "authority-lease", "", "namespace/name of the managers' leader-election Lease (default: <POD_NAMESPACE>/manager.llmquota.dev).")
	flag.IntVar(&authorityPort, "authority-port", 8444, "Port the leader manager serves quota on.")
	flag.StringVar(&tokenFile, "token-file", "/var/run/secrets/llmquota/token", "The gateway's own projected token, presented to the quota authority.")
	flag.StringVar(&audience, "audience", "llmquota.dev", "Audience callers' tokens must be issued for.")
	flag.StringVar(&secretNS, "secret-namespaces", "", "Comma-separated namespaces of the providers' Secrets; empty: all (needs a cluster-wide Secret grant).")
	flag.DurationVar(&maxWait, "max-wait", gateway.DefaultMaxWait, "How long a call waits for quota unless its "+gateway.MaxWaitHeader+" header says otherwise.")
	flag.IntVar(&cacheMiB, "cache-max-mib", gateway.DefaultCacheBytes>>20, "MiB of answers at temperature 0 kept for reuse, for the providers with spec.interactive.cache Enabled; 0 keeps none.")
	flag.IntVar(&maxSpares, "max-spares", authority.DefaultMaxSpares, "Most spare grants one acquire asks for, so that the next calls need no round trip to the leader; a negative number asks for none (one acquire per call).")
	flag.DurationVar(&authTTL, "auth-cache-ttl", kubeauth.DefaultTTL, "How long a TokenReview or SubjectAccessReview answer is reused.")
	opts := zap.Options{}
	opts.BindFlags(flag.CommandLine)
	flag.Parse()
	ctrl.SetLogger(zap.New(zap.UseFlagOptions(&opts)))
	log := ctrl.Log.WithName("gateway")
	ctx := ctrl.SetupSignalHandler()

	scheme := runtime.NewScheme()
	utilruntime.Must(clientgoscheme.AddToScheme(scheme))
	utilruntime.Must(llmv1.AddToScheme(scheme))
	metricsOpts := metricsserver.Options{BindAddress: metricsAddr, SecureServing: secureMetrics}
	if secureMetrics {
		metricsOpts.FilterProvider = filters.WithAuthenticationAndAuthorization
	}
	cacheOpts := cache.Options{}
	if list := splitList(secretNS); len(list) > 0 {
		nss := map[string]cache.Config{}
		for _, ns := range list {
			nss[ns] = cache.Config{}
		}
		cacheOpts.ByObject = map[client.Object]cache.ByObject{&corev1.Secret{}: {Namespaces: nss}}
	}
	mgr, err := ctrl.NewManager(ctrl.GetConfigOrDie(), ctrl.Options{
		Scheme: scheme, Metrics: metricsOpts, HealthProbeBindAddress: probeAddr, PprofBindAddress: pprofAddr, Cache: cacheOpts,
	})
	if err != nil {
		log.Error(err, "Creating the gateway's client")
		os.Exit(1)
	}

	var resolver authority.Resolver = authority.StaticURL(authorityURL)
	if authorityURL == "" {
		lease, err := leaseName(authorityLease)
		if err != nil {
			log.Error(err, "Finding the quota authority")
			os.Exit(1)
		}
		resolver = &authority.LeaseResolver{Client: mgr.GetAPIReader(), Lease: lease, Port: authorityPort}
	}
	// The leader is in the cluster: a dial that takes a second is to an
	// address nobody answers (a deleted leader's), better failed early.
	dialer := &net.Dialer{Timeout: time.Second, KeepAlive: 30 * time.Second}
	pod := podName()
	quota := &authority.Client{Resolver: resolver, HTTP: &http.Client{Transport: &http.Transport{
		DialContext: dialer.DialContext, MaxIdleConnsPerHost: 256, IdleConnTimeout: 90 * time.Second}}, Token: cachedFile(tokenFile, time.Minute),
		Holder: authority.NewHolder(pod)}
	ledger, standby := quotaChain(ctx, quota, pod, maxSpares, log)
	metrics := gateway.NewMetrics(crmetrics.Registry)
	gw := &gateway.Gateway{
		Providers: &gateway.Providers{Reader: mgr.GetClient(), HTTP: provider.NewHTTPClient(1024), SecretRecheck: gateway.DefaultSecretRecheck},
		Auth:      &kubeauth.Reviewer{Client: mgr.GetClient(), Audiences: []string{audience}, TTL: authTTL},
		Quota:     ledger, Releases: ledger, Metrics: metrics, MaxWait: maxWait, Log: log,
		Denials: gateway.NewDenials(mgr.GetEventRecorder("llmquota-gateway"), gateway.DeniedEventsPerSecond, gateway.DeniedEventsBurst),
	}
	if cacheMiB > 0 {
		gw.Cache = gateway.NewAnswerCache(cacheMiB << 20)
	}
	utilruntime.Must(mgr.Add(&server{addr: addr, handler: gw.Handler()}))
	utilruntime.Must(mgr.AddHealthzCheck("healthz", healthz.Ping))
	// Ready once the quota authority answers, or while no manager leads
	// if standby grants serve some calls: a gateway that cannot get quota
	// would refuse every call. The check's 2 s stay under the
	// probe's timeoutSeconds (3, in the chart), so a slow answer is a
	// failed check, not a probe the kubelet abandons.
	utilruntime.Must(mgr.AddReadyzCheck("quota-authority", func(r *http.Request) error {
		ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
		defer cancel()
		if err := quota.Ping(ctx); err != nil && !standby.Serving() {
			return err
		}
		return nil
	}))
	log.Info("Starting gateway", "version", version.Version, "address", addr)
	if err := mgr.Start(ctx); err != nil {
		log.Error(err, "Running the gateway")
		os.Exit(1)
	}
}

// quotaChain makes what stands between the gateway and the quota
// authority, and starts their loops: spare grants, standby grants that
// serve calls while no manager leads, and the ledger of calls in flight
// that every new leader is told of before it admits anything
// (docs/gateway.md). Each registers its metrics.
func quotaChain(ctx context.Context, quota *authority.Client, pod string, maxSpares int, log logr.Logger) (*authority.Ledger, *authority.Standby) {
	releases := authority.NewReleaser(ctx, quota, log)
	spares := &authority.Spares{Quota: quota, Return: releases.Release, Max: maxSpares}
	go spares.Run(ctx)
	standby := &authority.Standby{Quota: spares, Lender: quota, Return: releases.Release, Log: log.WithName("standby")}
	go standby.Run(ctx)
	ledger := &authority.Ledger{Quota: standby, Releases: releases}
	go (&authority.CheckIns{Client: quota, Ledger: ledger, Pod: pod, Log: log.WithName("check-in")}).Run(ctx)
	gateway.RegisterSpares(crmetrics.Registry, spares)
	gateway.RegisterStandby(crmetrics.Registry, standby)
	return ledger, standby
}

// server serves the dialects as a manager Runnable on every replica.
type server struct {
	addr    string
	handler http.Handler
}

func (s *server) NeedLeaderElection() bool { return false }

func (s *server) Start(ctx context.Context) error {
	srv := &http.Server{Addr: s.addr, Handler: s.handler, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx) // lets calls in flight finish
	}()
	if err := srv.ListenAndServe(); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// leaseName reads namespace/name, defaulting to the managers' Lease in
// this pod's namespace.
func leaseName(s string) (types.NamespacedName, error) {
	if s == "" {
		ns := os.Getenv("POD_NAMESPACE")
		if ns == "" {
			return types.NamespacedName{}, errors.New("--authority-lease or POD_NAMESPACE must be set")
		}
		return types.NamespacedName{Namespace: ns, Name: "manager.llmquota.dev"}, nil
	}
	ns, name, ok := strings.Cut(s, "/")
	if !ok || ns == "" || name == "" {
		return types.NamespacedName{}, fmt.Errorf("--authority-lease %q is not namespace/name", s)
	}
	return types.NamespacedName{Namespace: ns, Name: name}, nil
}

// cachedFile reads a file at most once per every: the kubelet rotates a
// projected token well before it expires.
func cachedFile(path string, every time.Duration) func() (string, error) {
	var mu sync.Mutex
	var value string
	var read time.Time
	return func() (string, error) {
		mu.Lock()
		defer mu.Unlock()
		if value != "" && time.Since(read) < every {
			return value, nil
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return "", err
		}
		value, read = strings.TrimSpace(string(b)), time.Now()
		return value, nil
	}
}

// splitList reads a comma-separated flag.
func splitList(s string) []string {
	return strings.FieldsFunc(s, func(r rune) bool { return r == ',' || r == ' ' })
}

// podName is this gateway's pod, "namespace/name", as the managers list it
// (authority.GatewayPods): POD_NAMESPACE and POD_NAME, or the host name,
// which is the pod's name unless the pod sets another.
func podName() string {
	name := os.Getenv("POD_NAME")
	if name == "" {
		name, _ = os.Hostname()
	}
	return os.Getenv("POD_NAMESPACE") + "/" + name
}

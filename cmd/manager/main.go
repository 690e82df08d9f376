// Command manager runs the llmquota controllers: it keeps LLMProvider and
// InferenceBatch status true to the cluster and runs batches under quota.
package main

import (
	"crypto/tls"
	"flag"
	"os"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	"sigs.k8s.io/controller-runtime/pkg/metrics/filters"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	llmv1 "github.com/llmquota/llmquota/api/v1alpha1"
	"github.com/llmquota/llmquota/internal/authority"
	"github.com/llmquota/llmquota/internal/batchrun"
	"github.com/llmquota/llmquota/internal/controller"
	"github.com/llmquota/llmquota/internal/dispatch"
	"github.com/llmquota/llmquota/internal/egress"
	"github.com/llmquota/llmquota/internal/journal"
	"github.com/llmquota/llmquota/internal/kubeauth"
	"github.com/llmquota/llmquota/internal/memlimit"
	"github.com/llmquota/llmquota/internal/metrics"
	"github.com/llmquota/llmquota/internal/results"
	"github.com/llmquota/llmquota/internal/version"
)

// flags are the manager's command-line options.
type flags struct {
	metricsAddr, probeAddr, pprofAddr, quotaAddr string
	secureMetrics, leaderElect, enableHTTP2      bool
	leaderElectNS, stateNS                       string
	secretNS, ollamaNS, gatewaySAs, s3Allowed    string
	workers, flushItems                          int
	flushEvery, adoptWithin                      time.Duration
	zap                                          zap.Options
}

func parseFlags() flags {
	var f flags
	flag.StringVar(&f.metricsAddr, "metrics-bind-address", ":8443", "Address the metrics endpoint binds to; \"0\" disables it.")
	flag.StringVar(&f.probeAddr, "health-probe-bind-address", ":8081", "Address the /healthz and /readyz probes bind to.")
	flag.BoolVar(&f.secureMetrics, "metrics-secure", true, "Serve metrics over HTTPS, authenticated and authorized through the API server.")
	flag.BoolVar(&f.leaderElect, "leader-elect", true, "Elect a leader so only one manager runs the controllers at a time.")
	flag.StringVar(&f.leaderElectNS, "leader-election-namespace", "", "Namespace of the leader-election Lease (default: the pod's namespace).")
	flag.BoolVar(&f.enableHTTP2, "enable-http2", false, "Allow HTTP/2 on the metrics server (off by default: CVE-2023-44487).")
	flag.StringVar(&f.secretNS, "secret-namespaces", "", "Comma-separated namespaces the manager watches Secrets in; empty: all (needs a cluster-wide Secret grant).")
	flag.StringVar(&f.ollamaNS, "ollama-namespaces", "", "Comma-separated namespaces the manager watches Ollama pool pods in; empty: all (needs a cluster-wide pod grant).")
	flag.IntVar(&f.workers, "batch-workers", 8, "How many InferenceBatches are admitted and published at once.")
	flag.DurationVar(&f.flushEvery, "results-flush-interval", 10*time.Second, "Longest a result waits before it is written to its batch's results; bounds what a crash re-sends.")
	flag.IntVar(&f.flushItems, "results-flush-items", 100, "Write a batch's results once this many wait, without waiting for --results-flush-interval.")
	flag.StringVar(&f.stateNS, "state-namespace", "", "Namespace of the manager's own state (each provider's quota snapshot and results journal, in ConfigMaps); default: POD_NAMESPACE, then the pod's namespace.")
	flag.StringVar(&f.pprofAddr, "pprof-bind-address", "0", "Address of the Go profiling endpoints (/debug/pprof); \"0\" disables them.")
	flag.StringVar(&f.quotaAddr, "quota-bind-address", ":8444", "Address the leader serves quota to gateway replicas on; \"0\" disables it.")
	flag.StringVar(&f.s3Allowed, "s3-allowed-endpoints", "", "Comma-separated hostnames (\"*.amazonaws.com\"), IP addresses and CIDRs of the object storage batches may name; empty: public addresses only (cluster-internal, loopback and link-local refused).")
	flag.DurationVar(&f.adoptWithin, "gateway-checkin-timeout", authority.DefaultAdoptWithin, "How long a new leader waits for a gateway pod to tell the calls in flight that the previous leader granted before it admits anything: at least the gateway's longest call.")
	flag.StringVar(&f.gatewaySAs, "gateway-service-accounts", "", "Comma-separated namespace/name of the ServiceAccounts whose gateways may draw quota (default: <POD_NAMESPACE>/llmquota-gateway).")
	f.zap.BindFlags(flag.CommandLine)
	flag.Parse()
	return f
}

// metricsOptions serves metrics over HTTPS behind the API server's
// authentication and authorization, HTTP/1.1 only unless asked.
func metricsOptions(f flags) metricsserver.Options {
	o := metricsserver.Options{BindAddress: f.metricsAddr, SecureServing: f.secureMetrics}
	if f.secureMetrics {
		o.FilterProvider = filters.WithAuthenticationAndAuthorization
	}
	if !f.enableHTTP2 {
		o.TLSOpts = []func(*tls.Config){func(c *tls.Config) { c.NextProtos = []string{"http/1.1"} }}
	}
	return o
}

func main() {
	f := parseFlags()
	opts := f.zap
	ctrl.SetLogger(zap.New(zap.UseFlagOptions(&opts)))
	log := ctrl.Log.WithName("setup")
	s3Policy, err := egress.Parse(splitList(f.s3Allowed))
	if err != nil {
		log.Error(err, "Reading --s3-allowed-endpoints")
		os.Exit(1)
	}
	if limit, err := memlimit.Set(os.Getenv); err != nil {
		log.Error(err, "Ignoring the container memory limit")
	} else if limit > 0 {
		log.Info("Go memory limit set from the container's", "bytes", limit)
	}

	scheme := runtime.NewScheme()
	utilruntime.Must(clientgoscheme.AddToScheme(scheme))
	utilruntime.Must(llmv1.AddToScheme(scheme))

	mgr, err := ctrl.NewManager(ctrl.GetConfigOrDie(), ctrl.Options{
		Scheme:                  scheme,
		Metrics:                 metricsOptions(f),
		HealthProbeBindAddress:  f.probeAddr,
		PprofBindAddress:        f.pprofAddr,
		LeaderElection:          f.leaderElect,
		LeaderElectionID:        "manager.llmquota.dev",
		LeaderElectionNamespace: f.leaderElectNS,
		// Step down fast on SIGTERM so a standby takes over at once.
		LeaderElectionReleaseOnCancel: true,
		Cache:                         controller.CacheOptions(splitList(f.secretNS), splitList(f.ollamaNS)),
	})
	if err != nil {
		log.Error(err, "Creating manager")
		os.Exit(1)
	}

	// The dispatchers and the batch runs live while this manager leads: on
	// shutdown the manager waits until they wrote their results and quota.
	registry := dispatch.NewRegistry()
	stateNS := controller.StateNamespace(f.stateNS)
	runs := batchrun.New(clock.RealClock{}, results.FlushPolicy{Interval: f.flushEvery, Items: f.flushItems},
		journal.Options{Reader: mgr.GetAPIReader(), Writer: mgr.GetClient(), Namespace: stateNS})
	utilruntime.Must(mgr.Add(registry))
	utilruntime.Must(mgr.Add(runs))
	recorder := mgr.GetEventRecorder("llmquota-manager")
	if err := (&controller.LLMProviderReconciler{
		Client: mgr.GetClient(), APIReader: mgr.GetAPIReader(), Recorder: recorder, Clock: clock.RealClock{},
		Registry: registry, SecretNamespaces: splitList(f.secretNS), OllamaNamespaces: splitList(f.ollamaNS),
		StateNamespace: stateNS,
	}).SetupWithManager(mgr); err != nil {
		log.Error(err, "Setting up controller", "controller", "LLMProvider")
		os.Exit(1)
	}
	if err := (&controller.InferenceBatchReconciler{
		Client: mgr.GetClient(), APIReader: mgr.GetAPIReader(), Recorder: recorder, Clock: clock.RealClock{},
		Registry: registry, Runtime: runs, Workers: f.workers, Egress: s3Policy,
	}).SetupWithManager(mgr); err != nil {
		log.Error(err, "Setting up controller", "controller", "InferenceBatch")
		os.Exit(1)
	}

	if f.quotaAddr != "0" {
		reviewer := &kubeauth.Reviewer{Client: mgr.GetClient(), Audiences: []string{"llmquota.dev"}}
		accounts := gatewayAccounts(f.gatewaySAs)
		quota := &authority.Server{Addr: f.quotaAddr, Lookup: registry.Get,
			Authorize: authority.OnlyGateways(reviewer, accounts), Log: ctrl.Log.WithName("quota-authority"),
			Gateways: authority.GatewayPods(mgr.GetAPIReader(), accounts), AdoptWithin: f.adoptWithin, Observe: metrics.AuthorityObserver{}}
		// Nothing is admitted until the gateways told the calls in flight
		// that a previous leader granted (docs/gateway.md).
		registry.HoldUntil(quota.Ready())
		registry.BeforeRun(quota.AdoptInto)
		utilruntime.Must(mgr.Add(quota))
	}

	utilruntime.Must(mgr.AddHealthzCheck("healthz", healthz.Ping))
	utilruntime.Must(mgr.AddReadyzCheck("readyz", healthz.Ping))

	log.Info("Starting manager", "version", version.Version)
	if err := mgr.Start(ctrl.SetupSignalHandler()); err != nil {
		log.Error(err, "Running manager")
		os.Exit(1)
	}
}

func splitList(s string) []string {
	var out []string
	for _, v := range strings.Split(s, ",") {
		if v = strings.TrimSpace(v); v != "" {
			out = append(out, v)
		}
	}
	return out
}

// gatewayAccounts lists the gateways' ServiceAccounts, by default the
// chart's in the manager's own namespace.
func gatewayAccounts(flagValue string) []string {
	if list := splitList(flagValue); len(list) > 0 {
		return list
	}
	if ns := os.Getenv("POD_NAMESPACE"); ns != "" {
		return []string{ns + "/llmquota-gateway"}
	}
	return nil
}

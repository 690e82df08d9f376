// Command node-agent runs on every GPU node (a DaemonSet): it warms the
// Ollama pods of its node before traffic reaches them, unloads idle models
// to free GPU memory, and reports GPU memory through NVML.
package main

import (
	"flag"
	"os"

	"github.com/NVIDIA/go-nvml/pkg/nvml"
	"k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	llmv1 "github.com/llmquota/llmquota/api/v1alpha1"
	"github.com/llmquota/llmquota/internal/agent/gpu"
	"github.com/llmquota/llmquota/internal/agent/reconciler"
	"github.com/llmquota/llmquota/internal/version"
)

func main() {
	var (
		metricsAddr string
		probeAddr   string
		opts        reconciler.Options
		noNVML      bool
	)
	flag.StringVar(&opts.NodeName, "node-name", os.Getenv("NODE_NAME"), "Node this agent serves (default: $NODE_NAME, set from spec.nodeName by the DaemonSet).")
	flag.StringVar(&metricsAddr, "metrics-bind-address", ":8080", "Address the Prometheus /metrics endpoint binds to; \"0\" disables it.")
	flag.StringVar(&probeAddr, "health-probe-bind-address", ":8081", "Address the /healthz and /readyz probes bind to.")
	flag.DurationVar(&opts.PollInterval, "poll-interval", 0, "How often each Ollama pod's resident models are checked (default 30s).")
	flag.DurationVar(&opts.GPUInterval, "gpu-interval", 0, "How often the GPUs are sampled (default 10s).")
	flag.DurationVar(&opts.CleanupMinGap, "cleanup-min-gap", 0, "Least time between two cleanups of one pod, whatever asks (default 30s).")
	flag.BoolVar(&noNVML, "disable-nvml", false, "Do not use NVML; report GPU memory from Ollama's /api/ps.")
	flag.StringVar(&opts.ProcRoot, "proc-root", "", "The node's /proc, mounted read-only (/host/proc): maps NVML's processes to pods, for GPU memory per pod; empty: per node only.")
	zopts := zap.Options{}
	zopts.BindFlags(flag.CommandLine)
	flag.Parse()
	ctrl.SetLogger(zap.New(zap.UseFlagOptions(&zopts)))
	log := ctrl.Log.WithName("setup")
	if opts.NodeName == "" {
		log.Error(nil, "No node to serve: set --node-name or NODE_NAME")
		os.Exit(2)
	}

	scheme := runtime.NewScheme()
	utilruntime.Must(clientgoscheme.AddToScheme(scheme))
	utilruntime.Must(llmv1.AddToScheme(scheme))
	mgr, err := ctrl.NewManager(ctrl.GetConfigOrDie(), ctrl.Options{
		Scheme:                 scheme,
		Metrics:                metricsserver.Options{BindAddress: metricsAddr},
		HealthProbeBindAddress: probeAddr,
		Cache:                  reconciler.CacheOptions(opts.NodeName),
	})
	if err != nil {
		log.Error(err, "Creating manager")
		os.Exit(1)
	}
	r := &reconciler.PodReconciler{
		Client: mgr.GetClient(), Recorder: mgr.GetEventRecorder("llmquota-node-agent"),
		Clock: clock.RealClock{}, Options: opts,
	}
	if !noNVML {
		r.GPU = gpu.NewMonitor(func() (*gpu.Reader, error) { return gpu.Open(nvml.New()) }, ctrl.Log.WithName("gpu"))
	}
	if err := r.SetupWithManager(mgr); err != nil {
		log.Error(err, "Setting up the agent")
		os.Exit(1)
	}
	utilruntime.Must(mgr.AddHealthzCheck("healthz", healthz.Ping))
	utilruntime.Must(mgr.AddReadyzCheck("readyz", healthz.Ping))
	log.Info("Starting node agent", "version", version.Version, "node", opts.NodeName)
	if err := mgr.Start(ctrl.SetupSignalHandler()); err != nil {
		log.Error(err, "Running node agent")
		os.Exit(1)
	}
}

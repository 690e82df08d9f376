package reconciler

import (
	"context"
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/events"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/event"

	llmv1 "github.com/llmquota/llmquota/api/v1alpha1"
	"github.com/llmquota/llmquota/internal/agent/gpu"
	"github.com/llmquota/llmquota/internal/agent/ollama"
	"github.com/llmquota/llmquota/internal/agent/podgpu"
	"github.com/llmquota/llmquota/internal/ollamapod"
)

// Options tune the agent; zero values take the defaults.
type Options struct {
	// NodeName is the node the agent runs on (the downward API's spec.nodeName).
	NodeName string
	// PollInterval is how often each pod's /api/ps is checked, so an
	// unloaded model is warmed again and idle models are noticed (30s).
	PollInterval time.Duration
	// GPUInterval is how often the GPUs are sampled for metrics and the
	// high watermark (10s).
	GPUInterval time.Duration
	// CleanupMinGap is the least time between two cleanups of one pod (30s).
	CleanupMinGap time.Duration
	// WarmupBackoff is the pause after the first failed warmup attempt,
	// doubling after each further one (1s).
	WarmupBackoff time.Duration
	// Transport carries the calls to Ollama (http.DefaultTransport).
	Transport http.RoundTripper
	// ProcRoot is the node's /proc (mounted read-only, /host/proc), where
	// NVML's process IDs are mapped to pods; empty leaves GPU memory per
	// node only.
	ProcRoot string
}

func (o *Options) defaults() {
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&o.PollInterval, 30*time.Second)
	def(&o.GPUInterval, 10*time.Second)
	def(&o.CleanupMinGap, 30*time.Second)
	def(&o.WarmupBackoff, time.Second)
	if o.Transport == nil {
		o.Transport = http.DefaultTransport
	}
}

// PodReconciler keeps the Ollama pods of one node warm and clean.
type PodReconciler struct {
	client.Client
	Recorder events.EventRecorder
	Clock    clock.Clock
	// GPU samples the node's GPUs; nil means none (reports come from Ollama).
	GPU *gpu.Monitor
	Options

	mu        sync.Mutex
	endpoints map[types.NamespacedName]*endpointState
	devices   []gpu.Device // the latest GPU sample; nil without NVML
	// pods is the latest sample's GPU memory by pod UID; nil without NVML
	// or a ProcRoot.
	pods map[string]podgpu.Usage
	over chan event.GenericEvent
	// podGPUSeries are the per-pod GPU memory series last exported; only
	// the GPU sampling loop uses it.
	podGPUSeries map[[4]string]bool
}

// endpointState is what the agent remembers of one pod between passes.
// Only that pod's reconcile touches it (controller-runtime never runs two
// at once for one object), so it needs no lock of its own.
type endpointState struct {
	tracker   ollama.Tracker
	schedule  ollama.Schedule
	watermark int32
	uid       types.UID
	// warmMessage is how the last warmup went, shown again should the
	// condition be lost while the model stays resident.
	warmMessage string
}

// Reconcile serves one pod: nothing unless an Ollama LLMProvider selects
// it and it runs on this node.
func (r *PodReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	var pod corev1.Pod
	if err := r.Get(ctx, req.NamespacedName, &pod); err != nil {
		if apierrors.IsNotFound(err) {
			r.forget(req.NamespacedName)
		}
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	var providers llmv1.LLMProviderList
	if err := r.List(ctx, &providers); err != nil {
		return ctrl.Result{}, err
	}
	pool := ollamapod.PoolOf(providers.Items, &pod)
	if pool == nil || pod.Spec.NodeName != r.NodeName || pod.DeletionTimestamp != nil {
		r.forget(req.NamespacedName)
		return ctrl.Result{}, nil
	}
	return r.serve(ctx, &pod, pool, r.state(req.NamespacedName, pod.UID, pool))
}

// serve checks the pod's container and Ollama, cleans up what is due,
// warms the pool's model if it is not resident, and reports.
func (r *PodReconciler) serve(ctx context.Context, pod *corev1.Pod, pool *llmv1.LLMProvider, st *endpointState) (ctrl.Result, error) {
	model := pool.Spec.Model
	if model == "" {
		return ctrl.Result{}, r.setWarm(ctx, pod, false, llmv1.PodReasonNoModel, "LLMProvider "+pool.Name+" names no spec.model to keep warm")
	}
	if ok, why := containersRunning(pod); !ok {
		return ctrl.Result{}, r.setWarm(ctx, pod, false, llmv1.PodReasonWarming, why+"; the model is warmed once it runs")
	}
	ep := ollamapod.Endpoint(pod, pool.Spec.Ollama)
	if ep == "" {
		return ctrl.Result{}, r.setWarm(ctx, pod, false, llmv1.PodReasonWarming, "pod has no IP yet; the model is warmed once it has")
	}
	c := ollama.New(ep, &http.Client{Transport: r.Transport, Timeout: warmupTimeout(pool.Spec.Ollama)})
	wait := time.Duration(0)
	running, err := c.PS(ctx)
	if err == nil {
		var cleaned bool
		if wait, cleaned, err = r.cleanup(ctx, pod, pool, c, st, running); err != nil {
			return ctrl.Result{}, err
		}
		if cleaned {
			running, err = c.PS(ctx)
		}
	}
	if err != nil || !isResident(running, model) {
		if ok, err := r.warm(ctx, pod, pool, c, ep, st); err != nil || !ok {
			return ctrl.Result{RequeueAfter: r.PollInterval}, err
		}
		running, _ = c.PS(ctx)
		// The last GPU sample may have been taken while the model loaded:
		// read again, so the report shows the memory the model now holds.
		r.sampleGPU()
	} else if err := r.confirmWarm(ctx, pod, st, model); err != nil {
		return ctrl.Result{}, err
	}
	endpointWarm.WithLabelValues(pod.Namespace, pod.Name).Set(1)
	if err := r.report(ctx, pod, model, running); err != nil {
		return ctrl.Result{}, err
	}
	if wait > 0 && wait < r.PollInterval {
		return ctrl.Result{RequeueAfter: wait}, nil
	}
	return ctrl.Result{RequeueAfter: r.PollInterval}, nil
}

// confirmWarm sets ModelWarm=True for a resident model when the pod does
// not show it: loaded by someone else, warmed before the agent restarted,
// or the condition was lost (another writer replaced the conditions).
func (r *PodReconciler) confirmWarm(ctx context.Context, pod *corev1.Pod, st *endpointState, model string) error {
	if ollamapod.IsWarm(pod) {
		return nil
	}
	msg := st.warmMessage
	if msg == "" {
		msg = "model " + model + " is resident"
	}
	return r.setWarm(ctx, pod, true, llmv1.PodReasonWarm, msg)
}

func isResident(running []ollama.Running, model string) bool {
	_, ok := ollama.Resident(running, model)
	return ok
}

// state returns the pod's remembered state, creating it on first sight.
func (r *PodReconciler) state(key types.NamespacedName, uid types.UID, pool *llmv1.LLMProvider) *endpointState {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.endpoints == nil {
		r.endpoints = map[types.NamespacedName]*endpointState{}
	}
	st, ok := r.endpoints[key]
	if !ok {
		st = &endpointState{}
		r.endpoints[key] = st
	}
	st.watermark, st.uid = pool.Spec.Ollama.GPUMemoryHighWatermark, uid
	return st
}

// forget drops a pod the agent no longer serves, and its metric series.
func (r *PodReconciler) forget(key types.NamespacedName) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, ok := r.endpoints[key]; ok {
		delete(r.endpoints, key)
		pod := prometheus.Labels{"ollama_namespace": key.Namespace, "ollama_pod": key.Name}
		for _, v := range []interface{ DeletePartialMatch(prometheus.Labels) int }{endpointWarm, warmups, warmupFailures} {
			v.DeletePartialMatch(pod)
		}
	}
}

func warmupTimeout(o *llmv1.OllamaSpec) time.Duration {
	if t := llmv1.Seconds(o.Warmup.TimeoutSeconds, 0); t > 0 {
		return t
	}
	return time.Minute
}

package reconciler

import (
	"context"
	"strconv"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	"sigs.k8s.io/controller-runtime/pkg/source"

	llmv1 "github.com/llmquota/llmquota/api/v1alpha1"
	"github.com/llmquota/llmquota/internal/agent/gpu"
	"github.com/llmquota/llmquota/internal/agent/podgpu"
)

// CacheOptions limit the agent's Pod cache to its own node: an agent on
// every GPU node must not hold every pod of the cluster.
func CacheOptions(node string) cache.Options {
	return cache.Options{ByObject: map[client.Object]cache.ByObject{
		&corev1.Pod{}: {Field: fields.OneTermEqualSelector("spec.nodeName", node)},
	}}
}

// +kubebuilder:rbac:groups="",resources=pods,verbs=get;list;watch
// +kubebuilder:rbac:groups="",resources=pods/status,verbs=patch
// +kubebuilder:rbac:groups=llmquota.dev,resources=llmproviders,verbs=get;list;watch
// +kubebuilder:rbac:groups=events.k8s.io,resources=events,verbs=create;patch

// SetupWithManager registers the reconciler and its GPU sampler. The
// manager's cache must come from CacheOptions.
func (r *PodReconciler) SetupWithManager(mgr ctrl.Manager) error {
	r.defaults()
	r.over = make(chan event.GenericEvent, 64)
	if err := mgr.Add(manager.RunnableFunc(r.sampleGPUs)); err != nil {
		return err
	}
	return ctrl.NewControllerManagedBy(mgr).
		For(&corev1.Pod{}, builder.WithPredicates(predicate.Or(predicate.GenerationChangedPredicate{},
			predicate.LabelChangedPredicate{}, predicate.AnnotationChangedPredicate{}, podStateChanged()))).
		Watches(&llmv1.LLMProvider{}, handler.EnqueueRequestsFromMapFunc(r.podsForProvider),
			builder.WithPredicates(predicate.GenerationChangedPredicate{})).
		WatchesRawSource(source.Channel(r.over, &handler.EnqueueRequestForObject{})).
		// A warmup can take a minute: other pods must not wait on it.
		WithOptions(controller.Options{MaxConcurrentReconciles: 4}).
		Named("node-agent").
		Complete(r)
}

// podStateChanged passes the pod updates that matter besides spec and
// metadata: its IP, phase and containers (a restart unloads the model).
func podStateChanged() predicate.Funcs {
	return predicate.Funcs{UpdateFunc: func(e event.UpdateEvent) bool {
		o, n := e.ObjectOld.(*corev1.Pod), e.ObjectNew.(*corev1.Pod)
		if o.Status.PodIP != n.Status.PodIP || o.Status.Phase != n.Status.Phase || len(o.Status.ContainerStatuses) != len(n.Status.ContainerStatuses) {
			return true
		}
		for i := range o.Status.ContainerStatuses {
			a, b := o.Status.ContainerStatuses[i], n.Status.ContainerStatuses[i]
			if a.RestartCount != b.RestartCount || (a.State.Running == nil) != (b.State.Running == nil) {
				return true
			}
		}
		return false
	}}
}

// podsForProvider wakes the pods on this node that a changed provider selects.
func (r *PodReconciler) podsForProvider(ctx context.Context, o client.Object) []reconcile.Request {
	pods, err := r.podsOf(ctx, o.(*llmv1.LLMProvider))
	if err != nil {
		logf.FromContext(ctx).Error(err, "Listing the pods of a provider")
		return nil
	}
	reqs := make([]reconcile.Request, 0, len(pods))
	for _, p := range pods {
		reqs = append(reqs, reconcile.Request{NamespacedName: types.NamespacedName{Namespace: p.Namespace, Name: p.Name}})
	}
	return reqs
}

// sampleGPUs samples the GPUs every GPUInterval for the metrics, and wakes
// every pod whose provider's high watermark a device passes.
func (r *PodReconciler) sampleGPUs(ctx context.Context) error {
	if r.GPU == nil {
		publishGPU(r.NodeName, nil, false)
		return nil
	}
	defer func() { _ = r.GPU.Close() }()
	for {
		devices, ok := r.sampleGPU()
		publishGPU(r.NodeName, devices, ok)
		r.publishPodGPU(ctx)
		if ok {
			r.wakeOverWatermark(ctx, devices)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-r.Clock.After(r.GPUInterval):
		}
	}
}

// sampleGPU reads the GPUs now and keeps the sample for the pods' passes.
func (r *PodReconciler) sampleGPU() ([]gpu.Device, bool) {
	if r.GPU == nil {
		return nil, false
	}
	devices, ok := r.GPU.Sample()
	var pods map[string]podgpu.Usage
	if ok && r.ProcRoot != "" {
		pods = podgpu.Attribute(devices, podgpu.Resolver{ProcRoot: r.ProcRoot}.Owner)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.devices, r.pods = nil, pods
	if ok {
		r.devices = devices
	}
	return devices, ok
}

// podUsage is the latest sample's GPU memory of one pod; known is false
// where the agent cannot tell pods apart (no NVML or no ProcRoot).
func (r *PodReconciler) podUsage(uid types.UID) (u podgpu.Usage, known bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.pods == nil {
		return podgpu.Usage{}, false
	}
	return r.pods[string(uid)], true
}

// overBy is what a pod's watermark cleanup must free: with GPU memory per
// pod known, only what it holds on the GPUs over the watermark; without,
// the node's whole excess.
func (r *PodReconciler) overBy(devices []gpu.Device, percent int32, uid types.UID) int64 {
	r.mu.Lock()
	pods := r.pods
	r.mu.Unlock()
	if pods == nil {
		return gpu.OverBy(devices, percent)
	}
	return podgpu.OverBy(devices, percent, pods, string(uid))
}

// latestGPU is the last sample; ok is false without one (no NVML).
func (r *PodReconciler) latestGPU() ([]gpu.Device, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.devices, r.devices != nil
}

func (r *PodReconciler) wakeOverWatermark(ctx context.Context, devices []gpu.Device) {
	type served struct {
		key       types.NamespacedName
		watermark int32
		uid       types.UID
	}
	r.mu.Lock()
	all := make([]served, 0, len(r.endpoints))
	for key, st := range r.endpoints { // read under the lock that state() writes them under
		all = append(all, served{key, st.watermark, st.uid})
	}
	r.mu.Unlock()
	var wake []types.NamespacedName
	for _, s := range all {
		if r.overBy(devices, s.watermark, s.uid) > 0 {
			wake = append(wake, s.key)
		}
	}
	for _, key := range wake {
		select {
		case r.over <- event.GenericEvent{Object: &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: key.Namespace, Name: key.Name}}}:
		case <-ctx.Done():
			return
		case <-time.After(time.Second): // the queue is backed up; the next sample tries again
		}
	}
}

// publishPodGPU exports the latest sample's GPU memory by pod, named from
// the agent's cache of the pods on its node; a process of a pod the cache
// does not know (just created, or not the kubelet's) is left out. It sets
// the new values, then deletes the series no longer held, so a scrape
// never sees a pod's series missing between two samples. Only the GPU
// sampling loop calls it.
func (r *PodReconciler) publishPodGPU(ctx context.Context) {
	r.mu.Lock()
	usage := r.pods
	r.mu.Unlock()
	held := map[[4]string]bool{}
	if usage != nil {
		var pods corev1.PodList
		if err := r.List(ctx, &pods); err != nil {
			logf.FromContext(ctx).Error(err, "Listing this node's pods for their GPU memory")
			return
		}
		for _, p := range pods.Items {
			u, ok := usage[string(p.UID)]
			if !ok {
				continue
			}
			for gpuIndex, bytes := range u.ByGPU {
				labels := [4]string{r.NodeName, p.Namespace, p.Name, strconv.Itoa(gpuIndex)}
				podGPUMemory.WithLabelValues(labels[:]...).Set(float64(bytes))
				held[labels] = true
			}
		}
	}
	for labels := range r.podGPUSeries {
		if !held[labels] {
			podGPUMemory.DeleteLabelValues(labels[:]...)
		}
	}
	r.podGPUSeries = held
}

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
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	corev1ac "k8s.io/client-go/applyconfigurations/core/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	llmv1 "github.com/llmquota/llmquota/api/v1alpha1"
	"github.com/llmquota/llmquota/internal/dispatch"
	"github.com/llmquota/llmquota/internal/ollamapod"
	"github.com/llmquota/llmquota/internal/provider"
)

// cleanupAfterErrors consecutive server errors from one Ollama pod make
// the manager ask the pod's node agent for a forced cleanup.
const cleanupAfterErrors = 3

// maxEndpoints is how many endpoints status lists (the CRD's bound).
const maxEndpoints = 256

// pools holds each Ollama pool's warm endpoints. They outlive the pool's
// dispatcher, which a spec change restarts.
type pools struct {
	mu sync.Mutex
	m  map[string]*dispatch.Endpoints
}

func (p *pools) get(name string) *dispatch.Endpoints {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.m == nil {
		p.m = map[string]*dispatch.Endpoints{}
	}
	e, ok := p.m[name]
	if !ok {
		e = &dispatch.Endpoints{}
		p.m[name] = e
	}
	return e
}

func (p *pools) drop(name string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	delete(p.m, name)
}

// observePool reads the pool's pods into status.endpoints, points the
// dispatcher at the warm ones, asks for a cleanup of pods that keep
// failing, and returns the Warm condition.
func (r *LLMProviderReconciler) observePool(ctx context.Context, p *llmv1.LLMProvider) (metav1.Condition, error) {
	eps := r.pools.get(p.Name)
	if ns := p.Spec.Ollama.Namespace; len(r.OllamaNamespaces) > 0 && !slices.Contains(r.OllamaNamespaces, ns) {
		eps.Set(nil)
		p.Status.Endpoints = nil
		return metav1.Condition{Type: llmv1.ConditionWarm, Status: metav1.ConditionFalse, Reason: llmv1.ReasonNamespaceNotWatched,
			Message: fmt.Sprintf("namespace %q named by spec.ollama.namespace is not one the manager watches pods in (--ollama-namespaces=%s)",
				ns, strings.Join(r.OllamaNamespaces, ","))}, nil
	}
	var list corev1.PodList
	if err := r.List(ctx, &list, client.InNamespace(p.Spec.Ollama.Namespace)); err != nil {
		return metav1.Condition{}, fmt.Errorf("listing the pods of Ollama pool %s: %w", p.Name, err)
	}
	var pods []*corev1.Pod
	for i := range list.Items {
		if ollamapod.Selects(p, &list.Items[i]) {
			pods = append(pods, &list.Items[i])
		}
	}
	statuses := make([]llmv1.EndpointStatus, 0, len(pods))
	var warm []dispatch.Endpoint
	numCtx := ptr.Deref(p.Spec.Ollama.ContextLength, 0) // every call asks for the context the agent warmed the model with
	version := fmt.Sprintf("num_ctx=%d", numCtx)
	for _, pod := range pods {
		st := endpointStatus(pod, p.Spec.Ollama)
		if st.State == llmv1.EndpointWarm {
			c, err := provider.New(provider.Config{Type: provider.Ollama, Endpoint: st.Address, HTTPClient: r.poolHTTPClient(), ContextLength: numCtx})
			if err != nil {
				st.State, st.Message = llmv1.EndpointFailed, fmt.Sprintf("address %q: %v", st.Address, err)
			} else {
				warm = append(warm, dispatch.Endpoint{Name: pod.Name, Address: st.Address, Client: c, Version: version, GPUMemoryUsed: gpuMemoryUsed(st)})
			}
		}
		statuses = append(statuses, st)
	}
	warmPods := len(warm)
	if p.Spec.Endpoint != "" && warmPods > 0 {
		// One address for the pool (a Service whose readiness gate keeps
		// cold pods out): sent to while any pod is warm.
		c, err := provider.New(provider.Config{Type: provider.Ollama, Endpoint: p.Spec.Endpoint, HTTPClient: r.poolHTTPClient(), ContextLength: numCtx})
		if err != nil {
			return metav1.Condition{}, err
		}
		warm = []dispatch.Endpoint{{Address: p.Spec.Endpoint, Client: c, Version: version}}
	}
	eps.Set(warm)
	limits := eps.Limits() // learned under spec.limits.adaptive; nil without
	for i := range statuses {
		if l, ok := limits[statuses[i].Name]; ok {
			statuses[i].ConcurrencyLimit = ptr.To(int32(l))
		}
	}
	publishEndpointLimits(p.Name, limits)
	if len(statuses) > maxEndpoints {
		statuses = statuses[:maxEndpoints]
	}
	p.Status.Endpoints = statuses
	r.requestCleanups(ctx, p, pods, eps.Failing(cleanupAfterErrors))
	return warmCondition(p, warmPods, len(pods)), nil
}

// gpuMemoryUsed is the part of its node's GPU memory in use that a pod's
// report gives, 0 when unknown.
func gpuMemoryUsed(st llmv1.EndpointStatus) float64 {
	if st.GPUMemoryTotalBytes <= 0 {
		return 0
	}
	return float64(st.GPUMemoryUsedBytes) / float64(st.GPUMemoryTotalBytes)
}

// endpointStatus is one pod as status shows it, from the agent's
// condition and report.
func endpointStatus(pod *corev1.Pod, o *llmv1.OllamaSpec) llmv1.EndpointStatus {
	st := llmv1.EndpointStatus{Name: pod.Name, Node: pod.Spec.NodeName, Address: ollamapod.Endpoint(pod, o), State: llmv1.EndpointCold}
	if c := ollamapod.WarmCondition(pod); c != nil {
		st.Message = c.Message
		switch {
		case ollamapod.IsWarm(pod) && st.Address != "":
			st.State = llmv1.EndpointWarm
		case c.Reason == llmv1.PodReasonWarmupFailed:
			st.State = llmv1.EndpointFailed
		}
	} else {
		st.Message = "no node agent has reported on this pod yet"
	}
	if rep, ok := ollamapod.Report(pod); ok {
		st.Model, st.VRAMBytes, st.GPUMemoryUsedBytes, st.GPUMemoryTotalBytes = rep.Model, rep.VRAMBytes, rep.GPUMemoryUsedBytes, rep.GPUMemoryTotalBytes
		st.GPUMemorySource, st.PodGPUMemoryBytes = rep.Source, rep.PodGPUMemoryBytes
	}
	if len(st.Message) > 1024 {
		st.Message = st.Message[:1021] + "..."
	}
	return st
}

func warmCondition(p *llmv1.LLMProvider, warm, total int) metav1.Condition {
	c := metav1.Condition{Type: llmv1.ConditionWarm, Status: metav1.ConditionTrue, Reason: llmv1.ReasonEndpointsWarm,
		Message: fmt.Sprintf("%d/%d endpoints warm", warm, total)}
	then := "calls wait until one is"
	if p.Spec.Fallback != nil {
		then = "calls go to fallback " + string(p.Spec.Fallback.Name)
	}
	switch {
	case total == 0:
		c.Status, c.Reason = metav1.ConditionFalse, llmv1.ReasonNoEndpoints
		c.Message = fmt.Sprintf("no pod in namespace %s matches spec.ollama.podSelector; %s", p.Spec.Ollama.Namespace, then)
	case warm == 0:
		c.Status, c.Reason = metav1.ConditionFalse, llmv1.ReasonNoWarmEndpoint
		c.Message = fmt.Sprintf("0/%d endpoints warm; %s", total, then)
	}
	return c
}

// fieldManagerCleanupRequest owns the manager's cleanup requests on pods
// (server-side apply, a field manager of its own).
const fieldManagerCleanupRequest = "llmquota-manager-cleanup-request"

// requestCleanups asks the node agent, through the pod's annotation, for a
// forced cleanup of each failing pod that has no request pending.
func (r *LLMProviderReconciler) requestCleanups(ctx context.Context, p *llmv1.LLMProvider, pods []*corev1.Pod, failing []string) {
	for _, name := range failing {
		for _, pod := range pods {
			if pod.Name != name {
				continue
			}
			requested := pod.Annotations[llmv1.AnnotationCleanupRequested]
			if requested != "" && requested != pod.Annotations[llmv1.AnnotationCleanupHandled] {
				continue // the agent has not handled the last one yet
			}
			value := r.Clock.Now().UTC().Format(time.RFC3339Nano)
			ask := corev1ac.Pod(pod.Name, pod.Namespace).WithAnnotations(map[string]string{llmv1.AnnotationCleanupRequested: value})
			if err := r.Apply(ctx, ask, client.FieldOwner(fieldManagerCleanupRequest), client.ForceOwnership); err != nil {
				logf.FromContext(ctx).Error(err, "Requesting a forced cleanup", "pod", client.ObjectKeyFromObject(pod))
				continue
			}
			r.Recorder.Eventf(p, pod, corev1.EventTypeWarning, "CleanupRequested", "RequestCleanup",
				"pod %s/%s answered %d calls in a row with server errors; asked its node agent for a forced cleanup", pod.Namespace, pod.Name, cleanupAfterErrors)
		}
	}
}

// poolsOfPod wakes the Ollama pools that select a changed pod.
func (r *LLMProviderReconciler) poolsOfPod(ctx context.Context, o client.Object) []reconcile.Request {
	pod, ok := o.(*corev1.Pod)
	if !ok {
		return nil
	}
	var list llmv1.LLMProviderList
	if err := r.List(ctx, &list); err != nil {
		logf.FromContext(ctx).Error(err, "Listing providers for a pod")
		return nil
	}
	var reqs []reconcile.Request
	for i := range list.Items {
		if ollamapod.Selects(&list.Items[i], pod) {
			reqs = append(reqs, reconcile.Request{NamespacedName: types.NamespacedName{Name: list.Items[i].Name}})
		}
	}
	return reqs
}

// SlimPod is the manager's cache transform for Pods. The manager watches
// pods only for Ollama pools; it keeps what they need (labels, the
// llmquota.dev annotations, node, IP, phase, the ModelWarm condition) and
// drops the rest, so a cluster-wide pod watch costs little memory.
func SlimPod(obj any) (any, error) {
	pod, ok := obj.(*corev1.Pod)
	if !ok {
		return obj, nil
	}
	slim := &corev1.Pod{TypeMeta: pod.TypeMeta, ObjectMeta: metav1.ObjectMeta{
		Name: pod.Name, Namespace: pod.Namespace, UID: pod.UID, ResourceVersion: pod.ResourceVersion,
		Labels: pod.Labels, DeletionTimestamp: pod.DeletionTimestamp,
	}}
	for k, v := range pod.Annotations {
		if strings.HasPrefix(k, "llmquota.dev/") {
			if slim.Annotations == nil {
				slim.Annotations = map[string]string{}
			}
			slim.Annotations[k] = v
		}
	}
	slim.Spec.NodeName = pod.Spec.NodeName
	slim.Status.Phase, slim.Status.PodIP = pod.Status.Phase, pod.Status.PodIP
	if c := ollamapod.WarmCondition(pod); c != nil {
		slim.Status.Conditions = []corev1.PodCondition{*c}
	}
	return slim, nil
}

// poolHTTPClient carries the calls to Ollama pods: one transport for every
// pool, keeping up to 16 idle connections to each pod.
func (r *LLMProviderReconciler) poolHTTPClient() *http.Client {
	if r.HTTPClient != nil {
		return r.HTTPClient
	}
	return ollamaHTTPClient
}

var ollamaHTTPClient = provider.NewHTTPClient(16)

package reconciler

import (
	"context"
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"sigs.k8s.io/controller-runtime/pkg/client"

	llmv1 "github.com/llmquota/llmquota/api/v1alpha1"
)

// selects reports whether an LLMProvider is an Ollama pool that selects pod.
func selects(p *llmv1.LLMProvider, pod *corev1.Pod) bool {
	o := p.Spec.Ollama
	if p.Spec.Type != llmv1.ProviderOllama || o == nil || o.Namespace != pod.Namespace {
		return false
	}
	sel, err := metav1.LabelSelectorAsSelector(&o.PodSelector)
	return err == nil && !sel.Empty() && sel.Matches(labels.Set(pod.Labels))
}

// poolFor returns the provider whose pool the pod serves. Should several
// select it, the first by name wins, so every agent restart picks the same.
func poolFor(providers []llmv1.LLMProvider, pod *corev1.Pod) *llmv1.LLMProvider {
	slices.SortFunc(providers, func(a, b llmv1.LLMProvider) int { return strings.Compare(a.Name, b.Name) })
	for i := range providers {
		if selects(&providers[i], pod) {
			return &providers[i]
		}
	}
	return nil
}

// EndpointOf is the pod's Ollama base URL: the override annotation, or
// the pod IP and the pool's port. "" while the pod has no IP.
func EndpointOf(pod *corev1.Pod, o *llmv1.OllamaSpec) string {
	if a := pod.Annotations[llmv1.AnnotationOllamaEndpoint]; a != "" {
		return a
	}
	if pod.Status.PodIP == "" {
		return ""
	}
	port := o.Port
	if port == 0 {
		port = 11434
	}
	return "http://" + net.JoinHostPort(pod.Status.PodIP, strconv.Itoa(int(port)))
}

// containersRunning reports whether every container of the pod runs, and
// if not, which does not.
func containersRunning(pod *corev1.Pod) (bool, string) {
	if pod.Status.Phase != corev1.PodRunning {
		return false, fmt.Sprintf("pod is %s", phaseOrPending(pod.Status.Phase))
	}
	if len(pod.Status.ContainerStatuses) < len(pod.Spec.Containers) {
		return false, "containers have not started"
	}
	for _, cs := range pod.Status.ContainerStatuses {
		if cs.State.Running == nil {
			return false, fmt.Sprintf("container %s is not running", cs.Name)
		}
	}
	return true, ""
}

func phaseOrPending(p corev1.PodPhase) corev1.PodPhase {
	if p == "" {
		return corev1.PodPending
	}
	return p
}

// podsOf lists the pods on this node that p selects, from the cache.
func (r *PodReconciler) podsOf(ctx context.Context, p *llmv1.LLMProvider) ([]corev1.Pod, error) {
	if p.Spec.Ollama == nil {
		return nil, nil
	}
	var list corev1.PodList
	if err := r.List(ctx, &list, client.InNamespace(p.Spec.Ollama.Namespace)); err != nil {
		return nil, err
	}
	var out []corev1.Pod
	for _, pod := range list.Items {
		if selects(p, &pod) {
			out = append(out, pod)
		}
	}
	return out, nil
}

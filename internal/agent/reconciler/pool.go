package reconciler

import (
	"context"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	llmv1 "github.com/llmquota/llmquota/api/v1alpha1"
	"github.com/llmquota/llmquota/internal/ollamapod"
)

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
		if ollamapod.Selects(p, &pod) {
			out = append(out, pod)
		}
	}
	return out, nil
}

package reconciler

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	logf "sigs.k8s.io/controller-runtime/pkg/log"

	llmv1 "github.com/llmquota/llmquota/api/v1alpha1"
	"github.com/llmquota/llmquota/internal/agent/ollama"
	"github.com/llmquota/llmquota/internal/ollamapod"
)

// warm loads the pool's model with the provider's warmup settings and
// records how it went in the pod's condition, an Event and the metrics.
// ok is false when every attempt failed.
func (r *PodReconciler) warm(ctx context.Context, pod *corev1.Pod, pool *llmv1.LLMProvider, c *ollama.Client, ep string, st *endpointState) (ok bool, err error) {
	model, w := pool.Spec.Model, pool.Spec.Ollama.Warmup
	attempts := int(max(1, w.Retries))
	keepAlive := llmv1.Seconds(w.KeepAliveSeconds, 30*time.Minute)
	if c := ollamapod.WarmCondition(pod); c == nil || c.Reason != llmv1.PodReasonWarmupFailed {
		// A failure stays on show while the next pass retries.
		if err := r.setWarm(ctx, pod, false, llmv1.PodReasonWarming, fmt.Sprintf("loading model %s on %s", model, ep)); err != nil {
			return false, err
		}
	}
	log := logf.FromContext(ctx).WithValues("model", model, "endpoint", ep)
	// Both counters exist from the first attempt, at 0, so increase() in
	// an alert sees the first failure (a series born at 1 shows none).
	warmups.WithLabelValues(pod.Namespace, pod.Name, model)
	warmupFailures.WithLabelValues(pod.Namespace, pod.Name, model)
	spec := ollama.Spec{Model: model, KeepAlive: keepAlive, ContextLength: int(ptr.Deref(pool.Spec.Ollama.ContextLength, 0))}
	warmed, werr := ollama.Warmup(ctx, c, r.Clock, spec, attempts, r.WarmupBackoff)
	if werr != nil {
		if ctx.Err() != nil {
			return false, ctx.Err() // the agent is stopping: not the pod's fault
		}
		warmupFailures.WithLabelValues(pod.Namespace, pod.Name, model).Inc()
		endpointWarm.WithLabelValues(pod.Namespace, pod.Name).Set(0)
		log.Error(werr, "gpu_warmup_failed", "attempts", attempts)
		r.Recorder.Eventf(pod, nil, corev1.EventTypeWarning, llmv1.PodReasonWarmupFailed, "Warmup", "%s", werr.Error())
		return false, r.setWarm(ctx, pod, false, llmv1.PodReasonWarmupFailed, werr.Error())
	}
	warmups.WithLabelValues(pod.Namespace, pod.Name, model).Inc()
	warmupLatency.WithLabelValues(model).Observe(warmed.Latency.Seconds())
	endpointWarm.WithLabelValues(pod.Namespace, pod.Name).Set(1)
	msg := fmt.Sprintf("model %s warm in %v on attempt %d of %d", model, warmed.Latency.Round(time.Millisecond), warmed.Attempt, attempts)
	if warmed.ContextLength > 0 {
		msg += fmt.Sprintf(", context %d tokens", warmed.ContextLength)
	}
	st.warmMessage = msg
	log.Info("gpu_warmup_success", "latency", warmed.Latency.Round(time.Millisecond).String(), "attempt", warmed.Attempt)
	r.Recorder.Eventf(pod, nil, corev1.EventTypeNormal, llmv1.PodReasonWarm, "Warmup", "%s", msg)
	return true, r.setWarm(ctx, pod, true, llmv1.PodReasonWarm, msg)
}

// setWarm writes the ModelWarm condition when it differs from the pod's,
// with a strategic merge patch of the status, which merges conditions by
// type and so leaves the kubelet's own untouched.
func (r *PodReconciler) setWarm(ctx context.Context, pod *corev1.Pod, warm bool, reason, message string) error {
	status := corev1.ConditionFalse
	if warm {
		status = corev1.ConditionTrue
	}
	if len(message) > 1024 {
		message = message[:1021] + "..."
	}
	old := ollamapod.WarmCondition(pod)
	if old != nil && old.Status == status && old.Reason == reason && old.Message == message {
		return nil
	}
	c := corev1.PodCondition{Type: llmv1.PodConditionModelWarm, Status: status, Reason: reason, Message: message,
		LastTransitionTime: metav1.NewTime(r.Clock.Now())}
	if old != nil && old.Status == status {
		c.LastTransitionTime = old.LastTransitionTime
	}
	if !warm {
		endpointWarm.WithLabelValues(pod.Namespace, pod.Name).Set(0)
	}
	return r.patchStatus(ctx, pod, map[string]any{"status": map[string]any{"conditions": []corev1.PodCondition{c}}})
}

// patchStatus sends a strategic merge patch to the pod's status
// subresource: the agent's only write to pods (its RBAC has pods/status
// patch, not pods patch). Annotations travel the same way.
func (r *PodReconciler) patchStatus(ctx context.Context, pod *corev1.Pod, patch map[string]any) error {
	data, err := json.Marshal(patch)
	if err != nil {
		return err
	}
	// A pod deleted meanwhile needs nothing more.
	return client.IgnoreNotFound(r.Status().Patch(ctx, pod, client.RawPatch(types.StrategicMergePatchType, data)))
}

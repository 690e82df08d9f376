package reconciler

import (
	"context"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	corev1ac "k8s.io/client-go/applyconfigurations/core/v1"
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

// setWarm writes the ModelWarm condition when it differs from the pod's.
// Pod conditions are a list keyed by type, so applying one leaves the
// kubelet's own untouched.
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
	return r.applyStatus(ctx, fieldManagerWarm, podApply(pod).WithStatus(corev1ac.PodStatus().WithConditions(
		corev1ac.PodCondition().WithType(c.Type).WithStatus(c.Status).WithReason(c.Reason).WithMessage(c.Message).
			WithLastTransitionTime(c.LastTransitionTime))))
}

// The agent's field managers, one per kind of write: under server-side
// apply a manager owns exactly the fields it applied last, so a write that
// shared a manager with another would remove the other's field.
const (
	fieldManagerWarm    = "llmquota-node-agent-warm"
	fieldManagerReport  = "llmquota-node-agent-report"
	fieldManagerCleanup = "llmquota-node-agent-cleanup"
)

// podApply is an empty apply configuration of pod.
func podApply(pod *corev1.Pod) *corev1ac.PodApplyConfiguration {
	return corev1ac.Pod(pod.Name, pod.Namespace)
}

// applyStatus applies the agent's fields through the pod's status
// subresource, server-side, as manager: the agent's only write to pods
// (its RBAC has pods/status patch, not pods patch). Annotations travel the
// same way. A subresource is never created by an apply, so a pod deleted
// meanwhile is NotFound, and needs nothing more.
func (r *PodReconciler) applyStatus(ctx context.Context, manager string, ac *corev1ac.PodApplyConfiguration) error {
	return client.IgnoreNotFound(r.Status().Apply(ctx, ac, client.FieldOwner(manager), client.ForceOwnership))
}

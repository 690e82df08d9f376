package reconciler

import (
	"context"
	"fmt"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	logf "sigs.k8s.io/controller-runtime/pkg/log"

	llmv1 "github.com/llmquota/llmquota/api/v1alpha1"
	"github.com/llmquota/llmquota/internal/agent/gpu"
	"github.com/llmquota/llmquota/internal/agent/ollama"
)

// cleanup runs the cleanup that is due, if any (see ollama.Policy.Decide).
// cleaned says whether models were unloaded; wait, how long until a
// cleanup held back by the minimum gap may run.
func (r *PodReconciler) cleanup(ctx context.Context, pod *corev1.Pod, pool *llmv1.LLMProvider, c *ollama.Client, st *endpointState, running []ollama.Running) (wait time.Duration, cleaned bool, err error) {
	now := r.Clock.Now()
	o := pool.Spec.Ollama
	if st.schedule.LastPeriodic.IsZero() {
		st.schedule.LastPeriodic = now // first sight: the first periodic cleanup is one interval away
	}
	models := st.tracker.Observe(now, running, r.PollInterval)
	requested := pod.Annotations[llmv1.AnnotationCleanupRequested]
	pressure := ollama.Pressure{Forced: requested != "" && requested != pod.Annotations[llmv1.AnnotationCleanupHandled]}
	devicesBefore, haveGPU := r.latestGPU()
	if haveGPU {
		pressure.NeedBytes = r.overBy(devicesBefore, o.GPUMemoryHighWatermark, pod.UID)
	}
	policy := ollama.Policy{Interval: cleanupInterval(o), MinGap: r.CleanupMinGap, Keep: pool.Spec.Model}
	trigger, unload, wait := policy.Decide(now, st.schedule, pressure, models)
	if trigger == "" {
		return wait, false, nil
	}
	st.schedule.Ran(now, trigger, len(unload))
	log := logf.FromContext(ctx).WithValues("trigger", trigger)
	if len(unload) > 0 {
		freed, uerr := ollama.Unload(ctx, c, unload)
		if uerr != nil {
			// Tried again after the minimum gap; a forced request stays
			// pending until it succeeds.
			log.Error(uerr, "Cleanup could not unload every model")
			r.Recorder.Eventf(pod, nil, corev1.EventTypeWarning, "CleanupFailed", "Cleanup", "%s cleanup: %v", trigger, uerr)
			return r.CleanupMinGap, true, nil
		}
		cleaned = true
		cleanups.WithLabelValues(string(trigger)).Inc()
		modelsUnloaded.WithLabelValues(string(trigger)).Add(float64(len(unload)))
		freedBytes.WithLabelValues(string(trigger)).Add(float64(freed))
		note := fmt.Sprintf("%s cleanup unloaded %s: %s freed per Ollama", trigger, modelNames(unload), size(freed))
		if after, ok := r.sampleGPU(); ok && haveGPU {
			// The memory came back: NVML's view before and after, node-wide.
			before, total := gpu.Totals(devicesBefore)
			used, _ := gpu.Totals(after)
			note += fmt.Sprintf("; GPU memory %s -> %s of %s", size(int64(before)), size(int64(used)), size(int64(total)))
		}
		log.Info("gpu_cleanup_done", "unloaded", modelNames(unload), "freed", size(freed))
		r.Recorder.Eventf(pod, nil, corev1.EventTypeNormal, "CleanedUp", "Cleanup", "%s", note)
	}
	if trigger == ollama.TriggerForced {
		if !cleaned {
			r.Recorder.Eventf(pod, nil, corev1.EventTypeNormal, "CleanedUp", "Cleanup", "Forced cleanup %q: no model was resident", requested)
		}
		// Recorded on the pod, so the request is acted on once, across
		// agent restarts too.
		err = r.applyStatus(ctx, fieldManagerCleanup, podApply(pod).WithAnnotations(map[string]string{llmv1.AnnotationCleanupHandled: requested}))
	}
	return 0, cleaned, err
}

func cleanupInterval(o *llmv1.OllamaSpec) time.Duration {
	if i := llmv1.Seconds(o.GPUCleanupIntervalSeconds, 0); i > 0 {
		return i
	}
	return 5 * time.Minute
}

func modelNames(ms []ollama.Model) string {
	names := make([]string, len(ms))
	for i, m := range ms {
		names[i] = m.Name
	}
	return strings.Join(names, ", ")
}

// size writes bytes for people: MiB below a GiB, GiB above.
func size(b int64) string {
	if b >= 1<<30 || b <= -(1<<30) {
		return fmt.Sprintf("%.1f GiB", float64(b)/(1<<30))
	}
	return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20))
}

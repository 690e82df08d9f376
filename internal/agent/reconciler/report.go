package reconciler

import (
	"context"
	"encoding/json"

	corev1 "k8s.io/api/core/v1"

	llmv1 "github.com/llmquota/llmquota/api/v1alpha1"
	"github.com/llmquota/llmquota/internal/agent/gpu"
	"github.com/llmquota/llmquota/internal/agent/ollama"
	"github.com/llmquota/llmquota/internal/ollamapod"
)

// reportStep is the smallest change in a GPU figure worth a write: the
// figures move a little all the time, and the status is for people.
const reportStep = 64 << 20

// report writes the pod's EndpointReport annotation when it changed by
// more than reportStep.
func (r *PodReconciler) report(ctx context.Context, pod *corev1.Pod, model string, running []ollama.Running) error {
	resident, _ := ollama.Resident(running, model)
	rep := llmv1.EndpointReport{Model: model, VRAMBytes: resident.VRAMBytes}
	if devices, ok := r.latestGPU(); ok {
		used, total := gpu.Totals(devices)
		rep.GPUMemoryUsedBytes, rep.GPUMemoryTotalBytes, rep.Source = int64(used), int64(total), llmv1.GPUSourceNVML
		if u, known := r.podUsage(pod.UID); known {
			rep.PodGPUMemoryBytes = int64(u.Bytes)
		}
	} else {
		for _, m := range running {
			rep.GPUMemoryUsedBytes += m.VRAMBytes
		}
		rep.Source = llmv1.GPUSourceOllama
	}
	if old, ok := ollamapod.Report(pod); ok && !differs(old, rep) {
		return nil
	}
	data, err := json.Marshal(rep)
	if err != nil {
		return err
	}
	return r.applyStatus(ctx, fieldManagerReport, podApply(pod).WithAnnotations(map[string]string{llmv1.AnnotationEndpointReport: string(data)}))
}

func differs(a, b llmv1.EndpointReport) bool {
	far := func(x, y int64) bool { return x-y >= reportStep || y-x >= reportStep }
	return a.Model != b.Model || a.Source != b.Source || a.GPUMemoryTotalBytes != b.GPUMemoryTotalBytes ||
		far(a.VRAMBytes, b.VRAMBytes) || far(a.GPUMemoryUsedBytes, b.GPUMemoryUsedBytes) ||
		(a.VRAMBytes == 0) != (b.VRAMBytes == 0) || far(a.PodGPUMemoryBytes, b.PodGPUMemoryBytes) ||
		(a.PodGPUMemoryBytes == 0) != (b.PodGPUMemoryBytes == 0)
}

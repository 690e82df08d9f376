package reconciler

import (
	"strconv"

	"github.com/prometheus/client_golang/prometheus"
	"sigs.k8s.io/controller-runtime/pkg/metrics"

	"github.com/llmquota/llmquota/internal/agent/gpu"
	"github.com/llmquota/llmquota/internal/agent/ollama"
)

// The agent's metrics, served on its /metrics. Pod labels are named
// ollama_namespace and ollama_pod so they do not clash with the labels
// Prometheus gives the agent's own pod when it scrapes it.
var (
	gpuUsed = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "llmquota_agent_gpu_memory_used_bytes",
		Help: "GPU memory in use, by node and GPU index (NVML).",
	}, []string{"node", "gpu"})
	gpuTotal = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "llmquota_agent_gpu_memory_total_bytes",
		Help: "GPU memory in all, by node and GPU index (NVML).",
	}, []string{"node", "gpu"})
	gpuFree = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "llmquota_agent_gpu_memory_free_bytes",
		Help: "GPU memory free, by node and GPU index (NVML).",
	}, []string{"node", "gpu"})
	gpuReserved = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "llmquota_agent_gpu_memory_reserved_bytes",
		Help: "GPU memory held by the driver and firmware, by node and GPU index (NVML memory v2; 0 where only v1 exists).",
	}, []string{"node", "gpu"})
	gpuUtilization = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "llmquota_agent_gpu_utilization_ratio",
		Help: "Share of the last sample period the GPU was busy, 0-1, by node and GPU index (absent where the device does not say).",
	}, []string{"node", "gpu"})
	gpuProcessMemory = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "llmquota_agent_gpu_process_memory_bytes",
		Help: "GPU memory used by each compute process, by node, GPU index and host PID, where NVML reports it.",
	}, []string{"node", "gpu", "pid"})
	podGPUMemory = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "llmquota_agent_pod_gpu_memory_bytes",
		Help: "GPU memory held by each pod's processes, by node, pod namespace, pod name and GPU index (NVML's compute processes mapped to pods through their cgroups; needs the node's /proc, --proc-root).",
		// pod_namespace and pod_name, not namespace and pod: a PodMonitor
		// sets those to the agent's own pod, renaming ours exported_*.
	}, []string{"node", "pod_namespace", "pod_name", "gpu"})
	nvmlAvailable = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "llmquota_agent_nvml_available",
		Help: "1 when the agent reads the GPUs through NVML, 0 when it falls back to Ollama's /api/ps.",
	}, []string{"node"})

	warmups = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "llmquota_agent_warmups_total",
		Help: "Successful warmups, by Ollama pod and model.",
	}, []string{"ollama_namespace", "ollama_pod", "model"})
	warmupFailures = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "llmquota_agent_warmup_failures_total",
		Help: "Warmups that failed after all their attempts, by Ollama pod and model.",
	}, []string{"ollama_namespace", "ollama_pod", "model"})
	warmupLatency = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "llmquota_agent_warmup_latency_seconds",
		Help:    "Load time of the successful warmup attempt, by model.",
		Buckets: []float64{.05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 120},
	}, []string{"model"})
	endpointWarm = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "llmquota_agent_endpoint_warm",
		Help: "1 while the Ollama pod's model is warm, 0 while it is not.",
	}, []string{"ollama_namespace", "ollama_pod"})
	cleanups = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "llmquota_agent_cleanups_total",
		Help: "Cleanups that unloaded at least one model, by trigger (Periodic, Watermark, Forced).",
	}, []string{"trigger"})
	modelsUnloaded = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "llmquota_agent_models_unloaded_total",
		Help: "Models unloaded by cleanups, by trigger.",
	}, []string{"trigger"})
	freedBytes = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "llmquota_agent_cleanup_freed_bytes_total",
		Help: "Memory the unloaded models held (VRAM, or RAM on a CPU server), as Ollama's /api/ps reported it, by trigger.",
	}, []string{"trigger"})
)

// agentMetrics are the node agent's metrics.
var agentMetrics = []prometheus.Collector{gpuUsed, gpuTotal, gpuFree, gpuReserved, gpuUtilization, gpuProcessMemory, podGPUMemory, nvmlAvailable,
	warmups, warmupFailures, warmupLatency, endpointWarm, cleanups, modelsUnloaded, freedBytes}

func init() {
	metrics.Registry.MustRegister(agentMetrics...)
	// Every trigger's counters exist from the start, at 0, so a dashboard
	// shows "none yet" rather than no data, and increase() sees the first.
	for _, t := range []ollama.Trigger{ollama.TriggerPeriodic, ollama.TriggerWatermark, ollama.TriggerForced} {
		for _, c := range []*prometheus.CounterVec{cleanups, modelsUnloaded, freedBytes} {
			c.WithLabelValues(string(t))
		}
	}
}

// publishGPU sets the GPU gauges from a sample. Series of processes that
// ended are dropped.
func publishGPU(node string, devices []gpu.Device, ok bool) {
	nvmlAvailable.WithLabelValues(node).Set(boolFloat(ok))
	gpuProcessMemory.Reset()
	for _, d := range devices {
		idx := strconv.Itoa(d.Index)
		gpuUsed.WithLabelValues(node, idx).Set(float64(d.UsedBytes))
		gpuTotal.WithLabelValues(node, idx).Set(float64(d.TotalBytes))
		gpuFree.WithLabelValues(node, idx).Set(float64(d.FreeBytes))
		gpuReserved.WithLabelValues(node, idx).Set(float64(d.ReservedBytes))
		if d.UtilizationPercent >= 0 {
			gpuUtilization.WithLabelValues(node, idx).Set(float64(d.UtilizationPercent) / 100)
		}
		for _, p := range d.Processes {
			gpuProcessMemory.WithLabelValues(node, idx, strconv.FormatUint(uint64(p.PID), 10)).Set(float64(p.UsedBytes))
		}
	}
}

func boolFloat(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

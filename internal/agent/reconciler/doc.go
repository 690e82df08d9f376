// Package reconciler is the node agent's Kubernetes side. It watches the
// Pods on its own node that an Ollama LLMProvider selects and, for each:
// keeps the pool's model warm (and says so in the pod's
// llmquota.dev/ModelWarm condition, a readiness gate), cleans up idle
// models on the provider's schedule, over its GPU memory high watermark or
// on request, and reports the pod's model and the node's GPU memory in an
// annotation the manager reads into the LLMProvider's status.
//
// The decisions themselves (when to clean up, what goes) live in
// internal/agent/ollama and the GPU reading in internal/agent/gpu; this
// package wires them to Pods, Events and metrics.
package reconciler

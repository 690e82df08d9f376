// Package ollamapod holds what the manager and the node agent both need to
// know about an Ollama pool's pods: which pods an LLMProvider selects, the
// address of a pod's Ollama API, and its ModelWarm condition. It has no
// GPU or Ollama dependencies, so the manager stays a static binary.
package ollamapod

import (
	"encoding/json"
	"net"
	"slices"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"

	llmv1 "github.com/llmquota/llmquota/api/v1alpha1"
)

// DefaultPort is Ollama's API port.
const DefaultPort = 11434

// IsPool reports whether p is an Ollama pool of pods (rather than one
// Ollama server at spec.endpoint).
func IsPool(p *llmv1.LLMProvider) bool {
	return p.Spec.Type == llmv1.ProviderOllama && p.Spec.Ollama != nil
}

// Selects reports whether the Ollama pool p selects pod. An empty selector
// selects nothing: a pool must say which pods are its own.
func Selects(p *llmv1.LLMProvider, pod *corev1.Pod) bool {
	if !IsPool(p) || p.Spec.Ollama.Namespace != pod.Namespace {
		return false
	}
	sel, err := metav1.LabelSelectorAsSelector(&p.Spec.Ollama.PodSelector)
	return err == nil && !sel.Empty() && sel.Matches(labels.Set(pod.Labels))
}

// PoolOf returns the provider whose pool the pod serves. Should several
// select it, the first by name wins, so the choice never flips.
func PoolOf(providers []llmv1.LLMProvider, pod *corev1.Pod) *llmv1.LLMProvider {
	slices.SortFunc(providers, func(a, b llmv1.LLMProvider) int { return strings.Compare(a.Name, b.Name) })
	for i := range providers {
		if Selects(&providers[i], pod) {
			return &providers[i]
		}
	}
	return nil
}

// Endpoint is the pod's Ollama base URL: the override annotation, or the
// pod IP and the pool's port; "" while the pod has no IP.
func Endpoint(pod *corev1.Pod, o *llmv1.OllamaSpec) string {
	if a := pod.Annotations[llmv1.AnnotationOllamaEndpoint]; a != "" {
		return a
	}
	if pod.Status.PodIP == "" {
		return ""
	}
	port := int(o.Port)
	if port == 0 {
		port = DefaultPort
	}
	return "http://" + net.JoinHostPort(pod.Status.PodIP, strconv.Itoa(port))
}

// WarmCondition returns the pod's ModelWarm condition, or nil.
func WarmCondition(pod *corev1.Pod) *corev1.PodCondition {
	for i := range pod.Status.Conditions {
		if pod.Status.Conditions[i].Type == llmv1.PodConditionModelWarm {
			return &pod.Status.Conditions[i]
		}
	}
	return nil
}

// IsWarm reports whether the agent says the pod's model is warm.
func IsWarm(pod *corev1.Pod) bool {
	c := WarmCondition(pod)
	return c != nil && c.Status == corev1.ConditionTrue && pod.DeletionTimestamp == nil
}

// Report returns the node agent's EndpointReport for the pod; ok is false
// when there is none, or it does not parse.
func Report(pod *corev1.Pod) (r llmv1.EndpointReport, ok bool) {
	raw := pod.Annotations[llmv1.AnnotationEndpointReport]
	if raw == "" || json.Unmarshal([]byte(raw), &r) != nil {
		return llmv1.EndpointReport{}, false
	}
	return r, true
}

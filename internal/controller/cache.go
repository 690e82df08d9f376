package controller

import (
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// CacheOptions are the manager's cache settings: Pods slimmed by SlimPod
// and, when podNamespaces is not empty, watched only there; when
// secretNamespaces is not empty, the Secret watch limited to those
// namespaces. The manager then needs access there only (the chart's
// manager.ollamaNamespaces and manager.secretNamespaces).
func CacheOptions(secretNamespaces, podNamespaces []string) cache.Options {
	byObject := map[client.Object]cache.ByObject{
		&corev1.Pod{}: {Transform: SlimPod, Namespaces: only(podNamespaces)},
	}
	if len(secretNamespaces) > 0 {
		secretMeta := &metav1.PartialObjectMetadata{}
		secretMeta.SetGroupVersionKind(corev1.SchemeGroupVersion.WithKind("Secret"))
		byObject[&corev1.Secret{}] = cache.ByObject{Namespaces: only(secretNamespaces)}
		byObject[secretMeta] = cache.ByObject{Namespaces: only(secretNamespaces)}
	}
	return cache.Options{ByObject: byObject}
}

// only is a cache restriction to namespaces; nil (all) when there are none.
func only(namespaces []string) map[string]cache.Config {
	if len(namespaces) == 0 {
		return nil
	}
	m := map[string]cache.Config{}
	for _, ns := range namespaces {
		m[ns] = cache.Config{}
	}
	return m
}

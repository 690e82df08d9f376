package controller

import (
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// CacheOptions are the manager's cache settings: Pods slimmed by SlimPod,
// and, when secretNamespaces is not empty, the Secret watch limited to
// those namespaces, so the manager needs Secret access there only (the
// chart's manager.secretNamespaces).
func CacheOptions(secretNamespaces []string) cache.Options {
	byObject := map[client.Object]cache.ByObject{
		&corev1.Pod{}: {Transform: SlimPod},
	}
	if len(secretNamespaces) > 0 {
		only := map[string]cache.Config{}
		for _, ns := range secretNamespaces {
			only[ns] = cache.Config{}
		}
		secretMeta := &metav1.PartialObjectMetadata{}
		secretMeta.SetGroupVersionKind(corev1.SchemeGroupVersion.WithKind("Secret"))
		byObject[&corev1.Secret{}] = cache.ByObject{Namespaces: only}
		byObject[secretMeta] = cache.ByObject{Namespaces: only}
	}
	return cache.Options{ByObject: byObject}
}

package controller

import (
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	llmv1 "github.com/llmquota/llmquota/api/v1alpha1"
	"github.com/llmquota/llmquota/internal/results"
)

// lastApplied is kubectl's annotation holding the whole applied object.
const lastApplied = "kubectl.kubernetes.io/last-applied-configuration"

// CacheOptions are the manager's cache settings: every object without its
// managedFields; InferenceBatches without their inline items (SlimBatch);
// result ConfigMaps as metadata only, so a batch's shards are found
// without an API call; Pods slimmed by SlimPod and, when podNamespaces is
// not empty, watched only there; when secretNamespaces is not empty, the
// Secret watch limited to those namespaces. The manager then needs access
// there only (the chart's manager.ollamaNamespaces and
// manager.secretNamespaces).
func CacheOptions(secretNamespaces, podNamespaces []string) cache.Options {
	resultMeta := &metav1.PartialObjectMetadata{}
	resultMeta.SetGroupVersionKind(corev1.SchemeGroupVersion.WithKind("ConfigMap"))
	byObject := map[client.Object]cache.ByObject{
		&corev1.Pod{}:           {Transform: SlimPod, Namespaces: only(podNamespaces)},
		&llmv1.InferenceBatch{}: {Transform: SlimBatch},
		resultMeta:              {Label: labels.SelectorFromSet(labels.Set{results.LabelResults: "true"})},
	}
	if len(secretNamespaces) > 0 {
		secretMeta := &metav1.PartialObjectMetadata{}
		secretMeta.SetGroupVersionKind(corev1.SchemeGroupVersion.WithKind("Secret"))
		byObject[&corev1.Secret{}] = cache.ByObject{Namespaces: only(secretNamespaces)}
		byObject[secretMeta] = cache.ByObject{Namespaces: only(secretNamespaces)}
	}
	return cache.Options{ByObject: byObject, DefaultTransform: cache.TransformStripManagedFields()}
}

// SlimBatch is the cache transform of InferenceBatches: it drops
// managedFields and the last-applied annotation (which repeats the items),
// and, once the batch was admitted (status.startTime is set), its inline
// items. A new batch keeps its items until its admission reads them; after
// that a thousand 1,000-item batches cost the cache their status, not
// their prompts, and an admission again (a restart) reads them uncached.
// Nothing may write a cached batch's spec back.
func SlimBatch(obj any) (any, error) {
	b, ok := obj.(*llmv1.InferenceBatch)
	if !ok {
		return obj, nil
	}
	b.ManagedFields = nil
	if b.Status.StartTime != nil {
		b.Spec.Items = nil
	}
	if _, ok := b.Annotations[lastApplied]; ok {
		a := make(map[string]string, len(b.Annotations)-1)
		for k, v := range b.Annotations {
			if k != lastApplied {
				a[k] = v
			}
		}
		b.Annotations = a
	}
	return b, nil
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

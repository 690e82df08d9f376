package controller

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	logf "sigs.k8s.io/controller-runtime/pkg/log"

	llmv1 "github.com/llmquota/llmquota/api/v1alpha1"
	"github.com/llmquota/llmquota/internal/batchrun"
	"github.com/llmquota/llmquota/internal/dispatch"
	"github.com/llmquota/llmquota/internal/items"
	"github.com/llmquota/llmquota/internal/results"
)

// errInvalidItems marks problems with the batch's items that only a fix
// by the user resolves.
var errInvalidItems = errors.New("invalid items")

// errStopping says the manager is stopping: nothing new is launched.
var errStopping = errors.New("the manager is stopping")

// loadItems returns the batch's items, inline, from its ConfigMap or from
// object storage. The
// cache keeps batches without their inline items (see CacheOptions), so
// they are read here, once per admission, uncached.
func (r *InferenceBatchReconciler) loadItems(ctx context.Context, b *llmv1.InferenceBatch) ([]items.Item, error) {
	if b.Spec.ItemsFrom == nil {
		var whole llmv1.InferenceBatch
		if err := r.APIReader.Get(ctx, client.ObjectKeyFromObject(b), &whole); err != nil {
			return nil, err
		}
		out := make([]items.Item, len(whole.Spec.Items))
		for i, it := range whole.Spec.Items {
			out[i] = items.Item{ID: it.ID, Prompt: it.Prompt, Score: string(it.Score)}
		}
		return out, nil
	}
	if b.Spec.ItemsFrom.S3 != nil {
		return r.loadS3Items(ctx, b)
	}
	ref := b.Spec.ItemsFrom.ConfigMapKeyRef
	var cm corev1.ConfigMap
	// Read uncached: a cached Get would start a cluster-wide ConfigMap informer.
	if err := r.APIReader.Get(ctx, types.NamespacedName{Namespace: b.Namespace, Name: string(ref.Name)}, &cm); err != nil {
		if apierrors.IsNotFound(err) {
			return nil, fmt.Errorf("%w: ConfigMap %q named by spec.itemsFrom does not exist", errInvalidItems, ref.Name)
		}
		return nil, err
	}
	data, ok := cm.Data[ref.Key]
	if !ok {
		return nil, fmt.Errorf("%w: ConfigMap %q has no key %q", errInvalidItems, ref.Name, ref.Key)
	}
	list, err := items.ParseJSONL([]byte(data))
	if err != nil {
		return nil, fmt.Errorf("%w: ConfigMap %s key %s: %w", errInvalidItems, ref.Name, ref.Key, err)
	}
	return list, nil
}

// admit loads and filters the items, records the filtered and cached ones,
// and hands what has no result yet to the provider's dispatcher. A batch
// admitted again (its provider's dispatcher was replaced) keeps its store,
// results waiting for their write included.
func (r *InferenceBatchReconciler) admit(ctx context.Context, b *llmv1.InferenceBatch, d *dispatch.Dispatcher, prev *batchrun.Run) (*batchrun.Run, error) {
	log := logf.FromContext(ctx)
	all, err := r.loadItems(ctx, b)
	if err != nil {
		return nil, err
	}
	kept, filtered, err := items.Filter(all, string(b.Spec.MinScore))
	if err != nil {
		return nil, fmt.Errorf("%w: %w", errInvalidItems, err)
	}
	log.Info("batch_prefilter", "original", len(all), "kept", len(kept), "filtered", len(filtered),
		"reduction", fmt.Sprintf("%d%%", items.Reduction(len(all), len(filtered))))

	var store results.Sink
	var policy *results.FlushPolicy
	if prev != nil {
		store, policy = prev.Store, prev.Policy
	} else if store, policy, err = r.openSink(ctx, b); err != nil {
		return nil, err
	}
	for _, it := range filtered {
		store.Add(results.Result{ID: it.ID, Status: results.Filtered})
	}
	params := paramsOf(b)
	keyOf := func(prompt string) string { return cacheKey(params, prompt) }
	if b.Spec.Cache == llmv1.CacheEnabled {
		if err := r.reuseCached(ctx, b, store, kept, keyOf); err != nil {
			return nil, err
		}
	}

	var pending []dispatch.Item
	for _, it := range kept {
		if !store.Has(it.ID) {
			pending = append(pending, dispatch.Item{ID: it.ID, Prompt: it.Prompt})
		}
	}
	size := int(max(1, b.Spec.BatchSize))
	run := r.Runtime.Launch(batchrun.Spec{
		Key: client.ObjectKeyFromObject(b), Store: store, Policy: policy, Dispatcher: d, CacheKey: keyOf,
		Kept: len(kept), Filtered: len(filtered), Total: len(all),
		Batch: dispatch.Batch{
			Namespace: b.Namespace, Priority: b.Spec.Priority, Size: size, Delay: durationOf(b.Spec.BatchDelay),
			GroupsDone: (len(kept) - len(pending)) / size, Params: params, Items: pending,
		},
	})
	if run == nil {
		return nil, errStopping
	}
	d.Suspend(run.Key.String(), b.Spec.Suspend)
	return run, nil
}

func paramsOf(b *llmv1.InferenceBatch) dispatch.Params {
	p := dispatch.Params{Model: b.Spec.Model, System: b.Spec.System, Temperature: string(b.Spec.Temperature)}
	if b.Spec.MaxTokens != nil {
		p.MaxTokens = *b.Spec.MaxTokens
	}
	return p
}

// cacheKey identifies a call by everything that shapes its answer.
func cacheKey(p dispatch.Params, prompt string) string {
	h := sha256.New()
	for _, s := range []string{p.Model, p.System, fmt.Sprint(p.MaxTokens), p.Temperature, prompt} {
		h.Write([]byte(s))
		h.Write([]byte{0})
	}
	return hex.EncodeToString(h.Sum(nil))[:32]
}

// reuseCached records, as cached, every kept item whose cache key matches a
// successful result stored by any batch of the namespace.
func (r *InferenceBatchReconciler) reuseCached(ctx context.Context, b *llmv1.InferenceBatch, store results.Sink, kept []items.Item, keyOf func(prompt string) string) error {
	var list corev1.ConfigMapList
	if err := r.APIReader.List(ctx, &list, client.InNamespace(b.Namespace), client.MatchingLabels{results.LabelResults: "true"}); err != nil {
		return err
	}
	known := map[string]results.Result{}
	for _, cm := range list.Items {
		for _, res := range results.Parse([]byte(cm.Data[results.DataKey])) {
			if res.CacheKey != "" && (res.Status == results.Succeeded || res.Status == results.Cached) {
				known[res.CacheKey] = res
			}
		}
	}
	for _, it := range kept {
		if store.Has(it.ID) {
			continue
		}
		if hit, ok := known[keyOf(it.Prompt)]; ok {
			store.Add(results.Result{ID: it.ID, Status: results.Cached, Output: hit.Output, TokensIn: hit.TokensIn,
				TokensOut: hit.TokensOut, Provider: hit.Provider, CacheKey: hit.CacheKey})
		}
	}
	return nil
}

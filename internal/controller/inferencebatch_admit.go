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

// loadItems returns the batch's items, inline or from its ConfigMap. The
// cache drops a batch's inline items once it was admitted (SlimBatch), so
// a batch admitted again reads them here, uncached.
func (r *InferenceBatchReconciler) loadItems(ctx context.Context, b *llmv1.InferenceBatch) ([]items.Item, error) {
	if b.Spec.ItemsFrom == nil {
		whole := b
		if len(b.Spec.Items) == 0 {
			whole = &llmv1.InferenceBatch{}
			if err := r.APIReader.Get(ctx, client.ObjectKeyFromObject(b), whole); err != nil {
				return nil, err
			}
		}
		out := make([]items.Item, len(whole.Spec.Items))
		for i, it := range whole.Spec.Items {
			out[i] = items.Item{ID: it.ID, Prompt: it.Prompt, Score: string(it.Score)}
		}
		return out, nil
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

// input is what admission learned of a batch's items.
type input struct {
	total, kept int
	// filtered are the ids below minScore.
	filtered []string
	// items are the kept items when they are held (inline, ConfigMap).
	items []items.Item
	// stream, for items in object storage, reads the kept items again, in
	// order, as the batch runs; each returns false to stop.
	stream func(ctx context.Context, each func(items.Item) bool) error
}

// source streams the items in object storage that still need a call
// (send) into a run, none twice across reads after a break; nil for items
// held in the batch.
func (in input) source(send func(items.Item) bool) func(ctx context.Context, emit func(dispatch.Item) bool) error {
	if in.stream == nil {
		return nil
	}
	sent := map[string]bool{} // ids handed over, so a read after a break sends none twice
	return func(ctx context.Context, emit func(dispatch.Item) bool) error {
		return in.stream(ctx, func(it items.Item) bool {
			if sent[it.ID] || !send(it) {
				return true
			}
			sent[it.ID] = true
			return emit(dispatch.Item{ID: it.ID, Prompt: it.Prompt})
		})
	}
}

// input loads the batch's items, or for object storage counts them in one
// streamed pass, and splits them by minScore.
func (r *InferenceBatchReconciler) input(ctx context.Context, b *llmv1.InferenceBatch) (input, error) {
	keeps, err := items.Threshold(string(b.Spec.MinScore))
	if err != nil {
		return input{}, fmt.Errorf("%w: %w", errInvalidItems, err)
	}
	if b.Spec.ItemsFrom != nil && b.Spec.ItemsFrom.S3 != nil {
		return r.scanS3Items(ctx, b, keeps)
	}
	all, err := r.loadItems(ctx, b)
	if err != nil {
		return input{}, err
	}
	in := input{total: len(all)}
	for _, it := range all {
		ok, err := keeps(it)
		if err != nil {
			return input{}, fmt.Errorf("%w: %w", errInvalidItems, err)
		}
		if ok {
			in.items = append(in.items, it)
		} else {
			in.filtered = append(in.filtered, it.ID)
		}
	}
	in.kept = len(in.items)
	return in, nil
}

// admit loads and filters the items, records the filtered and cached ones,
// and hands what has no result yet to the provider's dispatcher: held
// items at once, items in object storage as a stream while the batch
// runs. A batch admitted again (its provider's dispatcher was replaced)
// keeps its store, results waiting for their write included.
func (r *InferenceBatchReconciler) admit(ctx context.Context, b *llmv1.InferenceBatch, p *llmv1.LLMProvider, d *dispatch.Dispatcher,
	prev *batchrun.Run, priority int32) (*batchrun.Run, error) {
	in, err := r.input(ctx, b)
	if err != nil {
		return nil, err
	}
	logf.FromContext(ctx).Info("batch_prefilter", "original", in.total, "kept", in.kept, "filtered", len(in.filtered),
		"reduction", fmt.Sprintf("%d%%", items.Reduction(in.total, len(in.filtered))))

	var store results.Sink
	var policy *results.FlushPolicy
	if prev != nil {
		store, policy = prev.Store, prev.Policy
	} else if store, policy, err = r.openSink(ctx, b); err != nil {
		return nil, err
	} else if n := r.Runtime.Recover(b.UID, store); n > 0 {
		logf.FromContext(ctx).Info("Took back answers from the results journal", "answers", n)
	}
	for _, id := range in.filtered {
		store.Add(results.Result{ID: id, Status: results.Filtered})
	}
	params := paramsOf(b)
	keyOf := func(prompt string) string { return cacheKey(params, prompt) }
	send, err := r.needsCall(ctx, b, store, keyOf)
	if err != nil {
		return nil, err
	}
	size := int(max(1, b.Spec.BatchSize))
	spec := batchrun.Spec{
		Key: client.ObjectKeyFromObject(b), UID: b.UID, Provider: providerOwner(p), Store: store, Policy: policy, Dispatcher: d, CacheKey: keyOf,
		Kept: in.kept, Filtered: len(in.filtered), Total: in.total, Source: in.source(send),
		Batch: dispatch.Batch{Namespace: b.Namespace, Priority: priority, Size: size, Delay: llmv1.Milliseconds(b.Spec.BatchDelayMilliseconds, 0), Params: params},
	}
	spec.Batch.Items = make([]dispatch.Item, 0, len(in.items))
	for _, it := range in.items {
		if send(it) {
			spec.Batch.Items = append(spec.Batch.Items, dispatch.Item{ID: it.ID, Prompt: it.Prompt})
		}
	}
	spec.Batch.GroupsDone = itemsDone(store) / size // the cache hits just recorded included
	run := r.Runtime.Launch(spec)
	if run == nil {
		return nil, errStopping
	}
	d.Adjust(run.Key.String(), b.Spec.Suspend, priority)
	return run, nil
}

// needsCall returns what says whether an item still needs a call: not when
// it has a stored result, nor when (with spec.cache Enabled) an earlier
// result of the namespace answers it, which it records as cached.
func (r *InferenceBatchReconciler) needsCall(ctx context.Context, b *llmv1.InferenceBatch, store results.Sink,
	keyOf func(string) string) (func(items.Item) bool, error) {
	var known map[string]results.Result
	if b.Spec.Cache == llmv1.CacheEnabled {
		var err error
		if known, err = r.knownResults(ctx, b.Namespace); err != nil {
			return nil, err
		}
	}
	return func(it items.Item) bool {
		if store.Has(it.ID) {
			return false
		}
		if known == nil {
			return true
		}
		if hit, ok := known[keyOf(it.Prompt)]; ok {
			store.Add(results.Result{ID: it.ID, Status: results.Cached, Output: hit.Output, TokensIn: hit.TokensIn,
				TokensOut: hit.TokensOut, Provider: hit.Provider, CacheKey: hit.CacheKey})
			return false
		}
		return true
	}, nil
}

// itemsDone counts the stored results of items that were kept (sent or
// cached), for the groups a batch admitted again has done.
func itemsDone(store results.Sink) int {
	done := 0
	for status, n := range store.Counts() {
		if status != results.Filtered {
			done += int(n)
		}
	}
	return done
}

func paramsOf(b *llmv1.InferenceBatch) dispatch.Params {
	p := dispatch.Params{Model: b.Spec.Model, System: b.Spec.System, Temperature: string(b.Spec.Temperature),
		ThinkingBudget: b.Spec.ThinkingBudget, TruncatedFails: b.Spec.TreatTruncatedAs == "Failed"}
	if b.Spec.MaxTokens != nil {
		p.MaxTokens = *b.Spec.MaxTokens
	}
	return p
}

// cacheKey identifies a call by everything that shapes its answer.
func cacheKey(p dispatch.Params, prompt string) string {
	h := sha256.New()
	parts := []string{p.Model, p.System, fmt.Sprint(p.MaxTokens), p.Temperature, prompt}
	if p.ThinkingBudget != nil { // only then, so the keys of results stored before stay the same
		parts = append(parts, fmt.Sprint(*p.ThinkingBudget))
	}
	for _, s := range parts {
		h.Write([]byte(s))
		h.Write([]byte{0})
	}
	return hex.EncodeToString(h.Sum(nil))[:32]
}

// knownResults are the successful results stored by the batches of a
// namespace with the ConfigMap sink, by cache key.
func (r *InferenceBatchReconciler) knownResults(ctx context.Context, namespace string) (map[string]results.Result, error) {
	var list corev1.ConfigMapList
	if err := r.APIReader.List(ctx, &list, client.InNamespace(namespace), client.MatchingLabels{results.LabelResults: "true"}); err != nil {
		return nil, err
	}
	known := map[string]results.Result{}
	for _, cm := range list.Items {
		for _, res := range results.Parse([]byte(cm.Data[results.DataKey])) {
			if res.CacheKey != "" && (res.Status == results.Succeeded || res.Status == results.Cached) {
				known[res.CacheKey] = res
			}
		}
	}
	return known, nil
}

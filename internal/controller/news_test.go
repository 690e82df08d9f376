package controller

import (
	"context"
	"slices"
	"testing"

	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/controller/priorityqueue"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"github.com/llmquota/llmquota/internal/batchrun"
)

// TestNewsQueuesEndsFirstAndProgressLast: in the controller's priority
// queue, a batch whose results are all stored goes first, then one whose
// results were stored, then admissions (queued at the informer's
// priority, 0), and progress refreshes wait behind all, whatever the
// order they arrived in.
func TestNewsQueuesEndsFirstAndProgressLast(t *testing.T) {
	q := priorityqueue.New[reconcile.Request]("news-test")
	defer q.ShutDown()
	key := func(name string) types.NamespacedName { return types.NamespacedName{Namespace: "ns", Name: name} }
	news := func(name string, kind batchrun.NewsKind) {
		newsHandler().Generic(context.Background(), event.TypedGenericEvent[batchrun.News]{Object: batchrun.News{Key: key(name), Kind: kind}}, q)
	}
	news("progress", batchrun.Progress)
	q.Add(reconcile.Request{NamespacedName: key("admission")})
	news("stored", batchrun.Stored)
	news("end", batchrun.Final)

	var got []string
	for q.Len() > 0 {
		req, _, _ := q.GetWithPriority()
		got = append(got, req.Name)
		q.Done(req)
	}
	want := []string{"end", "stored", "admission", "progress"}
	if !slices.Equal(got, want) {
		t.Fatalf("served %v, want %v", got, want)
	}
}

package controller

import (
	"context"
	"slices"
	"testing"

	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/controller/priorityqueue"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	llmv1 "github.com/llmquota/llmquota/api/v1alpha1"
	"github.com/llmquota/llmquota/internal/batchrun"
)

// TestNewsQueuesEndsFirstAndProgressLast: in the controller's priority
// queue, a batch whose results are all stored goes ahead of admissions
// (queued at the informer's priority, 0), and progress refreshes wait
// behind both, whatever the order they arrived in.
func TestNewsQueuesEndsFirstAndProgressLast(t *testing.T) {
	q := priorityqueue.New[reconcile.Request]("news-test")
	defer q.ShutDown()
	key := func(name string) types.NamespacedName { return types.NamespacedName{Namespace: "ns", Name: name} }
	news := func(name string, final bool) {
		newsHandler().Generic(context.Background(), event.TypedGenericEvent[*llmv1.InferenceBatch]{Object: batchrun.News(key(name), final)}, q)
	}
	news("progress", false)
	q.Add(reconcile.Request{NamespacedName: key("admission")})
	news("end", true)

	var got []string
	for q.Len() > 0 {
		req, _, _ := q.GetWithPriority()
		got = append(got, req.Name)
		q.Done(req)
	}
	want := []string{"end", "admission", "progress"}
	if !slices.Equal(got, want) {
		t.Fatalf("served %v, want %v", got, want)
	}
}

package authority

import (
	"context"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"

	"github.com/llmquota/llmquota/internal/testbed/apiserver"
)

// TestLeaseResolverFindsTheLeader: against a real API server, the leader is
// the Lease holder's pod, found at its IP; after Forget a new leader is
// found.
func TestLeaseResolverFindsTheLeader(t *testing.T) {
	c := apiserver.Start(t)
	ctx := context.Background()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "llmquota-system"}}))
	lease := &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Namespace: "llmquota-system", Name: "manager.llmquota.dev"}}
	must(c.Create(ctx, lease))
	now := time.Date(2026, 12, 7, 6, 0, 0, 0, time.UTC)
	r := &LeaseResolver{Client: c, Lease: types.NamespacedName{Namespace: "llmquota-system", Name: "manager.llmquota.dev"}, Port: 8444,
		Recheck: 5 * time.Second, Now: func() time.Time { return now }}
	if _, err := r.URL(ctx); err == nil {
		t.Fatal("a Lease without a holder named a leader")
	}
	for _, p := range []struct{ name, ip string }{{"manager-a", "10.0.0.7"}, {"manager-b", "fd00::9"}} {
		pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "llmquota-system", Name: p.name},
			Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "manager", Image: "manager"}}}}
		must(c.Create(ctx, pod))
		pod.Status.PodIP = p.ip
		must(c.Status().Update(ctx, pod))
	}
	lease.Spec.HolderIdentity = ptr.To("manager-a_4f1c2d3e-0000-4000-8000-000000000000")
	must(c.Update(ctx, lease))
	if got, err := r.URL(ctx); err != nil || got != "http://10.0.0.7:8444" {
		t.Fatalf("leader URL %q, %v", got, err)
	}
	lease.Spec.HolderIdentity = ptr.To("manager-b_9a8b7c6d-0000-4000-8000-000000000000")
	must(c.Update(ctx, lease))
	if got, _ := r.URL(ctx); got != "http://10.0.0.7:8444" {
		t.Fatalf("the URL found is trusted for Recheck: %q", got)
	}
	now = now.Add(5 * time.Second)
	if got, err := r.URL(ctx); err != nil || got != "http://[fd00::9]:8444" {
		t.Fatalf("after Recheck the Lease is read again and the new leader found, with no call failing: %q, %v", got, err)
	}

	lease.Spec.HolderIdentity = ptr.To("manager-a_4f1c2d3e-0000-4000-8000-000000000001")
	must(c.Update(ctx, lease))
	r.Forget()
	if got, err := r.URL(ctx); err != nil || got != "http://10.0.0.7:8444" {
		t.Fatalf("after a failed call the new leader is found at once: %q, %v", got, err)
	}

	lease.Spec.HolderIdentity = nil
	must(c.Update(ctx, lease))
	now = now.Add(time.Minute)
	if got, err := r.URL(ctx); err == nil {
		t.Fatalf("a Lease that lost its holder still names %q", got)
	}
}

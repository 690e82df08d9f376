package authority

import (
	"context"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/llmquota/llmquota/internal/testbed/apiserver"
)

// managersNamespace starts a real API server with the managers' namespace,
// llmquota-system, and returns a client and a check that fails the test
// on an error.
func managersNamespace(t *testing.T) (client.Client, func(error)) {
	t.Helper()
	c := apiserver.Start(t)
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(c.Create(context.Background(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "llmquota-system"}}))
	return c, must
}

// TestLeaseResolverFindsTheLeader: against a real API server, the leader is
// the Lease holder's pod, found at its IP; after Forget a new leader is
// found.
func TestLeaseResolverFindsTheLeader(t *testing.T) {
	c, must := managersNamespace(t)
	ctx := context.Background()
	lease := &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Namespace: "llmquota-system", Name: "manager.llmquota.dev"}}
	must(c.Create(ctx, lease))
	now := time.Date(2026, 12, 7, 6, 0, 0, 0, time.UTC)
	var reads atomic.Int64
	r := &LeaseResolver{Client: countingReader{Reader: c, n: &reads}, Lease: types.NamespacedName{Namespace: "llmquota-system", Name: "manager.llmquota.dev"}, Port: 8444,
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
	now = now.Add(MinLeaseRead) // the Lease is read at most once a MinLeaseRead
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
	now = now.Add(MinLeaseRead)
	r.Forget()
	if got, err := r.URL(ctx); err != nil || got != "http://10.0.0.7:8444" {
		t.Fatalf("after a failed call the new leader is found at once: %q, %v", got, err)
	}
	// While no leader answers, many calls fail and forget it: the Lease is
	// read once a MinLeaseRead, not once per failed call.
	readsBefore := reads.Load()
	for range 100 {
		r.Forget()
		if _, err := r.URL(ctx); err == nil {
			t.Fatal("a forgotten leader was named again before the Lease was read again")
		}
	}
	if n := reads.Load() - readsBefore; n != 0 {
		t.Fatalf("100 failed calls within MinLeaseRead read the Lease %d times, want none", n)
	}
	now = now.Add(MinLeaseRead)
	r.Forget()
	if got, err := r.URL(ctx); err != nil || got != "http://10.0.0.7:8444" || reads.Load()-readsBefore != 1 {
		t.Fatalf("MinLeaseRead later: %q, %v after %d reads, want the leader after one", got, err, reads.Load()-readsBefore)
	}

	lease.Spec.HolderIdentity = nil
	must(c.Update(ctx, lease))
	now = now.Add(time.Minute)
	if got, err := r.URL(ctx); err == nil {
		t.Fatalf("a Lease that lost its holder still names %q", got)
	}
}

// countingReader counts the Lease reads (every Get of a Lease).
type countingReader struct {
	client.Reader
	n *atomic.Int64
}

func (c countingReader) Get(ctx context.Context, key client.ObjectKey, obj client.Object, opts ...client.GetOption) error {
	if _, ok := obj.(*coordinationv1.Lease); ok {
		c.n.Add(1)
	}
	return c.Reader.Get(ctx, key, obj, opts...)
}

// TestGatewayPodsListsTheRunningGateways: against a real API server, the
// pods a new leader waits for are the running pods of the gateways'
// ServiceAccount: not a pending one (it never got a grant), not one whose
// container waits to restart (it holds no call), not another account's.
func TestGatewayPodsListsTheRunningGateways(t *testing.T) {
	c, must := managersNamespace(t)
	ctx := context.Background()
	runs := corev1.ContainerState{Running: &corev1.ContainerStateRunning{}}
	restarts := corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "CrashLoopBackOff"}}
	for _, p := range []struct {
		name, account string
		phase         corev1.PodPhase
		state         corev1.ContainerState
	}{{"gateway-a", "llmquota-gateway", corev1.PodRunning, runs}, {"gateway-b", "llmquota-gateway", corev1.PodPending, restarts},
		{"gateway-c", "llmquota-gateway", corev1.PodRunning, runs}, {"gateway-d", "llmquota-gateway", corev1.PodRunning, restarts},
		{"manager-a", "llmquota-manager", corev1.PodRunning, runs}} {
		pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "llmquota-system", Name: p.name},
			Spec: corev1.PodSpec{ServiceAccountName: p.account, Containers: []corev1.Container{{Name: "c", Image: "c"}}}}
		must(c.Create(ctx, pod))
		pod.Status.Phase = p.phase
		pod.Status.ContainerStatuses = []corev1.ContainerStatus{{Name: "c", Image: "c", State: p.state}}
		must(c.Status().Update(ctx, pod))
	}
	got, err := GatewayPods(c, []string{"llmquota-system/llmquota-gateway"})(ctx)
	if err != nil || !slices.Equal(got, []string{"llmquota-system/gateway-a", "llmquota-system/gateway-c"}) {
		t.Fatalf("gateway pods %v, %v; want gateway-a and gateway-c", got, err)
	}
}

package kubeauth

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	clocktesting "k8s.io/utils/clock/testing"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/llmquota/llmquota/internal/testbed/apiserver"
)

// TestAnswersAreReusedForTheTTL: against a real API server, counting the
// reviews that reach it: a token and an access are reviewed once per TTL,
// concurrent first calls share one review, a refusal is cached too, and
// after the TTL each is asked again.
func TestAnswersAreReusedForTheTTL(t *testing.T) {
	real := apiserver.Start(t)
	ctx := context.Background()
	if err := real.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "team-a"}}); err != nil {
		t.Fatal(err)
	}
	token, err := apiserver.ServiceAccountToken(ctx, real, "team-a", "app", "llmquota.dev")
	if err != nil {
		t.Fatal(err)
	}
	var reviews atomic.Int64
	counted := counting{Client: real, n: &reviews}
	fc := clocktesting.NewFakeClock(time.Date(2026, 12, 6, 9, 0, 0, 0, time.UTC))
	r := &Reviewer{Client: counted, Audiences: []string{"llmquota.dev"}, TTL: 10 * time.Second, Clock: fc}

	var wg sync.WaitGroup
	for range 50 {
		wg.Go(func() {
			user, err := r.Authenticate(ctx, token)
			if ns, name, ok := ServiceAccount(user); err != nil || !ok || ns != "team-a" || name != "app" {
				t.Errorf("user %+v, %v", user, err)
			}
		})
	}
	wg.Wait()
	if n := reviews.Load(); n != 1 {
		t.Fatalf("%d TokenReviews for 50 concurrent first calls with one token, want 1", n)
	}
	user, _ := r.Authenticate(ctx, token)
	access := Access{Verb: "use", Group: "llmquota.dev", Resource: "llmproviders", Name: "gemini"}
	for range 3 {
		if ok, err := r.Allowed(ctx, user, access); err != nil || ok {
			t.Fatalf("allowed %v, %v: team-a/app has no grant", ok, err)
		}
	}
	if _, err := r.Authenticate(ctx, "not-a-token"); !errors.Is(err, ErrUnauthenticated) {
		t.Fatalf("a bad token: %v", err)
	}
	_, _ = r.Authenticate(ctx, "not-a-token")
	if n := reviews.Load(); n != 3 { // the token, the access, the bad token: once each
		t.Fatalf("%d reviews, want 3: answers within the TTL are reused", n)
	}
	fc.Step(10 * time.Second)
	_, _ = r.Authenticate(ctx, token)
	_, _ = r.Allowed(ctx, user, access)
	if n := reviews.Load(); n != 5 {
		t.Fatalf("%d reviews after the TTL, want 5: expired answers are asked again", n)
	}
}

// counting counts the objects created through it: the reviews that reach
// the API server.
type counting struct {
	client.Client
	n *atomic.Int64
}

func (c counting) Create(ctx context.Context, obj client.Object, opts ...client.CreateOption) error {
	c.n.Add(1)
	return c.Client.Create(ctx, obj, opts...)
}

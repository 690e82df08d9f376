package gateway

import (
	"context"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	clocktesting "k8s.io/utils/clock/testing"
	"sigs.k8s.io/controller-runtime/pkg/client"

	llmv1 "github.com/llmquota/llmquota/api/v1alpha1"
)

// secretReader serves one Secret and counts its reads.
type secretReader struct {
	client.Reader
	secret corev1.Secret
	reads  int
}

func (r *secretReader) Get(_ context.Context, _ client.ObjectKey, obj client.Object, _ ...client.GetOption) error {
	r.reads++
	r.secret.DeepCopyInto(obj.(*corev1.Secret))
	return nil
}

func (r *secretReader) rotate(key, version string) {
	r.secret.Data = map[string][]byte{"api-key": []byte(key)}
	r.secret.ResourceVersion = version
}

// TestRotatedKeyIsUsedWithinTheRecheck: the Secret is read once per
// SecretRecheck, not per call, and a rotated key gets a new client at the
// first call after the recheck; with no recheck every call reads it.
func TestRotatedKeyIsUsedWithinTheRecheck(t *testing.T) {
	clock := clocktesting.NewFakePassiveClock(time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC))
	reader := &secretReader{}
	reader.rotate("first", "1")
	p := &Providers{Reader: reader, SecretRecheck: time.Second, Clock: clock}
	lp := &llmv1.LLMProvider{ObjectMeta: metav1.ObjectMeta{Name: "gemini", UID: "u1"}, Spec: llmv1.LLMProviderSpec{
		Type: llmv1.ProviderGemini, Endpoint: "http://127.0.0.1:1", Model: "m",
		CredentialsSecretRef: &llmv1.SecretKeyReference{Namespace: "ns", Name: "key", Key: "api-key"},
	}}
	call := func() target {
		t.Helper()
		got, f := p.ClientOf(context.Background(), lp)
		if f != nil {
			t.Fatalf("ClientOf: %v", f.message)
		}
		return got
	}

	first := call()
	for range 100 {
		if call().client != first.client {
			t.Fatal("a new client without a change")
		}
	}
	if reader.reads != 1 {
		t.Fatalf("101 calls within the recheck read the Secret %d times, want 1", reader.reads)
	}

	reader.rotate("second", "2")
	clock.SetTime(clock.Now().Add(999 * time.Millisecond))
	if call().client != first.client || reader.reads != 1 {
		t.Fatalf("the Secret was read again before the recheck (%d reads)", reader.reads)
	}
	clock.SetTime(clock.Now().Add(time.Millisecond))
	rotated := call()
	if rotated.client == first.client || reader.reads != 2 {
		t.Fatalf("the rotated key has no client of its own after the recheck (%d reads)", reader.reads)
	}
	if call().client != rotated.client || reader.reads != 2 {
		t.Fatal("the rotated key's client is not kept")
	}

	lp.Spec.Model = "other" // a setting that needs no new client
	if got := call(); got.client != rotated.client || got.defaultModel != "other" {
		t.Fatalf("a model change: client kept %v, default model %q", got.client == rotated.client, got.defaultModel)
	}

	p.SecretRecheck = 0
	call()
	call()
	if reader.reads != 4 {
		t.Fatalf("with no recheck two calls read the Secret %d times in all, want 4", reader.reads)
	}
}

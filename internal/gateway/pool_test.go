package gateway_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/openai/openai-go/v3"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	llmv1 "github.com/llmquota/llmquota/api/v1alpha1"
	"github.com/llmquota/llmquota/internal/dispatch"
	"github.com/llmquota/llmquota/internal/emulator"
	"github.com/llmquota/llmquota/internal/provider"
)

// TestGatewayCallsReachAPoolsWarmPods: an OpenAI SDK calls an Ollama pool
// through the gateway. The leader picks a warm pod for each call, in turn,
// as it does for batch items; the gateway sends the call there in Ollama's
// API, streamed when the caller streams. With no pod warm, a call is
// refused at once with 503.
func TestGatewayCallsReachAPoolsWarmPods(t *testing.T) {
	b := newBed(t, 600, time.Minute)
	ctx := context.Background()
	var pods []*emulator.Server
	var warm []dispatch.Endpoint
	for _, name := range []string{"ollama-a", "ollama-b"} {
		pod := emulator.New(emulator.Config{})
		srv := httptest.NewServer(pod)
		t.Cleanup(srv.Close)
		c, err := provider.New(provider.Config{Type: provider.Ollama, Endpoint: srv.URL})
		must(t, err)
		pods, warm = append(pods, pod), append(warm, dispatch.Endpoint{Name: name, Address: srv.URL, Client: c})
	}
	eps := &dispatch.Endpoints{}
	_, d := b.addProviderWith(t, "pool", 600, time.Minute, providerOptions{
		spec: func(spec *llmv1.LLMProviderSpec) {
			spec.Type, spec.Endpoint, spec.CredentialsSecretRef, spec.Model = llmv1.ProviderOllama, "", nil, "tiny"
			spec.Ollama = &llmv1.OllamaSpec{Namespace: "models", ContextLength: ptr.To(int32(2048)),
				PodSelector: metav1.LabelSelector{MatchLabels: map[string]string{"app": "ollama"}}}
		},
		dispatch: func(cfg *dispatch.Config) { cfg.Endpoints, cfg.DefaultModel = eps, "tiny" },
	})
	ask := func() (*openai.ChatCompletion, error) {
		return sdk(b, b.ops).Chat.Completions.New(ctx, openai.ChatCompletionNewParams{Model: "pool",
			Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("hello")}, MaxTokens: openai.Int(32)})
	}

	_, err := ask()
	var apiErr *openai.Error
	if !errors.As(err, &apiErr) || apiErr.StatusCode != http.StatusServiceUnavailable || apiErr.Code != "no_warm_endpoint" {
		t.Fatalf("no pod warm: %v, want 503 no_warm_endpoint", err)
	}

	eps.Set(warm)
	for i := range 4 {
		resp, err := ask()
		if err != nil {
			t.Fatalf("call %d: %v", i, err)
		}
		if !strings.HasPrefix(resp.Choices[0].Message.Content, "emulated answer") || resp.Model != "pool/tiny" || resp.Usage.CompletionTokens == 0 {
			t.Fatalf("call %d: %+v", i, resp)
		}
	}
	for i, pod := range pods {
		log := pod.Log()
		if len(log) != 2 || log[0].API != "ollama" || log[0].Model != "tiny" || log[1].API != "ollama" {
			t.Fatalf("pod %d saw %+v, want 2 Ollama calls of model tiny (the calls in turn)", i, log)
		}
	}
	s, err := streamingSDKs["OpenAI SDK"](ctx, b, b.ops, "pool", nil)
	if err != nil || !strings.HasPrefix(s.text(), "emulated answer") || s.out == 0 {
		t.Fatalf("streamed %+v, %v", s, err)
	}
	if log := pods[0].Log(); len(log) != 3 || !log[2].Stream {
		t.Fatalf("the fifth call went to pod 0 as a stream? it saw %+v", log)
	}
	waitIdle(t, d)
}

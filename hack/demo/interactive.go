package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	llmv1 "github.com/llmquota/llmquota/api/v1alpha1"

	"github.com/llmquota/llmquota/internal/testbed/apiserver"
	"github.com/llmquota/llmquota/internal/testbed/process"
)

// startGateway gives the gateway and an app ServiceAccounts, lets the app
// (default/news-app) use the gemini provider with the sample RBAC
// (config/samples/gateway_use_rbac.yaml, applied with kubectl as the docs
// say), and starts the gateway against the manager's quota authority. It
// returns the gateway's URL and the app's token.
func startGateway(ctx context.Context, c client.Client, dir, kubeconfig, bin, quotaURL string) (string, string, *process.Process, error) {
	const audience = "llmquota.dev"
	gwToken, err := apiserver.ServiceAccountToken(ctx, c, "llmquota-system", "llmquota-gateway", audience)
	if err != nil {
		return "", "", nil, err
	}
	if err := kubectl(ctx, kubeconfig, "apply", "-f", "config/samples/gateway_use_rbac.yaml"); err != nil {
		return "", "", nil, err
	}
	appToken, err := apiserver.ServiceAccountToken(ctx, c, "default", "news-app", audience)
	if err != nil {
		return "", "", nil, err
	}
	tokenFile := filepath.Join(dir, "gateway-token")
	if err := os.WriteFile(tokenFile, []byte(gwToken), 0o600); err != nil {
		return "", "", nil, err
	}
	// The app's token, for a person trying the gateway after the demo (--keep).
	if err := os.WriteFile(filepath.Join(dir, "app-token"), []byte(appToken), 0o600); err != nil {
		return "", "", nil, err
	}
	port, err := process.FreePort()
	if err != nil {
		return "", "", nil, err
	}
	gw, err := process.Start(filepath.Join(dir, "gateway.log"), filepath.Join(bin, "gateway"), "--kubeconfig", kubeconfig,
		fmt.Sprintf("--bind-address=127.0.0.1:%d", port), "--metrics-bind-address=0", "--health-probe-bind-address=0",
		"--authority-url", quotaURL, "--token-file", tokenFile, "--secret-namespaces", "llmquota-system")
	return fmt.Sprintf("http://127.0.0.1:%d", port), appToken, gw, err
}

// interactiveCalls is what the app's calls met.
type interactiveCalls struct {
	mu      sync.Mutex
	took    []time.Duration
	refused int
	// passedOn counts the provider's own failures the gateway passed on
	// (502, 504): the emulator injects them, and the gateway does not
	// retry on the caller's behalf.
	passedOn int
	failures []string
}

// converse sends a chat completion through the gateway every interval
// until ctx ends, with the official OpenAI Go SDK, as an app would
// (retries off: every answer shown is the gateway's own).
func converse(ctx context.Context, gatewayURL, token string, every time.Duration) *interactiveCalls {
	sdk := openai.NewClient(option.WithBaseURL(gatewayURL+"/v1/"), option.WithAPIKey(token), option.WithMaxRetries(0))
	calls := &interactiveCalls{}
	go func() {
		for i := 1; ctx.Err() == nil; i++ {
			start := time.Now()
			resp, err := sdk.Chat.Completions.New(ctx, openai.ChatCompletionNewParams{Model: "gemini",
				Messages:            []openai.ChatCompletionMessageParamUnion{openai.UserMessage(fmt.Sprintf("Summarise headline %d in one line", i))},
				MaxCompletionTokens: openai.Int(64)})
			took := time.Since(start)
			var apiErr *openai.Error
			calls.mu.Lock()
			switch {
			case ctx.Err() != nil:
			case err == nil:
				calls.took = append(calls.took, took)
				fmt.Printf("%s  interactive call %d through the gateway: answered in %v (%d tokens)\n",
					time.Now().Format("15:04:05"), i, took.Round(time.Millisecond), resp.Usage.TotalTokens)
			case errors.As(err, &apiErr) && apiErr.StatusCode == 429:
				calls.refused++
				fmt.Printf("%s  interactive call %d: 429, %s\n", time.Now().Format("15:04:05"), i, apiErr.Message)
			case errors.As(err, &apiErr) && (apiErr.StatusCode == 502 || apiErr.StatusCode == 504) && strings.HasPrefix(apiErr.Code, "upstream_"):
				calls.passedOn++
				fmt.Printf("%s  interactive call %d: %d, the provider's injected fault passed on: %s\n", time.Now().Format("15:04:05"), i, apiErr.StatusCode, apiErr.Message)
			default:
				calls.failures = append(calls.failures, err.Error())
				fmt.Printf("%s  interactive call %d failed: %v\n", time.Now().Format("15:04:05"), i, err)
			}
			calls.mu.Unlock()
			select {
			case <-ctx.Done():
			case <-time.After(every):
			}
		}
	}()
	return calls
}

// summary says what the interactive calls met; an error if any failed.
func (c *interactiveCalls) summary() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	took := slices.Clone(c.took)
	slices.Sort(took)
	if len(took) == 0 {
		return fmt.Errorf("no interactive call was answered (%d refused, failures: %v)", c.refused, c.failures)
	}
	say("Interactive calls through the gateway: %d answered (p50 %v, slowest %v: the provider takes 150ms, the rest is the wait for quota, ahead of the batch), %d refused with 429, %d provider faults passed on",
		len(took), took[len(took)/2].Round(time.Millisecond), took[len(took)-1].Round(time.Millisecond), c.refused, c.passedOn)
	if len(c.failures) > 0 {
		return fmt.Errorf("%d interactive calls failed: %v", len(c.failures), c.failures)
	}
	return nil
}

// waitProviderReady waits until the provider's dispatcher runs (Ready):
// before that the gateway answers 503, as it would in a cluster.
func waitProviderReady(ctx context.Context, c client.Client, name string) error {
	for range 60 {
		var p llmv1.LLMProvider
		if c.Get(ctx, types.NamespacedName{Name: name}, &p) == nil && meta.IsStatusConditionTrue(p.Status.Conditions, llmv1.ConditionReady) {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(500 * time.Millisecond):
		}
	}
	return fmt.Errorf("provider %s was not Ready within 30s; see .demo/manager.log", name)
}

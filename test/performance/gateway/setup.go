package main

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/clock"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	llmv1 "github.com/llmquota/llmquota/api/v1alpha1"
	"github.com/llmquota/llmquota/internal/authority"
	"github.com/llmquota/llmquota/internal/dispatch"
	"github.com/llmquota/llmquota/internal/kubeauth"
	"github.com/llmquota/llmquota/internal/ratewindow"
	"github.com/llmquota/llmquota/internal/testbed/apiserver"
)

const (
	apiKey   = "bench-key"
	systemNS = "llmquota-system"
	audience = "llmquota.dev"
)

// objects creates what a cluster with one gateway holds: the provider
// "emu" (OpenAI dialect, generous limits) at the emulator, its Secret, the
// gateway's and a caller's ServiceAccounts, and a grant to use every
// provider. It returns the caller's and the gateway's tokens.
func objects(ctx context.Context, c client.Client, emulatorURL string) (caller, gateway string, err error) {
	create := func(o client.Object) {
		if err == nil {
			err = c.Create(ctx, o)
		}
	}
	for _, ns := range []string{systemNS, "team-a"} {
		create(&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}})
	}
	create(&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: systemNS, Name: "emu-key"}, Data: map[string][]byte{"api-key": []byte(apiKey)}})
	create(&llmv1.LLMProvider{ObjectMeta: metav1.ObjectMeta{Name: "emu"}, Spec: llmv1.LLMProviderSpec{NamespaceSelector: &metav1.LabelSelector{},
		Type: llmv1.ProviderOpenAI, Endpoint: emulatorURL + "/v1", Model: "bench",
		CredentialsSecretRef: &llmv1.SecretKeyReference{Namespace: systemNS, Name: "emu-key", Key: "api-key"},
		Limits:               llmv1.RateLimits{RequestsPerMinute: ptr.To(int32(1_000_000)), MaxConcurrency: 10_000},
	}})
	if err == nil {
		err = apiserver.GrantUse(ctx, c, "use-all", nil, "team-a", "app")
	}
	if err != nil {
		return "", "", err
	}
	if caller, err = apiserver.ServiceAccountToken(ctx, c, "team-a", "app", audience); err != nil {
		return "", "", err
	}
	gateway, err = apiserver.ServiceAccountToken(ctx, c, systemNS, "llmquota-gateway", audience)
	return caller, gateway, err
}

// serveAuthority runs the provider's dispatcher and the quota authority in
// this process, as the leader manager would, and returns its URL.
func serveAuthority(ctx context.Context, c client.Client) (string, *dispatch.Dispatcher, error) {
	d, err := dispatch.New(dispatch.Config{Name: "emu", Limits: ratewindow.Config{
		Windows: []ratewindow.Window{{Name: "minute", Limit: 1_000_000, Period: time.Minute}}, MaxConcurrency: 10_000}},
		nil, clock.RealClock{}, logr.Discard(), nil)
	if err != nil {
		return "", nil, err
	}
	go d.Run(ctx)
	reviewer := &kubeauth.Reviewer{Client: c, Audiences: []string{audience}}
	srv := &authority.Server{Lookup: func(name string) *dispatch.Dispatcher {
		if name == "emu" {
			return d
		}
		return nil
	}, Authorize: authority.OnlyGateways(reviewer, []string{systemNS + "/llmquota-gateway"}), Log: logr.Discard()}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, err
	}
	go func() { _ = http.Serve(ln, srv) }()
	go func() { <-ctx.Done(); _ = ln.Close() }()
	return "http://" + ln.Addr().String(), d, nil
}

// waitReady polls a readiness URL until it answers 200.
func waitReady(url string, within time.Duration) error {
	deadline := time.Now().Add(within)
	for time.Now().Before(deadline) {
		if resp, err := http.Get(url); err == nil {
			_ = resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("%s not ready within %v", url, within)
}

// writeToken writes a token where the gateway reads its own.
func writeToken(dir, token string) (string, error) {
	path := filepath.Join(dir, "gateway-token")
	return path, os.WriteFile(path, []byte(token), 0o600)
}

// Package apiserver starts a real kube-apiserver and etcd (envtest, with
// the binaries `make test` builds and names in KUBEBUILDER_ASSETS) with
// llmquota's CRDs and admission policies installed, for the tests of
// packages below internal/ and the repository's benchmarks and demo.
package apiserver

import (
	"context"
	"testing"

	"k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	llmv1 "github.com/llmquota/llmquota/api/v1alpha1"
)

// Start runs an API server until the test ends and returns a client of it.
func Start(tb testing.TB) client.Client {
	tb.Helper()
	_, c := StartConfig(tb)
	return c
}

// StartConfig is Start that also returns the admin's rest.Config, for
// client-go clients (an Event broadcaster's).
func StartConfig(tb testing.TB) (*rest.Config, client.Client) {
	tb.Helper()
	if err := llmv1.AddToScheme(scheme.Scheme); err != nil {
		tb.Fatal(err)
	}
	env := &envtest.Environment{CRDDirectoryPaths: []string{repoDir("config", "crd", "bases")}, ErrorIfCRDPathMissing: true}
	cfg, err := env.Start()
	if err != nil {
		_ = env.Stop() // a failed start (bad CRDs) leaves etcd and the API server running
		tb.Fatalf("start envtest (run through make test, which sets KUBEBUILDER_ASSETS): %v", err)
	}
	tb.Cleanup(func() { _ = env.Stop() })
	c, err := client.New(cfg, client.Options{Scheme: scheme.Scheme})
	if err != nil {
		tb.Fatal(err)
	}
	if err := InstallPolicies(context.Background(), c, PolicyDir()); err != nil {
		tb.Fatal(err)
	}
	return cfg, c
}

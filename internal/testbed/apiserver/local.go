package apiserver

import (
	"fmt"
	"path/filepath"

	"k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	llmv1 "github.com/llmquota/llmquota/api/v1alpha1"
)

// Local is a control plane a benchmark starts (etcd and kube-apiserver
// from KUBEBUILDER_ASSETS, the CRDs installed): an admin kubeconfig for
// the processes it starts, and a client of its own.
type Local struct {
	Env        *envtest.Environment
	Kubeconfig string
	Client     client.Client
}

// StartLocal starts a Local, run from the repository's root, writing its
// kubeconfig for user into dir. Stop it with Env.Stop.
func StartLocal(dir, user string) (*Local, error) {
	env := &envtest.Environment{CRDDirectoryPaths: []string{filepath.Join("config", "crd", "bases")}, ErrorIfCRDPathMissing: true}
	cfg, err := env.Start()
	if err != nil {
		return nil, fmt.Errorf("starting the control plane (KUBEBUILDER_ASSETS): %w", err)
	}
	l := &Local{Env: env}
	if l.Kubeconfig, err = WriteAdminKubeconfig(env, dir, user, nil); err == nil {
		if err = llmv1.AddToScheme(scheme.Scheme); err == nil {
			l.Client, err = client.New(cfg, client.Options{Scheme: scheme.Scheme})
		}
	}
	if err != nil {
		_ = env.Stop()
		return nil, err
	}
	return l, nil
}

package apiserver

import (
	"os"
	"path/filepath"

	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
)

// WriteAdminKubeconfig adds a cluster-admin user (system:masters) named
// user to a started envtest control plane and writes its kubeconfig to
// dir/kubeconfig, for the binaries a demo, benchmark or check runs beside
// it; overrides (QPS, Burst) may be nil.
func WriteAdminKubeconfig(env *envtest.Environment, dir, user string, overrides *rest.Config) (string, error) {
	admin, err := env.AddUser(envtest.User{Name: user, Groups: []string{"system:masters"}}, overrides)
	if err != nil {
		return "", err
	}
	data, err := admin.KubeConfig()
	if err != nil {
		return "", err
	}
	path := filepath.Join(dir, "kubeconfig")
	return path, os.WriteFile(path, data, 0o600)
}

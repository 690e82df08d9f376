//go:build e2e

// Package e2e installs the Helm chart into a real control plane (a KWOK
// cluster: kube-apiserver, etcd, kube-controller-manager, kube-scheduler
// built from source, fake nodes) and runs the manager out of cluster as
// the chart's ServiceAccount, proving the chart's RBAC is enough and no
// more. Run with `make test-e2e` (part of `make test`).
package e2e

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
)

var (
	workDir       string
	kubeconfig    string
	clusterName   = fmt.Sprintf("llmquota-e2e-%d", os.Getpid())
	chartDir, _   = filepath.Abs("../../charts/llmquota")
	samplesDir, _ = filepath.Abs("../../config/samples")
)

func TestE2E(t *testing.T) {
	RegisterFailHandler(Fail)
	RunSpecs(t, "e2e suite")
}

// env returns a required environment variable set by `make test-e2e`.
func env(name string) string {
	v := os.Getenv(name)
	Expect(v).NotTo(BeEmpty(), "%s is not set: run through `make test-e2e`", name)
	return v
}

// run runs a command with the e2e cluster's kubeconfig and the Kubernetes
// binaries on PATH, returning its combined output.
func run(name string, args ...string) (string, error) {
	cmd := exec.Command(name, args...)
	cmd.Env = append(os.Environ(), "KUBECONFIG="+kubeconfig, "KWOK_WORKDIR="+workDir, "PATH="+env("K8S_BIN")+":"+os.Getenv("PATH"))
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	return out.String(), err
}

func must(name string, args ...string) string {
	out, err := run(name, args...)
	ExpectWithOffset(1, err).NotTo(HaveOccurred(), "%s %s:\n%s", name, strings.Join(args, " "), out)
	return out
}

func kubectl(args ...string) string { return must(filepath.Join(env("K8S_BIN"), "kubectl"), args...) }
func helm(args ...string)           { must(env("HELM"), args...) }

var _ = BeforeSuite(func() {
	var err error
	workDir, err = os.MkdirTemp("", "llmquota-e2e-")
	Expect(err).NotTo(HaveOccurred())
	kubeconfig = filepath.Join(workDir, "kubeconfig")
	k8s := env("K8S_BIN")
	By("starting a KWOK cluster from the locally built binaries")
	must(env("KWOKCTL"), "create", "cluster", "--name", clusterName, "--runtime", "binary",
		"--kube-apiserver-binary", filepath.Join(k8s, "kube-apiserver"), "--etcd-binary", filepath.Join(k8s, "etcd"),
		"--kube-controller-manager-binary", filepath.Join(k8s, "kube-controller-manager"),
		"--kube-scheduler-binary", filepath.Join(k8s, "kube-scheduler"), "--kwok-controller-binary", env("KWOK"),
		"--kubeconfig", kubeconfig, "--wait", "2m")
	must(env("KWOKCTL"), "scale", "node", "--name", clusterName, "--replicas", "2")
	By("labelling the fake nodes as GPU nodes")
	kubectl("label", "nodes", "--all", "nvidia.com/gpu.present=true")
})

// A failed spec shows the end of each process log it wrote (the manager's,
// the emulator's): the work directory is removed after the suite.
var _ = ReportAfterEach(func(r SpecReport) {
	if !r.Failed() || workDir == "" {
		return
	}
	logs, _ := filepath.Glob(filepath.Join(workDir, "*.log"))
	for _, path := range logs {
		data, _ := os.ReadFile(path)
		lines := strings.Split(strings.TrimSpace(string(data)), "\n")
		fmt.Fprintf(GinkgoWriter, "--- the last lines of %s:\n%s\n", filepath.Base(path), strings.Join(lines[max(0, len(lines)-40):], "\n"))
	}
})

var _ = AfterSuite(func() {
	if workDir == "" {
		return
	}
	stopProcesses()
	_, _ = run(env("KWOKCTL"), "delete", "cluster", "--name", clusterName)
	_ = os.RemoveAll(workDir)
})

func freePort() int {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	Expect(err).NotTo(HaveOccurred())
	defer func() { _ = ln.Close() }()
	return ln.Addr().(*net.TCPAddr).Port
}

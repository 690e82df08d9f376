//go:build cluster

// Package cluster tests the project as a user runs it: the images `make
// images` builds, installed with the Helm chart onto a real single-node
// cluster (kubelet, containerd, runc, CNI, kube-proxy: hack/cluster/up.sh),
// the manager and the node agent running as real Pods under the restricted
// Pod Security profile, the provider emulator and an Ollama pool as real
// Deployments. Everything is asserted from the outside: kubectl, the
// metrics endpoint over HTTPS, the emulator's request log, containerd.
// Run with `make test-cluster` (part of `make test`), which starts and
// stops the cluster around it.
package cluster

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
)

func TestCluster(t *testing.T) {
	RegisterFailHandler(Fail)
	RunSpecs(t, "real cluster suite")
}

// env returns a variable `make test-cluster` sets.
func env(name string) string {
	v := os.Getenv(name)
	Expect(v).NotTo(BeEmpty(), "%s is not set: run through `make test-cluster`", name)
	return v
}

// run runs a command against the cluster (KUBECONFIG set), returning its
// combined output.
func run(stdin string, name string, args ...string) (string, error) {
	cmd := exec.Command(name, args...)
	cmd.Env = append(os.Environ(), "KUBECONFIG="+env("KUBECONFIG"), "HELM_CACHE_HOME="+helmHome, "HELM_CONFIG_HOME="+helmHome, "HELM_DATA_HOME="+helmHome)
	cmd.Stdin = strings.NewReader(stdin)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	return out.String(), err
}

func must(stdin, name string, args ...string) string {
	out, err := run(stdin, name, args...)
	ExpectWithOffset(2, err).NotTo(HaveOccurred(), "%s %s:\n%s", filepath.Base(name), strings.Join(args, " "), out)
	return out
}

func kubectl(args ...string) string {
	return must("", filepath.Join(env("K8S_BIN"), "kubectl"), args...)
}
func helm(args ...string) { must("", env("HELM"), args...) }

// apply applies YAML through kubectl's standard input.
func apply(yaml string) { must(yaml, kubectlPath(), "apply", "-f", "-") }

// ctr runs containerd's client against the cluster's own containerd.
func ctr(args ...string) string {
	return must("", "ctr", append([]string{"--address", filepath.Join(env("CLUSTER_DIR"), "run", "containerd.sock"), "-n", "k8s.io"}, args...)...)
}

// atoi reads a number kubectl printed; anything else fails the spec, so
// an empty or garbled answer cannot pass for 0.
func atoi(s string) int {
	n, err := strconv.Atoi(strings.TrimSpace(s))
	Expect(err).NotTo(HaveOccurred(), "not a number: %q", s)
	return n
}

var helmHome string

var _ = BeforeSuite(func() {
	var err error
	helmHome, err = os.MkdirTemp("", "llmquota-cluster-helm-")
	Expect(err).NotTo(HaveOccurred())
	DeferCleanup(os.RemoveAll, helmHome)
	Expect(kubectl("get", "nodes", "-o", `jsonpath={.items[0].status.conditions[?(@.type=="Ready")].status}`)).To(Equal("True"), "the cluster's node is not Ready: hack/cluster/up.sh starts it")
})

// ReportAfterEach leaves what a failed spec needs to be understood: the
// pods, the events, and the logs of the manager and the agent.
var _ = ReportAfterEach(func(r SpecReport) {
	if !r.Failed() {
		return
	}
	k := kubectlPath()
	for _, args := range [][]string{
		{"get", "pods", "-A", "-o", "wide"},
		{"get", "events", "-A", "--sort-by=.lastTimestamp"},
		{"get", "inferencebatches,llmproviders", "-A"},
		{"-n", namespace, "logs", "-l", "app.kubernetes.io/component=manager", "--tail=80", "--prefix", "--all-containers"},
		{"-n", namespace, "logs", "-l", "app.kubernetes.io/component=node-agent", "--tail=40", "--prefix"},
	} {
		out, _ := run("", k, args...)
		AddReportEntry("kubectl "+strings.Join(args, " "), out)
	}
})

//go:build e2e

package e2e

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/llmquota/llmquota/internal/testbed/process"
)

// smallBatch is an InferenceBatch of three items for the demo's provider.
func smallBatch(name string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "apiVersion: llmquota.dev/v1alpha1\nkind: InferenceBatch\nmetadata:\n  name: %s\nspec:\n  providerRef:\n    name: gemini\n  maxTokens: 16\n  items:\n", name)
	for i := range 3 {
		fmt.Fprintf(&b, "  - id: item-%d\n    prompt: \"Classify headline %d of %s\"\n", i, i, name)
	}
	return b.String()
}

// descendants lists the processes below pid.
func descendants(tree map[int]int, pid int) []int {
	var out []int
	for child, parent := range tree {
		if parent == pid {
			out = append(append(out, child), descendants(tree, child)...)
		}
	}
	return out
}

var _ = Describe("make demo DEMO_FLAGS=--keep", func() {
	It("keeps the manager, the emulator and the gateway running after its batch, and leaves nothing running when killed", func() {
		root, err := filepath.Abs("../..")
		Expect(err).NotTo(HaveOccurred())
		tmp := GinkgoT().TempDir()
		demo := filepath.Join(tmp, "demo")
		build := exec.Command("go", "build", "-o", demo, "./hack/demo")
		build.Dir = root
		out, err := build.CombinedOutput()
		Expect(err).NotTo(HaveOccurred(), string(out))
		batch := filepath.Join(tmp, "batch.yaml")
		Expect(os.WriteFile(batch, []byte(smallBatch("news-sentiment")), 0o600)).To(Succeed())

		By("running the demo with --keep and a batch of three items")
		cmd := exec.Command(demo, "--keep", "--batch", batch, "--timeout", "3m")
		cmd.Dir = root
		cmd.Env = append(os.Environ(), "KUBECONFIG=", "KUBEBUILDER_ASSETS="+env("K8S_BIN"), "KUBECTL="+filepath.Join(env("K8S_BIN"), "kubectl"),
			"LLMQUOTA_BIN="+env("LLMQUOTA_BIN"))
		stdout, err := cmd.StdoutPipe()
		Expect(err).NotTo(HaveOccurred())
		cmd.Stderr = GinkgoWriter
		Expect(cmd.Start()).To(Succeed())
		exited := make(chan error, 1)
		var mu sync.Mutex
		var printed strings.Builder
		kubeconfigs := make(chan string, 1)
		go func() {
			lines := bufio.NewScanner(stdout)
			for lines.Scan() {
				line := lines.Text()
				_, _ = fmt.Fprintln(GinkgoWriter, line)
				mu.Lock()
				printed.WriteString(line + "\n")
				mu.Unlock()
				if path, ok := strings.CutPrefix(strings.TrimSpace(line), "==>   export KUBECONFIG="); ok {
					kubeconfigs <- path
				}
			}
			exited <- cmd.Wait()
		}()
		DeferCleanup(func() { _ = cmd.Process.Kill() })
		var demoKubeconfig string
		Eventually(kubeconfigs, 5*time.Minute).Should(Receive(&demoKubeconfig), func() string { mu.Lock(); defer mu.Unlock(); return printed.String() })

		By("applying a second batch after the demo's: it runs to Complete")
		kc := func(args ...string) string {
			c := exec.Command(filepath.Join(env("K8S_BIN"), "kubectl"), args...)
			c.Env = append(os.Environ(), "KUBECONFIG="+demoKubeconfig)
			out, err := c.CombinedOutput()
			Expect(err).NotTo(HaveOccurred(), string(out))
			return string(out)
		}
		second := filepath.Join(tmp, "second.yaml")
		Expect(os.WriteFile(second, []byte(smallBatch("after-the-demo")), 0o600)).To(Succeed())
		kc("create", "-n", "default", "-f", second)
		Eventually(func() string {
			return kc("get", "inferencebatch", "after-the-demo", "-n", "default", "-o", `jsonpath={.status.conditions[?(@.type=="Finished")].reason}`)
		}, 2*time.Minute, time.Second).Should(Equal("Succeeded"))

		By("killing the demo with SIGKILL: everything it started stops with it")
		tree, err := process.Parents()
		Expect(err).NotTo(HaveOccurred())
		left := descendants(tree, cmd.Process.Pid)
		Expect(len(left)).To(BeNumerically(">=", 6), "the worker, etcd, kube-apiserver, the emulator, the manager and the gateway")
		var worker int
		for _, pid := range left {
			if exe, _ := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid)); tree[pid] == cmd.Process.Pid && exe == demo {
				worker = pid
			}
		}
		Expect(worker).NotTo(BeZero(), "the supervised worker among %v", left)
		Expect(syscall.Kill(worker, syscall.SIGKILL)).To(Succeed())
		var waited error
		Eventually(exited, time.Minute).Should(Receive(&waited))
		var exit *exec.ExitError
		Expect(errors.As(waited, &exit) && exit.ExitCode() == 128+int(syscall.SIGKILL)).To(BeTrue(), "the demo exited with %v, want status 137", waited)
		for _, pid := range left {
			Expect(errors.Is(syscall.Kill(pid, 0), syscall.ESRCH)).To(BeTrue(), "process %d still runs after the demo was killed", pid)
		}
	})
})

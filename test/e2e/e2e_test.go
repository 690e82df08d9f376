//go:build e2e

package e2e

import (
	"encoding/base64"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/llmquota/llmquota/internal/testbed/ollamaserver"
)

const (
	release   = "llmquota"
	namespace = "llmquota-system"
	sa        = "llmquota-manager"
	agentSA   = "llmquota-node-agent"
)

var processes []*exec.Cmd

func startProcess(logName, path string, args ...string) {
	logFile, err := os.Create(filepath.Join(workDir, logName))
	Expect(err).NotTo(HaveOccurred())
	cmd := exec.Command(path, args...)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	Expect(cmd.Start()).To(Succeed())
	processes = append(processes, cmd)
}

func stopProcesses() {
	for _, p := range processes {
		_ = p.Process.Signal(syscall.SIGTERM)
		_, _ = p.Process.Wait()
	}
	processes = nil
}

// saKubeconfig writes a kubeconfig that authenticates as one of the
// chart's ServiceAccounts with a short-lived token.
func saKubeconfig(sa string) string {
	token := strings.TrimSpace(kubectl("-n", namespace, "create", "token", sa, "--duration", "1h"))
	server := strings.TrimSpace(kubectl("config", "view", "--minify", "--raw", "-o", "jsonpath={.clusters[0].cluster.server}"))
	ca := strings.TrimSpace(kubectl("config", "view", "--minify", "--raw", "-o", "jsonpath={.clusters[0].cluster.certificate-authority-data}"))
	caLine := "insecure-skip-tls-verify: true"
	if ca != "" {
		caLine = "certificate-authority-data: " + ca
	} else if file := strings.TrimSpace(kubectl("config", "view", "--minify", "--raw", "-o", "jsonpath={.clusters[0].cluster.certificate-authority}")); file != "" {
		data, err := os.ReadFile(file)
		Expect(err).NotTo(HaveOccurred())
		caLine = "certificate-authority-data: " + base64.StdEncoding.EncodeToString(data)
	}
	path := filepath.Join(workDir, sa+".kubeconfig")
	Expect(os.WriteFile(path, []byte(fmt.Sprintf(`apiVersion: v1
kind: Config
clusters: [{name: e2e, cluster: {server: %q, %s}}]
users: [{name: manager, user: {token: %q}}]
contexts: [{name: manager, context: {cluster: e2e, user: manager}}]
current-context: manager
`, server, caLine, token)), 0o600)).To(Succeed())
	return path
}

// canI asks the API server (SelfSubjectAccessReview) whether the
// ServiceAccount may do something; --quiet answers by exit code.
func canI(saConfig string, args ...string) bool {
	_, err := run(filepath.Join(env("K8S_BIN"), "kubectl"), append([]string{"--kubeconfig", saConfig, "auth", "can-i", "--quiet"}, args...)...)
	return err == nil
}

var _ = Describe("The Helm chart on a real control plane", Ordered, func() {
	var saConfig string

	It("installs, and its Deployment becomes available", func() {
		helm("install", release, chartDir, "-n", namespace, "--create-namespace", "--wait", "--timeout", "2m",
			"--set", "manager.secretNamespaces={"+namespace+"}")
		Expect(kubectl("-n", namespace, "get", "deployment", "llmquota-manager", "-o", "jsonpath={.status.availableReplicas}")).To(Equal("1"))
		Expect(kubectl("get", "crd", "llmproviders.llmquota.dev", "inferencebatches.llmquota.dev", "-o", "name")).To(ContainSubstring("llmproviders"))
	})

	It("refuses a batch with a repeated item id through the chart's admission policy", func() {
		path := filepath.Join(workDir, "repeated-id.yaml")
		Expect(os.WriteFile(path, []byte(`apiVersion: llmquota.dev/v1alpha1
kind: InferenceBatch
metadata: {name: repeated-id, namespace: default}
spec:
  providerRef: {name: gemini}
  items: [{id: a, prompt: one}, {id: b, prompt: two}, {id: a, prompt: three}]
`), 0o600)).To(Succeed())
		// The API server loads a policy a moment after it is created.
		Eventually(func() string {
			out, err := run(filepath.Join(env("K8S_BIN"), "kubectl"), "create", "--dry-run=server", "-f", path)
			if err == nil {
				return "accepted: " + out
			}
			return out
		}, 30*time.Second, 500*time.Millisecond).Should(ContainSubstring("spec.items: item ids must be unique within the batch; repeated: a"))
	})

	It("runs a batch to Complete with the manager authenticated as the chart's ServiceAccount", func() {
		saConfig = saKubeconfig(sa)
		port := freePort()
		endpoint := fmt.Sprintf("http://127.0.0.1:%d", port)
		startProcess("emulator.log", filepath.Join(env("LLMQUOTA_BIN"), "provider-emulator"),
			"--listen", fmt.Sprintf("127.0.0.1:%d", port), "--limits", "60/1m", "--keys", "e2e-key")
		startProcess("manager.log", filepath.Join(env("LLMQUOTA_BIN"), "manager"),
			"--kubeconfig", saConfig, "--leader-elect", "--leader-election-namespace", namespace,
			"--metrics-bind-address=0", "--health-probe-bind-address=0", "--secret-namespaces", namespace)

		kubectl("-n", namespace, "create", "secret", "generic", "gemini-api-key", "--from-literal=api-key=e2e-key")
		provider := strings.Replace(readFile(filepath.Join(samplesDir, "llmquota_v1alpha1_llmprovider_gemini.yaml")),
			"  type: Gemini\n", "  type: Gemini\n  endpoint: "+endpoint+"\n", 1)
		provider = strings.Replace(provider, "requestsPerMinute: 10", "requestsPerMinute: 60", 1)
		provider = strings.Replace(provider, "minIntervalMilliseconds: 3000", "minIntervalMilliseconds: 100", 1)
		applyText(provider)
		// The sample admits the namespaces labelled for it.
		kubectl("label", "--overwrite", "namespace", "default", "llmquota.dev/gemini=allowed")
		// batchDelayMilliseconds is set before apply: an admitted batch's pacing is fixed.
		applyText(strings.Replace(readFile(filepath.Join(samplesDir, "llmquota_v1alpha1_inferencebatch.yaml")), "batchDelayMilliseconds: 2000", "batchDelayMilliseconds: 200", 1))

		kubectl("wait", "--for=condition=Ready", "llmprovider/gemini", "--timeout=60s")
		kubectl("-n", "default", "wait", "--for=condition=Complete", "inferencebatch/news-sentiment", "--timeout=180s")
		Expect(kubectl("-n", "default", "get", "inferencebatch", "news-sentiment", "-o", "jsonpath={.status.progress} {.status.counts.filtered} {.status.counts.succeeded}")).
			To(Equal("136/136 95 41"))
		results := kubectl("-n", "default", "get", "configmap", "-l", "llmquota.dev/batch=news-sentiment", "-o", "jsonpath={.items[*].data.results\\.jsonl}")
		Expect(strings.Count(results, `"status":"succeeded"`)).To(Equal(41))
		Expect(strings.Count(results, `"status":"filtered"`)).To(Equal(95))
		Expect(kubectl("get", "llmprovider", "gemini")).To(ContainSubstring("True"))
		By("kubectl get shows what a user asks first: done, failures, why it waits or how it ended")
		table := strings.Split(strings.TrimSpace(kubectl("-n", "default", "get", "inferencebatch", "news-sentiment")), "\n")
		Expect(strings.Fields(table[0])).To(Equal([]string{"NAME", "PROVIDER", "PROGRESS", "FAILED", "STATUS", "ETA", "AGE"}))
		row := strings.Fields(table[1]) // the finished batch has no ETA: that cell is blank
		Expect(row).To(HaveLen(6))
		Expect(row[:5]).To(Equal([]string{"news-sentiment", "gemini", "136/136", "0", "Succeeded"}))
		Expect(strings.Fields(strings.Split(kubectl("get", "llmprovider"), "\n")[0])).To(Equal(
			[]string{"NAME", "TYPE", "MINUTE", "HOUR", "DAY", "COST-TODAY", "READY", "HEALTH", "RATELIMITED", "AGE"}))
		kubectl("-n", "default", "wait", "--for=condition=Finished", "inferencebatch/news-sentiment", "--timeout=10s")

		log := readFile(filepath.Join(workDir, "manager.log"))
		var denied []string
		for _, line := range strings.Split(log, "\n") {
			if strings.Contains(line, "forbidden") {
				denied = append(denied, line)
			}
		}
		Expect(denied).To(BeEmpty(), "the chart's RBAC was not enough for the manager")
		Expect(log).NotTo(ContainSubstring("e2e-key"), "the API key leaked into the log")
	})

	It("grants the manager what it needs and nothing more", func() {
		for _, allowed := range [][]string{
			{"get", "secrets", "-n", namespace}, {"watch", "llmproviders"}, {"patch", "llmproviders", "--subresource=status"},
			{"patch", "inferencebatches", "--subresource=status", "-n", "default"}, {"create", "configmaps", "-n", "default"},
			{"create", "leases", "-n", namespace}, {"create", "events.events.k8s.io", "-n", "default"}, {"create", "events", "-n", namespace},
			{"watch", "pods", "--all-namespaces"}, {"patch", "pods", "-n", "default"},
		} {
			Expect(canI(saConfig, allowed...)).To(BeTrue(), "the manager may not %v", allowed)
		}
		for _, refused := range [][]string{
			{"get", "secrets", "-n", "default"}, {"list", "secrets", "--all-namespaces"}, {"delete", "pods", "-n", namespace},
			{"create", "deployments", "-n", namespace}, {"delete", "configmaps", "-n", "default"}, {"update", "llmproviders", "--subresource=finalizers"},
			{"create", "leases", "-n", "default"}, {"create", "events", "-n", "default"}, {"delete", "llmproviders"}, {"*", "*"},
			{"create", "pods", "-n", "default"}, {"update", "pods", "-n", "default"}, {"patch", "pods", "--subresource=status", "-n", "default"},
		} {
			Expect(canI(saConfig, refused...)).To(BeFalse(), "the manager may %v, which it does not need", refused)
		}
		By("and an action outside its RBAC is refused by the API server")
		out, err := run(filepath.Join(env("K8S_BIN"), "kubectl"), "--kubeconfig", saConfig, "-n", "default", "get", "secrets")
		Expect(err).To(HaveOccurred())
		Expect(out).To(ContainSubstring("forbidden"))
	})

	It("reads a team's object storage credentials only once the team grants it, in that namespace only", func() {
		kubectl("create", "namespace", "team-s3")
		kubectl("label", "namespace", "team-s3", "llmquota.dev/gemini=allowed")
		kubectl("-n", "team-s3", "create", "secret", "generic", "s3", "--from-literal=accessKeyID=a", "--from-literal=secretAccessKey=b")
		// A public address (TEST-NET-3): the endpoint passes the egress check,
		// so the Secret is what the manager asks for next.
		applyText(`apiVersion: llmquota.dev/v1alpha1
kind: InferenceBatch
metadata: {name: from-s3, namespace: team-s3}
spec:
  providerRef: {name: gemini}
  itemsFrom: {s3: {endpoint: "https://203.0.113.10", bucket: inputs, key: items.jsonl, credentialsSecretName: s3}}
`)
		Eventually(func() string {
			return kubectl("-n", "team-s3", "get", "inferencebatch", "from-s3", "-o", `jsonpath={.status.conditions[?(@.type=="Admitted")].message}`)
		}, 60*time.Second, time.Second).Should(ContainSubstring(`the manager may not read Secret "s3" in namespace team-s3`))
		Expect(canI(saConfig, "get", "secrets", "-n", "team-s3")).To(BeFalse())

		By("the team binds the chart's role for its own namespace")
		kubectl("-n", "team-s3", "create", "rolebinding", "llmquota-s3-credentials", "--clusterrole=llmquota-s3-credentials",
			"--serviceaccount="+namespace+":"+sa)
		Expect(canI(saConfig, "get", "secrets", "-n", "team-s3")).To(BeTrue())
		Expect(canI(saConfig, "get", "secrets", "-n", "default")).To(BeFalse(), "one team's grant reaches another's Secrets")
		Expect(canI(saConfig, "list", "secrets", "-n", "team-s3")).To(BeFalse(), "the grant is more than get")
		kubectl("-n", "team-s3", "delete", "inferencebatch", "from-s3")
	})

	It("warms an Ollama pod through the node agent, as the chart's agent ServiceAccount, and runs a batch on it", func() {
		helm("upgrade", release, chartDir, "-n", namespace, "--reuse-values", "--wait", "--timeout", "2m", "--set", "nodeAgent.enabled=true")
		Expect(kubectl("-n", namespace, "get", "daemonset", "llmquota-node-agent", "-o", "jsonpath={.status.numberReady}")).To(Equal("2"))

		ollama, err := ollamaserver.StartFromEnv()
		Expect(err).NotTo(HaveOccurred())
		DeferCleanup(ollama.Close)
		DeferCleanup(func() {
			if CurrentSpecReport().Failed() {
				AddReportEntry("node-agent.log", readFile(filepath.Join(workDir, "node-agent.log")))
				AddReportEntry("ollama.log", ollama.Log())
			}
		})
		node := kubectl("get", "nodes", "-o", "jsonpath={.items[0].metadata.name}")
		startProcess("node-agent.log", filepath.Join(env("LLMQUOTA_BIN"), "node-agent"),
			"--kubeconfig", saKubeconfig(agentSA), "--node-name", node, "--poll-interval=1s",
			"--metrics-bind-address=0", "--health-probe-bind-address=0")

		kubectl("create", "namespace", "llm")
		applyText(fmt.Sprintf(ollamaPool, node, ollama.URL))
		// kubectl wait with a selector fails at once while nothing matches:
		// first wait for the Deployment's pod to exist.
		Eventually(func() string {
			return kubectl("-n", "llm", "get", "pod", "-l", "app=ollama", "-o", "name")
		}, 60*time.Second, time.Second).ShouldNot(BeEmpty())
		kubectl("-n", "llm", "wait", "--for=condition=llmquota.dev/ModelWarm", "pod", "-l", "app=ollama", "--timeout=120s")
		// KWOK's fake kubelet may write the pod's conditions back from a
		// stale copy; the agent restores its own at the next poll.
		Eventually(func() string {
			return kubectl("-n", "llm", "get", "pod", "-l", "app=ollama", "-o", `jsonpath={.items[0].status.conditions[?(@.type=="llmquota.dev/ModelWarm")].message}`)
		}, 30*time.Second, time.Second).Should(MatchRegexp(`^model tiny-a warm in \d+ms on attempt 1 of 3, context \d+ tokens$`))
		kubectl("wait", "--for=condition=Warm", "llmprovider/local-e2e", "--timeout=60s")
		Expect(kubectl("get", "llmprovider", "local-e2e", "-o", "jsonpath={.status.endpoints[0].state} {.status.endpoints[0].model} {.status.endpoints[0].node}")).
			To(Equal("Warm tiny-a " + node))

		kubectl("-n", "llm", "wait", "--for=condition=Complete", "inferencebatch/on-ollama", "--timeout=120s")
		results := kubectl("-n", "llm", "get", "configmap", "-l", "llmquota.dev/batch=on-ollama", "-o", "jsonpath={.items[*].data.results\\.jsonl}")
		Expect(strings.Count(results, `"status":"succeeded"`)).To(Equal(3), results)

		agentLog := readFile(filepath.Join(workDir, "node-agent.log"))
		Expect(agentLog).NotTo(ContainSubstring("forbidden"), "the chart's RBAC was not enough for the agent")
		Expect(strings.Count(agentLog, `"msg":"NVML is not available`)).To(Equal(1), "said once on a node without a driver")
		for _, refused := range [][]string{{"patch", "pods", "-n", "llm"}, {"get", "secrets", "-n", namespace}, {"update", "llmproviders"}} {
			Expect(canI(saKubeconfig(agentSA), refused...)).To(BeFalse(), "the agent may %v, which it does not need", refused)
		}
	})

	It("upgrades with changed values", func() {
		helm("upgrade", release, chartDir, "-n", namespace, "--wait", "--timeout", "2m",
			"--set", "manager.secretNamespaces={"+namespace+"}", "--set", "manager.replicas=2", "--set", "manager.logLevel=debug")
		Expect(kubectl("-n", namespace, "get", "deployment", "llmquota-manager", "-o", "jsonpath={.spec.replicas} {.status.availableReplicas}")).To(Equal("2 2"))
		Expect(kubectl("-n", namespace, "get", "pdb", "llmquota-manager", "-o", "name")).To(ContainSubstring("llmquota-manager"))
		Expect(kubectl("-n", namespace, "get", "deployment", "llmquota-manager", "-o", "jsonpath={.spec.template.spec.containers[0].args}")).To(ContainSubstring("--zap-log-level=debug"))
	})

	It("uninstalls, leaving only the CRDs", func() {
		stopProcesses()
		helm("uninstall", release, "-n", namespace, "--wait", "--timeout", "2m")
		for _, kind := range []string{"deployments,services,serviceaccounts,roles,rolebindings,networkpolicies,poddisruptionbudgets", "clusterroles,clusterrolebindings",
			"validatingadmissionpolicies,validatingadmissionpolicybindings"} {
			Eventually(func() string {
				out, _ := run(filepath.Join(env("K8S_BIN"), "kubectl"), "get", kind, "-A", "-l", "app.kubernetes.io/instance="+release, "-o", "name")
				return strings.TrimSpace(out)
			}, 30*time.Second, time.Second).Should(Or(BeEmpty(), ContainSubstring("No resources found")))
		}
		Expect(kubectl("get", "crd", "llmproviders.llmquota.dev", "-o", "name")).To(ContainSubstring("llmproviders"), "Helm keeps CRDs on uninstall")
	})
})

// ollamaPool is an Ollama pool on one node whose pod reaches a real
// ollama serve through the endpoint override (KWOK pods have fake IPs),
// with its LLMProvider and a batch of three prompts (format: node, URL).
const ollamaPool = `apiVersion: apps/v1
kind: Deployment
metadata: {name: ollama, namespace: llm}
spec:
  replicas: 1
  selector: {matchLabels: {app: ollama}}
  template:
    metadata:
      labels: {app: ollama}
      annotations: {llmquota.dev/ollama-endpoint: "%[2]s"}
    spec:
      nodeSelector: {kubernetes.io/hostname: "%[1]s"}
      tolerations: [{operator: Exists}]
      readinessGates: [{conditionType: llmquota.dev/ModelWarm}]
      containers: [{name: ollama, image: ollama/ollama:0.17.4}]
---
apiVersion: llmquota.dev/v1alpha1
kind: LLMProvider
metadata: {name: local-e2e}
spec:
  type: Ollama
  namespaceSelector: {}
  model: tiny-a
  limits: {requestsPerMinute: 600, maxConcurrency: 1}
  ollama:
    namespace: llm
    podSelector: {matchLabels: {app: ollama}}
---
apiVersion: llmquota.dev/v1alpha1
kind: InferenceBatch
metadata: {name: on-ollama, namespace: llm}
spec:
  providerRef: {name: local-e2e}
  items:
  - {id: a, prompt: "first", score: "0.9"}
  - {id: b, prompt: "second", score: "0.9"}
  - {id: c, prompt: "third", score: "0.9"}
`

func readFile(path string) string {
	data, err := os.ReadFile(path)
	Expect(err).NotTo(HaveOccurred())
	return string(data)
}

func applyText(yaml string) {
	path := filepath.Join(workDir, fmt.Sprintf("apply-%d.yaml", time.Now().UnixNano()))
	Expect(os.WriteFile(path, []byte(yaml), 0o600)).To(Succeed())
	kubectl("apply", "-f", path)
}

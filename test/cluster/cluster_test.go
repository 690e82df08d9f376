//go:build cluster

package cluster

import (
	"crypto/tls"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/NVIDIA/go-nvml/pkg/nvml"
	"github.com/NVIDIA/go-nvml/pkg/nvml/mock/dgxh100"
	"github.com/NVIDIA/go-nvml/pkg/nvml/mock/server"
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	llmv1 "github.com/llmquota/llmquota/api/v1alpha1"
	"github.com/llmquota/llmquota/internal/agent/gpu"
	"github.com/llmquota/llmquota/internal/agent/podgpu"
	"github.com/llmquota/llmquota/internal/emulator"
)

const (
	release   = "llmquota"
	namespace = "llmquota-system"
	work      = "work"
	// emulatorLimit is the quota the emulator enforces on every API key;
	// the providers ask for the same requestsPerMinute.
	emulatorLimit = "30/1m"
	// steadyItems make a batch that outlasts a quota window twice at
	// 30 requests a minute: long enough to crash, delete and upgrade the
	// leader in the middle of it.
	steadyItems = 75
	// gatewayCalls an app makes through the gateway, one every 5 s, while
	// the steady batch runs through the managers' kills.
	gatewayCalls = 40
	// standbyCalls an app makes, one every 3 s, with no wait for quota, to
	// a provider that lends standby grants.
	standbyCalls = 70
)

var chartDir, _ = filepath.Abs("../../charts/llmquota")

// leaderKilledAt and leaderElectedAt bound the election after the kill -9
// of the leader's container: the app's calls begun between them waited
// for the new leader.
var leaderKilledAt, leaderElectedAt time.Time

// restrictedNamespaces are where everything runs, under the restricted Pod
// Security profile, enforced.
var restrictedNamespaces = []string{namespace, "providers", "llm", work}

func installArgs(cmd string) []string {
	repo, tag := env("IMAGE_REPOSITORY"), env("IMAGE_TAG")
	apiIP, apiPort := apiServerEndpoint()
	return []string{cmd, release, chartDir, "-n", namespace, "--wait", "--timeout", "3m",
		"--set", "image.repository=" + repo + "/manager", "--set-string", "image.tag=" + tag, "--set", "image.pullPolicy=Never",
		"--set", "nodeAgent.enabled=true", "--set", "nodeAgent.nvml=false", "--set", "nodeAgent.pollInterval=2s",
		"--set", "nodeAgent.image.repository=" + repo + "/node-agent", "--set-string", "nodeAgent.image.tag=" + tag,
		"--set", "manager.replicas=2", "--set", "manager.secretNamespaces={" + namespace + "}",
		"--set", "gateway.enabled=true", "--set", "gateway.replicas=3", "--set", "gateway.image.repository=" + repo + "/gateway", "--set-string", "gateway.image.tag=" + tag,
		// The cluster enforces NetworkPolicy (kube-router): every spec
		// runs with the manager's and the gateway's egress held to the
		// API server, the emulator and the Ollama pool, as docs/install.md
		// tells a platform engineer to set it.
		"--set", "networkPolicy.egress.enabled=true",
		"--set", "networkPolicy.egress.apiServerCIDRs={" + apiIP + "/32}", "--set", "networkPolicy.egress.apiServerPorts={" + apiPort + "}",
		"--set-json", `networkPolicy.egress.extra=[` +
			`{"to":[{"namespaceSelector":{"matchLabels":{"kubernetes.io/metadata.name":"providers"}}}],"ports":[{"port":8090,"protocol":"TCP"}]},` +
			`{"to":[{"namespaceSelector":{"matchLabels":{"kubernetes.io/metadata.name":"llm"}},"podSelector":{"matchLabels":{"app":"ollama"}}}],"ports":[{"port":11434,"protocol":"TCP"}]}]`}
}

var _ = Describe("llmquota on a real node, from its images", Ordered, func() {
	BeforeAll(func() {
		for _, ns := range restrictedNamespaces {
			kubectl("create", "namespace", ns)
			kubectl("label", "namespace", ns, "pod-security.kubernetes.io/enforce=restricted")
		}
		kubectl("label", "nodes", "--all", "nvidia.com/gpu.present=true") // the agent's nodeSelector
		apply(fmt.Sprintf(emulatorYAML, env("IMAGE_REPOSITORY"), env("IMAGE_TAG"), emulatorLimit))
		apply(ollamaPoolYAML)
	})

	It("keeps an Ollama pod out of Ready while its model is cold (no agent yet)", func() {
		// kubectl wait with a selector fails at once while nothing matches:
		// first wait for the Deployment's pod to exist.
		Eventually(func() string {
			return kubectl("-n", "llm", "get", "pod", "-l", "app=ollama", "-o", "name")
		}, 60*time.Second, time.Second).ShouldNot(BeEmpty())
		kubectl("-n", "llm", "wait", "--for=condition=ContainersReady", "pod", "-l", "app=ollama", "--timeout=120s")
		// The kubelet computes Ready, readiness gates included, in the same
		// status write as ContainersReady: with the containers ready, Ready
		// is already what it will stay until the agent says the model is warm.
		Expect(kubectl("-n", "llm", "get", "pod", "-l", "app=ollama", "-o",
			`jsonpath={.items[0].status.conditions[?(@.type=="ContainersReady")].status} {.items[0].status.conditions[?(@.type=="Ready")].status} {.items[0].status.conditions[?(@.type=="Ready")].reason}`)).
			To(Equal("True False ReadinessGatesNotReady"))
	})

	It("installs the chart with the built images: two managers and the node agent, Ready, locked down", func() {
		helm(installArgs("install")...)
		// helm --wait counts a one-node DaemonSet ready at zero Ready pods (desired minus maxUnavailable),
		// so wait for the rollouts themselves before reading their counts.
		kubectl("-n", namespace, "rollout", "status", "deployment/llmquota-manager", "--timeout=120s")
		// Ready only once the leader's quota authority answers it.
		kubectl("-n", namespace, "rollout", "status", "deployment/llmquota-gateway", "--timeout=120s")
		kubectl("-n", namespace, "rollout", "status", "daemonset/llmquota-node-agent", "--timeout=120s")
		Expect(kubectl("-n", namespace, "get", "deployment", "llmquota-manager", "-o", "jsonpath={.status.readyReplicas}")).To(Equal("2"))
		Expect(kubectl("-n", namespace, "get", "daemonset", "llmquota-node-agent", "-o", "jsonpath={.status.numberReady}")).To(Equal("1"))
		Eventually(leaderPod, 60*time.Second, time.Second).ShouldNot(BeEmpty())

		By("each container's process, as containerd runs it: uid 65532, no capabilities, no new privileges, seccomp")
		for _, component := range []string{"manager", "node-agent"} {
			pods := strings.Fields(kubectl("-n", namespace, "get", "pod", "-l", "app.kubernetes.io/component="+component, "-o", "jsonpath={.items[*].metadata.name}"))
			Expect(pods).NotTo(BeEmpty())
			for _, pod := range pods {
				status := procStatus(hostPID(pod))
				Expect(status).To(MatchRegexp(`(?m)^Uid:\s+65532\s`), pod)
				Expect(status).To(MatchRegexp(`(?m)^CapEff:\s+0+$`), pod)
				Expect(status).To(MatchRegexp(`(?m)^NoNewPrivs:\s+1$`), pod)
				Expect(status).To(MatchRegexp(`(?m)^Seccomp:\s+2$`), pod)
			}
		}
		By("and the images' version in their logs")
		Expect(kubectl("-n", namespace, "logs", leaderPod())).To(ContainSubstring(`"version":"` + env("IMAGE_TAG") + `"`))
	})

	It("maps real pods' processes to their pods through the node's cgroups, with go-nvml's mock listing their PIDs on a GPU", func() {
		resolver := podgpu.Resolver{ProcRoot: "/proc"}
		var procs []nvml.ProcessInfo
		want := map[string]uint64{}
		for i, pod := range strings.Fields(kubectl("-n", namespace, "get", "pod", "-l", "app.kubernetes.io/name=llmquota", "-o", "jsonpath={.items[*].metadata.name}")) {
			pid, err := strconv.ParseUint(hostPID(pod), 10, 32)
			Expect(err).NotTo(HaveOccurred())
			uid := kubectl("-n", namespace, "get", "pod", pod, "-o", "jsonpath={.metadata.uid}")
			owner, ok := resolver.Owner(uint32(pid))
			Expect(ok).To(BeTrue(), "pid %d of %s has no pod in its cgroup", pid, pod)
			Expect(owner).To(Equal(podgpu.Owner{PodUID: uid, ContainerID: containerID(pod)}), pod)
			used := uint64(i+1) << 30
			procs = append(procs, nvml.ProcessInfo{Pid: uint32(pid), UsedGpuMemory: used})
			want[uid] = used
		}
		Expect(want).To(HaveLen(6), "two managers, three gateways and the agent")
		procs = append(procs, nvml.ProcessInfo{Pid: 1, UsedGpuMemory: 1 << 30}) // init: no pod's
		mock := dgxh100.New()
		for i, nd := range mock.Devices {
			d := nd.(*server.Device)
			d.GetMemoryInfo_v2Func = func() (nvml.Memory_v2, nvml.Return) {
				return nvml.Memory_v2{Total: 80 << 30, Used: 10 << 30, Free: 70 << 30}, nvml.SUCCESS
			}
			d.GetUtilizationRatesFunc = func() (nvml.Utilization, nvml.Return) { return nvml.Utilization{}, nvml.SUCCESS }
			d.GetComputeRunningProcessesFunc = func() ([]nvml.ProcessInfo, nvml.Return) {
				if i == 0 {
					return procs, nvml.SUCCESS
				}
				return nil, nvml.SUCCESS
			}
		}
		reader, err := gpu.Open(mock)
		Expect(err).NotTo(HaveOccurred())
		defer func() { _ = reader.Close() }()
		devices, err := reader.Devices()
		Expect(err).NotTo(HaveOccurred())
		usage := podgpu.Attribute(devices, resolver.Owner)
		Expect(usage).To(HaveLen(len(want)), "init's memory is no pod's")
		for uid, bytes := range want {
			Expect(usage[uid].Bytes).To(Equal(bytes), uid)
			Expect(usage[uid].ByGPU).To(Equal(map[int]uint64{0: bytes}), uid)
		}
	})

	It("holds the manager's and the gateway's egress to what the chart's policy allows, on a node that enforces it", func() {
		leader := podIP(namespace, leaderPod())
		gateway := kubectl("-n", namespace, "get", "pod", "-l", "app.kubernetes.io/component=gateway", "-o", "jsonpath={.items[0].metadata.name}")
		// The Ollama pool's pod is in no policy: what it reaches shows the
		// address listens, so a refusal from the others is the policy's.
		unpoliced := kubectl("-n", "llm", "get", "pod", "-l", "app=ollama", "-o", "jsonpath={.items[0].metadata.name}")

		By("the gateway reaches the leader's quota port and the emulator, not the leader's metrics port")
		Expect(connectFrom(namespace, gateway, leader, "8444")).To(Equal("open"))
		Expect(connectFrom(namespace, gateway, emulatorIP, "80")).To(Equal("open"))
		Expect(connectFrom("llm", unpoliced, leader, "8443")).To(Equal("open"))
		Expect(connectFrom(namespace, gateway, leader, "8443")).To(Equal("ECONNREFUSED"))

		By("the manager reaches the API server through its Service and the emulator, not the gateway")
		Expect(connectFrom(namespace, leaderPod(), "10.96.0.1", "443")).To(Equal("open"))
		Expect(connectFrom(namespace, leaderPod(), emulatorIP, "80")).To(Equal("open"))
		Expect(connectFrom("llm", unpoliced, podIP(namespace, gateway), "8080")).To(Equal("open"))
		Expect(connectFrom(namespace, leaderPod(), podIP(namespace, gateway), "8080")).To(Equal("ECONNREFUSED"))
	})

	It("turns the Ollama pod Ready once the agent warmed its model, and runs a batch on the pool", func() {
		apply(ollamaProviderYAML)
		kubectl("-n", "llm", "wait", "--for=condition=llmquota.dev/ModelWarm", "pod", "-l", "app=ollama", "--timeout=120s")
		kubectl("-n", "llm", "wait", "--for=condition=Ready", "pod", "-l", "app=ollama", "--timeout=60s")
		warm := kubectl("-n", "llm", "get", "pod", "-l", "app=ollama", "-o", `jsonpath={.items[0].status.conditions[?(@.type=="llmquota.dev/ModelWarm")].lastTransitionTime}`)
		ready := kubectl("-n", "llm", "get", "pod", "-l", "app=ollama", "-o", `jsonpath={.items[0].status.conditions[?(@.type=="Ready")].lastTransitionTime}`)
		Expect(ready >= warm).To(BeTrue(), "Ready at %s, before the model was warm at %s", ready, warm)
		kubectl("wait", "--for=condition=Warm", "llmprovider/local", "--timeout=60s")

		kubectl("-n", "llm", "wait", "--for=condition=Complete", "inferencebatch/on-ollama", "--timeout=120s")
		Expect(resultsOf("llm", "on-ollama")).To(HaveLen(3))
		Expect(countSucceeded(resultsOf("llm", "on-ollama"))).To(Equal(3))
	})

	It("runs the original report's 136-item batch to Complete through the emulator Service", func() {
		createKey("gemini-api-key", "report-key")
		apply(providerYAML("gemini", "gemini-api-key"))
		kubectl("wait", "--for=condition=Ready", "llmprovider/gemini", "--timeout=60s")
		sample, err := os.ReadFile(filepath.Join("../../config/samples", "llmquota_v1alpha1_inferencebatch.yaml"))
		Expect(err).NotTo(HaveOccurred())
		apply(strings.Replace(string(sample), "batchDelayMilliseconds: 2000", "batchDelayMilliseconds: 200", 1))
		// 41 calls at 30 a minute: the second minute's window is needed.
		kubectl("-n", "default", "wait", "--for=condition=Complete", "inferencebatch/news-sentiment", "--timeout=240s")
		Expect(kubectl("-n", "default", "get", "inferencebatch", "news-sentiment", "-o", "jsonpath={.status.progress} {.status.counts.filtered} {.status.counts.succeeded}")).
			To(Equal("136/136 95 41"))
		rs := resultsOf("default", "news-sentiment")
		Expect(rs).To(HaveLen(136))
		Expect(countSucceeded(rs)).To(Equal(41))
	})

	It("serves the manager's metrics over HTTPS to a scraper the chart's metrics-reader role allows, and to no one else", func() {
		kubectl("-n", namespace, "create", "serviceaccount", "scraper")
		kubectl("create", "clusterrolebinding", "llmquota-scraper", "--clusterrole=llmquota-manager-metrics-reader", "--serviceaccount="+namespace+":scraper")
		url := fmt.Sprintf("https://%s:8443/metrics", kubectl("-n", namespace, "get", "pod", leaderPod(), "-o", "jsonpath={.status.podIP}"))
		allowed := strings.TrimSpace(kubectl("-n", namespace, "create", "token", "scraper"))
		other := strings.TrimSpace(kubectl("-n", namespace, "create", "token", "default"))
		Eventually(func() (int, error) { code, _, err := scrape(url, allowed); return code, err }, 30*time.Second, time.Second).Should(Equal(http.StatusOK))
		_, body, err := scrape(url, allowed)
		Expect(err).NotTo(HaveOccurred())
		Expect(body).To(ContainSubstring(`llmquota_provider_requests_total{outcome="Succeeded",provider="gemini"} 41`))
		Expect(body).To(ContainSubstring(`llmquota_provider_call_duration_seconds_bucket{`))
		Expect(body).To(ContainSubstring(`llmquota_window_limit_requests{`))
		Expect(scrapeCode(url, "")).To(Equal(http.StatusUnauthorized))
		Expect(scrapeCode(url, other)).To(Equal(http.StatusForbidden))

		By("and a real Prometheus scrapes both replicas with that token")
		var targets, want []string
		for _, ip := range strings.Fields(kubectl("-n", namespace, "get", "pod", "-l", "app.kubernetes.io/component=manager", "-o", "jsonpath={.items[*].status.podIP}")) {
			targets = append(targets, ip+":8443")
			want = append(want, ip+":8443=1")
		}
		agentIP := kubectl("-n", namespace, "get", "pod", "-l", "app.kubernetes.io/component=node-agent", "-o", "jsonpath={.items[0].status.podIP}")
		prom := startPrometheus(targets, allowed, []string{agentIP + ":8080"})
		Eventually(scrapeHealth(prom), 60*time.Second, time.Second).Should(ConsistOf(want))
		Eventually(func() ([]promSample, error) {
			return promQuery(prom, `llmquota_window_limit_requests{provider="gemini",window="minute"}`)
		}, 30*time.Second, time.Second).Should(ContainElement(HaveField("Value", "30")))

		By("every metric the chart's alerts name is one the running manager or node agent exports")
		_, agentBody, err := scrape("http://"+agentIP+":8080/metrics", "")
		Expect(err).NotTo(HaveOccurred())
		Expect(agentBody).To(ContainSubstring(`llmquota_agent_nvml_available{node="llmquota-node"} 0`), "this node has no GPU")
		exported := body + agentBody
		rules := must("", env("HELM"), "template", release, chartDir, "--kube-version", "1.37.2", "--set", "metrics.prometheusRule.enabled=true",
			"--set", "nodeAgent.enabled=true", "--show-only", "templates/monitoring.yaml")
		named := regexp.MustCompile(`\bllmquota_[a-z_]+`).FindAllString(rules, -1)
		Expect(named).NotTo(BeEmpty())
		// Series that exist only once something happens or is configured;
		// test/chart's TestAlertsNameRegisteredMetrics checks that the code
		// registers them.
		conditional := map[string]string{
			"llmquota_cost_limit_usd":         "only for providers with cost alerts or budgets",
			"llmquota_batch_failed":           "only while a batch has failed",
			"llmquota_gateway_requests_total": "the gateway's, from its first call",
		}
		for _, name := range named {
			if strings.HasPrefix(name, "llmquota_agent_gpu_") {
				continue // NVML's figures: exported where a GPU is (the agent suite checks them on go-nvml's H100 mock)
			}
			if _, ok := conditional[name]; ok {
				continue
			}
			Expect(exported).To(MatchRegexp(`(?m)^`+name+`[{ ]`), "an alert names %s, which neither binary exports", name)
		}

		By("every query of the chart's Grafana dashboard runs on that Prometheus, and each panel but the GPU ones has data")
		for _, p := range dashboardPanels() {
			for _, expr := range p.exprs {
				Eventually(func() error { _, err := promQuery(prom, expr); return err }, 30*time.Second, time.Second).Should(Succeed(),
					"panel %q: %s", p.title, expr)
			}
			if strings.Contains(p.title, "GPU") {
				continue // NVML's series: this node has no GPU
			}
			Eventually(func() (int, error) {
				n := 0
				for _, expr := range p.exprs {
					samples, err := promQuery(prom, expr)
					if err != nil {
						return 0, err
					}
					n += len(samples)
				}
				return n, nil
			}, 30*time.Second, time.Second).Should(BeNumerically(">", 0), "panel %q draws nothing from the running binaries", p.title)
		}
		if path := os.Getenv("LLMQUOTA_DASHBOARD_DUMP"); path != "" { // docs/dashboard.md's rendering of the panels' data
			Expect(os.WriteFile(path, []byte(renderPanels(prom, dashboardPanels())), 0o644)).To(Succeed())
		}
	})

	It("serves Pods through the gateway with their projected token (the Anthropic Go SDK, the OpenAI Node SDK), and refuses a Pod without use", func() {
		createKey("shared-api-key", "shared-key")
		// No minimum interval: the gateways give this provider's calls
		// spare grants (docs/gateway.md), and the app's calls 20 ms apart
		// use some; the server's log is checked with the others' below.
		apply(strings.Replace(providerYAML("shared", "shared-api-key"), "minIntervalMilliseconds: 1000, ", "", 1))
		kubectl("wait", "--for=condition=Ready", "llmprovider/shared", "--timeout=60s")
		apply(useRBACYAML("shared", work, "app"))
		kubectl("-n", work, "create", "serviceaccount", "stranger")
		apply(gatewayAppYAML("gateway-app", "app", "shared", 10, "20ms", ""))
		apply(gatewayAppYAML("gateway-stranger", "stranger", "shared", 1, "1s", ""))
		calls, sum := gatewayAppLog("gateway-app")
		Expect(sum.ByStatus).To(Equal(map[int]int{200: 10}), "calls: %+v", calls)
		Expect(calls[0].Provider).To(Equal("shared"))
		Expect(calls[0].Text).NotTo(BeEmpty())
		calls, sum = gatewayAppLog("gateway-stranger")
		Expect(sum.ByStatus).To(Equal(map[int]int{403: 1}), "calls: %+v", calls)

		By("and a Pod with the official OpenAI Node SDK (openai from npm), plain and streamed")
		apply(gatewayNodeAppYAML("gateway-node-app", "app", "shared", 2))
		calls, sum = gatewayAppLog("gateway-node-app")
		Expect(sum.ByStatus).To(Equal(map[int]int{200: 2}), "calls: %+v", calls)
		for _, c := range calls {
			Expect(c.Provider).To(Equal("shared"))
			Expect(c.Text).To(HavePrefix("emulated answer"))
		}
		Expect(calls[1].Streamed).To(BeTrue())
		Expect(calls[1].Tokens).To(BeNumerically(">", 0), "the stream's usage chunk")
	})

	It("gives a tenant only what its RBAC grants: batches in its own namespace through edit, providers to read, no quota of its own choosing, no Secret", func() {
		const tenant, other, alice = "tenant-a", "tenant-b", "alice"
		kubectl("create", "namespace", tenant)
		kubectl("create", "namespace", other)
		kubectl("label", "namespace", tenant, "team=a")
		createKey("tenant-api-key", "tenant-key")
		apply(strings.Replace(providerYAML("team-a", "tenant-api-key"), "namespaceSelector: {}", "namespaceSelector: {matchLabels: {team: a}}", 1))
		kubectl("wait", "--for=condition=Ready", "llmprovider/team-a", "--timeout=60s")
		// What an admin grants a team: the built-in edit role in its
		// namespace (the chart's batch-editor aggregates into it) and
		// reading providers and priority classes cluster-wide.
		kubectl("-n", tenant, "create", "rolebinding", "alice-edit", "--clusterrole=edit", "--user="+alice)
		kubectl("create", "clusterrolebinding", "alice-providers", "--clusterrole=llmquota-provider-viewer", "--user="+alice)
		can := func(args ...string) string { // the answer is the last word; warnings (a cluster-scoped kind) come before it
			out, _ := run("", kubectlPath(), append([]string{"auth", "can-i", "--as=" + alice}, args...)...)
			words := strings.Fields(out)
			if len(words) == 0 {
				return ""
			}
			return words[len(words)-1]
		}
		Eventually(func() string { return can("create", "inferencebatches.llmquota.dev", "-n", tenant) }, 60*time.Second, time.Second).
			Should(Equal("yes"), "the batch-editor role aggregated into edit")
		for _, c := range []struct {
			args []string
			want string
		}{
			{[]string{"get", "llmproviders.llmquota.dev"}, "yes"},
			{[]string{"get", "inferencepriorityclasses.llmquota.dev"}, "yes"},
			{[]string{"create", "inferencebatches.llmquota.dev", "-n", other}, "no"},
			{[]string{"update", "inferencebatches.llmquota.dev", "--subresource=status", "-n", tenant}, "no"},
			{[]string{"create", "llmproviders.llmquota.dev"}, "no"},
			{[]string{"update", "llmproviders.llmquota.dev/team-a"}, "no"},
			{[]string{"create", "inferencepriorityclasses.llmquota.dev"}, "no"},
			{[]string{"use", "llmproviders.llmquota.dev/team-a"}, "no"},
			{[]string{"get", "secrets", "-n", namespace}, "no"},
		} {
			Expect(can(c.args...)).To(Equal(c.want), "kubectl auth can-i --as=%s %s", alice, strings.Join(c.args, " "))
		}

		By("alice runs a batch in her namespace on the provider that selects it, and nowhere else")
		batch := func(ns string) string {
			return fmt.Sprintf("apiVersion: llmquota.dev/v1alpha1\nkind: InferenceBatch\nmetadata: {name: mine, namespace: %s}\n"+
				"spec:\n  providerRef: {name: team-a}\n  items:\n  - {id: a, score: \"0.9\", prompt: \"Classify headline a\"}\n  - {id: b, score: \"0.9\", prompt: \"Classify headline b\"}\n", ns)
		}
		must(batch(tenant), kubectlPath(), "apply", "--as="+alice, "-f", "-")
		kubectl("-n", tenant, "wait", "--for=condition=Complete", "inferencebatch/mine", "--timeout=120s")
		Expect(countSucceeded(resultsOf(tenant, "mine"))).To(Equal(2))
		out, err := run(batch(other), kubectlPath(), "apply", "--as="+alice, "-f", "-")
		Expect(err).To(HaveOccurred(), "alice created a batch in a namespace she was not given: %s", out)
		Expect(out).To(ContainSubstring("forbidden"))
		out, err = run(strings.Replace(providerYAML("alices-own", "tenant-api-key"), "namespaceSelector: {}", "namespaceSelector: {matchLabels: {team: a}}", 1),
			kubectlPath(), "apply", "--as="+alice, "-f", "-")
		Expect(err).To(HaveOccurred(), "alice made a provider (and its quota) of her own: %s", out)
		Expect(out).To(ContainSubstring("forbidden"))
		out, err = run("", kubectlPath(), "-n", namespace, "get", "secret", "tenant-api-key", "--as="+alice)
		Expect(err).To(HaveOccurred(), "alice read the provider's key: %s", out)

		By("and the provider's namespaceSelector holds even for whoever may create batches there")
		apply(batch(other))
		Eventually(func() string {
			return kubectl("-n", other, "get", "inferencebatch", "mine", "-o", `jsonpath={.status.conditions[?(@.type=="Admitted")].reason}`)
		}, 60*time.Second, time.Second).Should(Equal(llmv1.ReasonNamespaceNotSelected))
	})

	Describe("a batch that outlives its managers", Ordered, func() {
		BeforeAll(func() {
			createKey("steady-api-key", "steady-key")
			apply(providerYAML("steady", "steady-api-key"))
			kubectl("wait", "--for=condition=Ready", "llmprovider/steady", "--timeout=60s")
			apply(steadyBatchYAML(steadyItems))
			// An app calls the same provider through the gateway all along,
			// one call every 5 s: interactive first, the batch takes the rest,
			// both under the one quota the server's log is checked against.
			apply(useRBACYAML("steady", work, "app"))
			// Each call may wait 25 s for quota, longer than an election
			// after a kill -9 (the 15 s lease and a 2 s retry): a call begun
			// while no manager leads is answered by the next leader.
			apply(gatewayAppYAML("gateway-steady", "app", "steady", gatewayCalls, "5s", "25s"))
			// Another app calls a provider that lends standby grants, every
			// 3 s, with no wait at all: while no manager leads, the gateways
			// answer it from what the leader lent them before its kill.
			createKey("standby-api-key", "standby-key")
			apply(standbyProviderYAML("standby", "standby-api-key"))
			kubectl("wait", "--for=condition=Ready", "llmprovider/standby", "--timeout=60s")
			apply(useRBACYAML("standby", work, "app"))
			apply(gatewayAppYAML("gateway-standby", "app", "standby", standbyCalls, "3s", "0s"))
		})

		It("survives kill -9 of the leader's container and of a gateway's: the kubelet restarts them, a manager takes over, the other gateways serve", func() {
			waitSucceeded("steady", 5)
			// Six calls of no wait through the Service first: each gateway
			// replica served some, so each holds standby grants for them.
			Eventually(func() int {
				return strings.Count(kubectl("-n", work, "logs", "gateway-standby"), `{"n":`)
			}, 90*time.Second, time.Second).Should(BeNumerically(">=", 6))
			pod, holder := leaderPod(), leaseHolder()
			restarts := atoi(kubectl("-n", namespace, "get", "pod", pod, "-o", "jsonpath={.status.containerStatuses[0].restartCount}"))
			leaderKilledAt = time.Now()
			ctr("tasks", "kill", "-s", "SIGKILL", containerID(pod))
			Eventually(func() string {
				return kubectl("-n", namespace, "get", "pod", pod, "-o", "jsonpath={.status.containerStatuses[0].restartCount} {.status.containerStatuses[0].lastState.terminated.exitCode}")
			}, 60*time.Second, time.Second).Should(Equal(fmt.Sprintf("%d 137", restarts+1)))
			Eventually(leaseHolder, 90*time.Second, time.Second).ShouldNot(Or(Equal(holder), BeEmpty()))
			leaderElectedAt = leaseAcquired()
			GinkgoWriter.Printf("after kill -9 of %s, %s leads, %v later\n", pod, leaseHolder(), leaderElectedAt.Sub(leaderKilledAt).Round(time.Millisecond))
			By("the new leader heard the calls in flight from the three gateway pods before it admitted anything")
			Eventually(func() string { return kubectl("-n", namespace, "logs", leaderPod()) }, 60*time.Second, time.Second).
				Should(ContainSubstring(`told its calls in flight; admitting","pods":3`))
			waitSucceeded("steady", succeeded("steady")+1)

			By("and kill -9 of a gateway's container: the kubelet restarts it, the other two serve on")
			gw := strings.Fields(kubectl("-n", namespace, "get", "pods", "-l", "app.kubernetes.io/component=gateway", "-o", "jsonpath={.items[*].metadata.name}"))
			Expect(gw).To(HaveLen(3))
			gwRestarts := atoi(kubectl("-n", namespace, "get", "pod", gw[1], "-o", "jsonpath={.status.containerStatuses[0].restartCount}"))
			ctr("tasks", "kill", "-s", "SIGKILL", containerID(gw[1]))
			Eventually(func() string {
				return kubectl("-n", namespace, "get", "pod", gw[1], "-o", "jsonpath={.status.containerStatuses[0].restartCount} {.status.containerStatuses[0].lastState.terminated.exitCode}")
			}, 60*time.Second, time.Second).Should(Equal(fmt.Sprintf("%d 137", gwRestarts+1)))
			kubectl("-n", namespace, "rollout", "status", "deployment/llmquota-gateway", "--timeout=120s")
		})

		It("survives deleting the leader Pod and a gateway Pod: the other replicas take over", func() {
			pod := leaderPod()
			kubectl("-n", namespace, "delete", "pod", pod, "--wait=false")
			gw := strings.Fields(kubectl("-n", namespace, "get", "pods", "-l", "app.kubernetes.io/component=gateway", "-o", "jsonpath={.items[*].metadata.name}"))
			Expect(gw).To(HaveLen(3))
			kubectl("-n", namespace, "delete", "pod", gw[0], "--wait=false")
			Eventually(leaderPod, 90*time.Second, time.Second).ShouldNot(Or(Equal(pod), BeEmpty()))
			waitSucceeded("steady", succeeded("steady")+1)
			// Every gateway finds the new leader: its readiness check
			// answers 200 (gateways once kept calling the deleted pod's
			// address, their checks hanging for ever).
			var ips []string
			Eventually(func() []string {
				ips = nil
				rows := kubectl("-n", namespace, "get", "pod", "-l", "app.kubernetes.io/component=gateway", "-o",
					`jsonpath={range .items[*]}{.metadata.deletionTimestamp}|{.status.podIP}{"\n"}{end}`)
				for _, row := range strings.Fields(rows) {
					if deleting, ip, _ := strings.Cut(row, "|"); deleting == "" && ip != "" {
						ips = append(ips, ip)
					}
				}
				return ips
			}, 90*time.Second, time.Second).Should(HaveLen(3), "three live gateways with addresses")
			for _, ip := range ips {
				Eventually(func() (int, error) {
					code, _, err := scrape("http://"+ip+":8081/readyz", "")
					return code, err
				}, 60*time.Second, time.Second).Should(Equal(http.StatusOK), "gateway %s", ip)
			}
		})

		It("survives helm upgrade rolling the Deployment", func() {
			generation := atoi(kubectl("-n", namespace, "get", "deployment", "llmquota-manager", "-o", "jsonpath={.metadata.generation}"))
			helm(append(installArgs("upgrade"), "--set", "manager.logLevel=debug")...)
			Expect(atoi(kubectl("-n", namespace, "get", "deployment", "llmquota-manager", "-o", "jsonpath={.metadata.generation}"))).To(BeNumerically(">", generation))
			kubectl("-n", namespace, "rollout", "status", "deployment/llmquota-manager", "--timeout=180s")
		})

		It("completes with every result and without one request over the provider's window", func() {
			kubectl("-n", work, "wait", "--for=condition=Complete", "inferencebatch/steady", "--timeout=300s")
			rs := resultsOf(work, "steady")
			Expect(rs).To(HaveLen(steadyItems), "a result was lost")
			Expect(countSucceeded(rs)).To(Equal(steadyItems))

			log := emulatorLog()
			Expect(log).NotTo(BeEmpty())
			limits, err := emulator.ParseLimits(emulatorLimit)
			Expect(err).NotTo(HaveOccurred())
			Expect(emulator.CheckWindows(log, limits)).To(Succeed())
			for _, r := range log {
				Expect(r.Status).NotTo(Equal(http.StatusTooManyRequests), "the emulator refused a request over quota: %+v", r)
			}

			By("the app's gateway calls went on through the kills, and reached the server under the same quota")
			calls, sum := gatewayAppLog("gateway-steady")
			Expect(sum.Calls).To(Equal(gatewayCalls))
			outage := -1 // the first call that was not answered
			for i, c := range calls {
				// 503 while no manager leads (an election), 0 for a call cut
				// by the gateway Pod deleted under it, 429 for one whose wait
				// for quota ended first; never a provider's refusal passed on.
				Expect(c.Status).To(BeElementOf(http.StatusOK, http.StatusServiceUnavailable, http.StatusTooManyRequests, 0), "call %+v", c)
				if c.Status != http.StatusOK && outage < 0 {
					outage = i
				}
			}
			GinkgoWriter.Printf("gateway calls through the kills: %v\n", sum.ByStatus)
			// A call under way when the new leader took the Lease had waited
			// through the time no manager led (after the kill -9), as for
			// quota, and was answered by the new leader (200, or 429 when the
			// window the batch shares was full for the rest of its wait), not
			// 503. The app starts a call at least every 5 s, one after another,
			// and a call may wait 25 s: with an election longer than 5 s, one is
			// under way when it ends wherever the calls fall, though none need
			// begin during it.
			var duringElection []gatewayCall
			for _, c := range calls {
				if c.underWayAt(leaderElectedAt) {
					duringElection = append(duringElection, c)
				}
			}
			GinkgoWriter.Printf("gateway calls under way when the new leader took the Lease: %+v\n", duringElection)
			Expect(leaderElectedAt.Sub(leaderKilledAt)).To(BeNumerically(">", 5*time.Second), "an election shorter than the app's pace")
			Expect(duringElection).To(ContainElement(HaveField("Status", BeElementOf(http.StatusOK, http.StatusTooManyRequests))),
				"no call under way when the new leader took the Lease (%v, killed %v) waited for it", leaderElectedAt, leaderKilledAt)
			Expect(sum.ByStatus[http.StatusOK]).To(BeNumerically(">=", gatewayCalls/2), "calls: %+v", calls)
			if outage >= 0 {
				Expect(calls[outage:]).To(ContainElement(HaveField("Status", http.StatusOK)), "no call was answered after the first that was not: %+v", calls)
			}

			By("calls that could not wait were answered while no manager led, from standby grants")
			calls, sum = gatewayAppLog("gateway-standby")
			var fromStandby []gatewayCall
			for _, c := range calls {
				Expect(c.Status).To(BeElementOf(http.StatusOK, http.StatusServiceUnavailable, http.StatusTooManyRequests, 0), "call %+v", c)
				if c.Status == http.StatusOK && c.started().After(leaderKilledAt) && c.ended().Before(leaderElectedAt) {
					fromStandby = append(fromStandby, c)
				}
			}
			GinkgoWriter.Printf("calls of no wait: %v; %d answered while no manager led\n", sum.ByStatus, len(fromStandby))
			Expect(fromStandby).NotTo(BeEmpty(), "no call begun and ended between the kill -9 (%v) and the new leader's Lease (%v) was answered: %+v",
				leaderKilledAt, leaderElectedAt, calls)
		})
	})

	It("uninstalls, leaving only the CRDs", func() {
		helm("uninstall", release, "-n", namespace, "--wait", "--timeout", "2m")
		for _, kind := range []string{"deployments,daemonsets,services,serviceaccounts,roles,rolebindings,networkpolicies,poddisruptionbudgets,pods", "clusterroles,clusterrolebindings",
			"validatingadmissionpolicies,validatingadmissionpolicybindings"} {
			Eventually(func() string {
				out, _ := run("", kubectlPath(), "get", kind, "-A", "-l", "app.kubernetes.io/instance="+release, "-o", "name")
				return strings.TrimSpace(out)
			}, 60*time.Second, time.Second).Should(Or(BeEmpty(), ContainSubstring("No resources found")))
		}
		Expect(kubectl("get", "crd", "llmproviders.llmquota.dev", "inferencebatches.llmquota.dev", "-o", "name")).To(ContainSubstring("inferencebatches"), "Helm keeps CRDs on uninstall")
	})
})

// scrape GETs the metrics endpoint with a bearer token (none if empty);
// the manager serves a self-signed certificate, as the chart's
// ServiceMonitor expects.
func scrape(url, token string) (int, string, error) {
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}} //nolint:gosec // self-signed, as in the chart's ServiceMonitor
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		return 0, "", err
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := client.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer func() { _ = resp.Body.Close() }()
	body, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body), err
}

func scrapeCode(url, token string) int {
	code, _, err := scrape(url, token)
	Expect(err).NotTo(HaveOccurred())
	return code
}

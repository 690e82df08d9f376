//go:build cluster

package cluster

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/llmquota/llmquota/internal/emulator"
	"github.com/llmquota/llmquota/internal/results"
)

// leaseHolder is the identity holding the managers' leader lease.
func leaseHolder() string {
	out, _ := run("", kubectlPath(), "-n", namespace, "get", "lease", "manager.llmquota.dev", "-o", "jsonpath={.spec.holderIdentity}")
	return strings.TrimSpace(out)
}

// leaseAcquired is when the current leader took the managers' Lease.
func leaseAcquired() time.Time {
	at, err := time.Parse(time.RFC3339Nano, kubectl("-n", namespace, "get", "lease", "manager.llmquota.dev", "-o", "jsonpath={.spec.acquireTime}"))
	Expect(err).NotTo(HaveOccurred(), "the Lease's acquireTime")
	return at
}

// leaderPod is the Pod whose manager leads (an identity is pod_uuid).
func leaderPod() string {
	pod, _, _ := strings.Cut(leaseHolder(), "_")
	return pod
}

// containerID is the containerd id of a Pod's first container.
func containerID(pod string) string {
	id := kubectl("-n", namespace, "get", "pod", pod, "-o", "jsonpath={.status.containerStatuses[0].containerID}")
	Expect(id).To(HavePrefix("containerd://"))
	return strings.TrimPrefix(id, "containerd://")
}

// hostPID is the host's pid of a Pod's first container, from containerd.
func hostPID(pod string) string {
	id := containerID(pod)
	for _, line := range strings.Split(ctr("tasks", "ls"), "\n") {
		if f := strings.Fields(line); len(f) >= 3 && f[0] == id {
			return f[1]
		}
	}
	Fail("containerd runs no task for " + pod)
	return ""
}

func procStatus(pid string) string {
	data, err := os.ReadFile("/proc/" + pid + "/status")
	Expect(err).NotTo(HaveOccurred())
	return string(data)
}

// createKey stores a provider API key where the chart lets the manager read it.
func createKey(name, key string) {
	kubectl("-n", namespace, "create", "secret", "generic", name, "--from-literal=api-key="+key)
}

// resultsOf reads a batch's results from its ConfigMaps, one per item id.
func resultsOf(ns, batch string) map[string]results.Result {
	out := kubectl("-n", ns, "get", "configmap", "-l", "llmquota.dev/batch="+batch, "-o", `go-template={{range .items}}{{index .data "results.jsonl"}}{{"\n"}}{{end}}`)
	byID := map[string]results.Result{}
	for _, line := range strings.Split(out, "\n") {
		if strings.TrimSpace(line) == "" {
			continue
		}
		var r results.Result
		Expect(json.Unmarshal([]byte(line), &r)).To(Succeed(), line)
		byID[r.ID] = r
	}
	return byID
}

// countSucceeded counts the results that succeeded.
func countSucceeded(rs map[string]results.Result) int {
	n := 0
	for _, r := range rs {
		if r.Status == results.Succeeded {
			n++
		}
	}
	return n
}

// succeeded is a work-namespace batch's published count of succeeded items.
func succeeded(batch string) int {
	return atoi(kubectl("-n", work, "get", "inferencebatch", batch, "-o", "jsonpath={.status.counts.succeeded}"))
}

func waitSucceeded(batch string, n int) {
	EventuallyWithOffset(1, func() int { return succeeded(batch) }, 3*time.Minute, time.Second).Should(BeNumerically(">=", n))
}

// emulatorLog is every request the emulator answered, from its Pod's log
// (--log-requests).
func emulatorLog() []emulator.Record {
	out := kubectl("-n", "providers", "logs", "deployment/emulator")
	var log []emulator.Record
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		var r emulator.Record
		if json.Unmarshal(sc.Bytes(), &r) == nil && r.API != "" {
			log = append(log, r)
		}
	}
	return log
}

// providerYAML is a Gemini-type provider on the emulator's Service, asking
// for the emulator's quota.
func providerYAML(name, secret string) string {
	return providerYAMLWith(name, secret, "{requestsPerMinute: 30, tokensPerMinute: 1000000, minIntervalMilliseconds: 1000, maxConcurrency: 2}",
		"retry: {maxRetries: 3, initialBackoffMilliseconds: 1000, maxBackoffMilliseconds: 10000}")
}

// standbyProviderYAML is a provider that lends each gateway replica 2
// standby grants per namespace and model: no minimum interval, 4 slots.
func standbyProviderYAML(name, secret string) string {
	return providerYAMLWith(name, secret, "{requestsPerMinute: 30, maxConcurrency: 4}", "interactive: {standbyCalls: 2}")
}

// providerYAMLWith is a Gemini provider on the emulator with these limits
// and one more line of spec.
func providerYAMLWith(name, secret, limits, more string) string {
	return fmt.Sprintf(`apiVersion: llmquota.dev/v1alpha1
kind: LLMProvider
metadata: {name: %s}
spec:
  type: Gemini
  namespaceSelector: {}
  model: gemini-2.5-flash
  endpoint: http://%s
  credentialsSecretRef: {namespace: %s, name: %s, key: api-key}
  limits: %s
  %s
`, name, emulatorIP, namespace, secret, limits, more)
}

// steadyBatchYAML is n items that all pass minScore.
func steadyBatchYAML(n int) string {
	var b strings.Builder
	fmt.Fprintf(&b, "apiVersion: llmquota.dev/v1alpha1\nkind: InferenceBatch\nmetadata: {name: steady, namespace: %s}\nspec:\n  providerRef: {name: steady}\n  batchSize: 10\n  batchDelayMilliseconds: 500\n  items:\n", work)
	for i := range n {
		fmt.Fprintf(&b, "  - {id: item-%03d, score: \"0.9\", prompt: \"Classify headline %d\"}\n", i, i)
	}
	return b.String()
}

// apiServerEndpoint is where the kubernetes Service's endpoint is: what a
// NetworkPolicy sees, after kube-proxy's DNAT, for a Pod that calls the
// Service.
func apiServerEndpoint() (ip, port string) {
	out := kubectl("-n", "default", "get", "endpointslice", "-l", "kubernetes.io/service-name=kubernetes", "-o",
		"jsonpath={.items[0].endpoints[0].addresses[0]} {.items[0].ports[0].port}")
	ip, port, _ = strings.Cut(strings.TrimSpace(out), " ")
	Expect(ip).NotTo(BeEmpty(), "the kubernetes Service has no endpoint")
	return ip, port
}

func podIP(ns, pod string) string {
	return kubectl("-n", ns, "get", "pod", pod, "-o", "jsonpath={.status.podIP}")
}

// connectJS opens a TCP connection and prints "open", or the error Node
// got: ECONNREFUSED when nothing listens or a policy rejects it (kube-router
// rejects with ICMP port unreachable), ETIMEDOUT after 3 s unanswered.
const connectJS = `const s = require("net").connect({host: process.argv[1], port: +process.argv[2], timeout: 3000});
s.on("connect", () => { console.log("open"); process.exit(0); });
s.on("timeout", () => { console.log("ETIMEDOUT"); process.exit(2); });
s.on("error", (e) => { console.log(e.code); process.exit(3); });`

var probes int

// connectFrom connects to host:port from inside a running Pod's network
// namespace, in an ephemeral container of the Node test image (restricted
// profile), and returns what connectJS printed.
func connectFrom(ns, pod, host, port string) string {
	probes++
	name := fmt.Sprintf("connect-%d", probes)
	kubectl("-n", ns, "debug", pod, "--profile=restricted", "--image=localhost/llmquota-test/gateway-client-node:test",
		"--image-pull-policy=Never", "--container="+name, "--quiet", "--", "/node", "-e", connectJS, host, port)
	EventuallyWithOffset(1, func() string {
		return kubectl("-n", ns, "get", "pod", pod, "-o", `jsonpath={.status.ephemeralContainerStatuses[?(@.name=="`+name+`")].state.terminated.reason}`)
	}, time.Minute, 500*time.Millisecond).ShouldNot(BeEmpty(), "%s in %s/%s did not end", name, ns, pod)
	return strings.TrimSpace(kubectl("-n", ns, "logs", pod, "-c", name))
}

func kubectlPath() string { return filepath.Join(env("K8S_BIN"), "kubectl") }

// emulatorIP is the emulator Service's fixed ClusterIP: the test cluster
// runs no DNS, and a fixed address needs none.
const emulatorIP = "10.96.100.100"

// emulatorYAML runs the provider emulator image as a Deployment behind a
// Service (format: repository, tag, limits).
const emulatorYAML = `apiVersion: apps/v1
kind: Deployment
metadata: {name: emulator, namespace: providers}
spec:
  replicas: 1
  selector: {matchLabels: {app: emulator}}
  template:
    metadata: {labels: {app: emulator}}
    spec:
      securityContext: {runAsNonRoot: true, seccompProfile: {type: RuntimeDefault}}
      containers:
      - name: emulator
        image: %s/provider-emulator:%s
        imagePullPolicy: Never
        args: [--listen=0.0.0.0:8090, --limits=%s, --log-requests]
        ports: [{name: http, containerPort: 8090}]
        readinessProbe: {tcpSocket: {port: http}, periodSeconds: 1}
        securityContext: {allowPrivilegeEscalation: false, readOnlyRootFilesystem: true, capabilities: {drop: [ALL]}}
---
apiVersion: v1
kind: Service
metadata: {name: emulator, namespace: providers}
spec:
  clusterIP: ` + emulatorIP + `
  selector: {app: emulator}
  ports: [{port: 80, targetPort: http}]
`

// ollamaPoolYAML is an Ollama pool of one pod, from the test image holding
// the CPU ollama binary and generated tiny models, behind the ModelWarm
// readiness gate.
const ollamaPoolYAML = `apiVersion: apps/v1
kind: Deployment
metadata: {name: ollama, namespace: llm}
spec:
  replicas: 1
  selector: {matchLabels: {app: ollama}}
  template:
    metadata: {labels: {app: ollama}}
    spec:
      readinessGates: [{conditionType: llmquota.dev/ModelWarm}]
      securityContext: {runAsNonRoot: true, seccompProfile: {type: RuntimeDefault}}
      containers:
      - name: ollama
        image: localhost/llmquota-test/ollama-tiny:test
        imagePullPolicy: Never
        ports: [{name: http, containerPort: 11434}]
        readinessProbe: {httpGet: {path: /, port: http}, periodSeconds: 1}
        securityContext: {allowPrivilegeEscalation: false, capabilities: {drop: [ALL]}}
        volumeMounts: [{name: tmp, mountPath: /tmp}]
      volumes: [{name: tmp, emptyDir: {}}]
`

// ollamaProviderYAML is the pool's LLMProvider and a batch of three prompts.
const ollamaProviderYAML = `apiVersion: llmquota.dev/v1alpha1
kind: LLMProvider
metadata: {name: local}
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
  providerRef: {name: local}
  items:
  - {id: a, prompt: "first", score: "0.9"}
  - {id: b, prompt: "second", score: "0.9"}
  - {id: c, prompt: "third", score: "0.9"}
`

// useRBACYAML lets ServiceAccount ns/sa call provider through the gateway
// (config/samples/gateway_use_rbac.yaml).
func useRBACYAML(provider, ns, sa string) string {
	return fmt.Sprintf(`apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: llmquota-use-%[1]s}
rules:
- {apiGroups: [llmquota.dev], resources: [llmproviders], resourceNames: [%[1]s], verbs: [use]}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: llmquota-use-%[1]s-%[2]s-%[3]s}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: llmquota-use-%[1]s}
subjects: [{kind: ServiceAccount, namespace: %[2]s, name: %[3]s}]
---
apiVersion: v1
kind: ServiceAccount
metadata: {name: %[3]s, namespace: %[2]s}
`, provider, ns, sa)
}

// gatewayAppYAML is a Pod of the gateway-client test image running as
// ServiceAccount sa with a projected token for audience llmquota.dev:
// calls calls to provider, one every every, through the gateway's Service
// (by its ClusterIP: the test cluster runs no DNS), each waiting for quota
// at most maxWait ("": the gateway's default).
func gatewayAppYAML(name, sa, provider string, calls int, every, maxWait string) string {
	ip := kubectl("-n", namespace, "get", "service", "llmquota-gateway", "-o", "jsonpath={.spec.clusterIP}")
	args := fmt.Sprintf("--base-url=http://%s/anthropic/, --model=%s, --calls=%d, --every=%s", ip, provider, calls, every)
	if maxWait != "" {
		args += ", --max-wait=" + maxWait
	}
	return gatewayPodYAML(name, sa, "gateway-client", "["+args+"]")
}

// gatewayNodeAppYAML is gatewayAppYAML with the gateway-client-node test
// image: the official OpenAI Node SDK, its even calls plain, odd streamed.
func gatewayNodeAppYAML(name, sa, provider string, calls int) string {
	ip := kubectl("-n", namespace, "get", "service", "llmquota-gateway", "-o", "jsonpath={.spec.clusterIP}")
	// args replace the image's command (the script), so they name it first.
	return gatewayPodYAML(name, sa, "gateway-client-node", fmt.Sprintf("[/app/app.mjs, --base-url=http://%s/v1, --model=%s, --calls=%d, --every-ms=1000]", ip, provider, calls))
}

// gatewayPodYAML is a Pod of a test image that calls the gateway with its
// ServiceAccount's projected token, with the image's args.
func gatewayPodYAML(name, sa, image, args string) string {
	return fmt.Sprintf(`apiVersion: v1
kind: Pod
metadata: {name: %s, namespace: %s}
spec:
  serviceAccountName: %s
  automountServiceAccountToken: false
  restartPolicy: Never
  securityContext: {runAsNonRoot: true, runAsUser: 65532, seccompProfile: {type: RuntimeDefault}}
  containers:
  - name: app
    image: localhost/llmquota-test/%s:test
    imagePullPolicy: Never
    args: %s
    securityContext: {allowPrivilegeEscalation: false, readOnlyRootFilesystem: true, capabilities: {drop: [ALL]}}
    volumeMounts: [{name: llmquota-token, mountPath: /var/run/secrets/llmquota, readOnly: true}]
  volumes:
  - name: llmquota-token
    projected:
      sources: [{serviceAccountToken: {audience: llmquota.dev, expirationSeconds: 3600, path: token}}]
`, name, work, sa, image, args)
}

// gatewayCall and gatewaySummary are the lines the gateway-client prints
// (hack/cluster/gatewayclient).
type gatewayCall struct {
	N        int    `json:"n"`
	Time     string `json:"time"`   // when it began (the Go app's calls)
	Millis   int64  `json:"millis"` // how long it took (the Go app's calls)
	Status   int    `json:"status"`
	Provider string `json:"provider"`
	Text     string `json:"text"`
	Error    string `json:"error"`
	// Streamed and Tokens: the Node app's streamed calls, with the usage
	// the stream's last chunk said.
	Streamed bool  `json:"streamed"`
	Tokens   int64 `json:"tokens"`
}

// started is when the call began; zero when the app did not say.
func (c gatewayCall) started() time.Time {
	at, _ := time.Parse(time.RFC3339Nano, c.Time)
	return at
}

// ended is when the call ended.
func (c gatewayCall) ended() time.Time {
	return c.started().Add(time.Duration(c.Millis) * time.Millisecond)
}

// underWayAt reports whether the call was under way at t: it began before
// t and ended after it.
func (c gatewayCall) underWayAt(t time.Time) bool {
	began := c.started()
	return began.Before(t) && began.Add(time.Duration(c.Millis)*time.Millisecond).After(t)
}

type gatewaySummary struct {
	Calls    int         `json:"calls"`
	ByStatus map[int]int `json:"byStatus"`
}

// gatewayAppLog waits for a gateway-client Pod to finish and reads its calls
// and summary from its log.
func gatewayAppLog(pod string) ([]gatewayCall, gatewaySummary) {
	kubectl("-n", work, "wait", "--for=jsonpath={.status.phase}=Succeeded", "pod/"+pod, "--timeout=300s")
	var calls []gatewayCall
	var sum gatewaySummary
	for _, line := range strings.Split(kubectl("-n", work, "logs", pod), "\n") {
		switch {
		case strings.Contains(line, `"byStatus"`):
			Expect(json.Unmarshal([]byte(line), &sum)).To(Succeed())
		case strings.HasPrefix(line, "{"):
			var c gatewayCall
			Expect(json.Unmarshal([]byte(line), &c)).To(Succeed())
			calls = append(calls, c)
		}
	}
	Expect(sum.Calls).To(Equal(len(calls)), "the summary of %s counts the calls it printed", pod)
	return calls, sum
}

// Package chart tests the Helm chart with a real helm binary: lint, render
// with default and non-default values, Pod Security "restricted" settings,
// least-privilege RBAC, CRDs and RBAC in sync with config/, and the
// PrometheusRule alerts with promtool. The binaries come from
// hack/build-tools.sh (HELM and PROMTOOL, set by `make test`).
package chart

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"sigs.k8s.io/yaml"

	"github.com/llmquota/llmquota/internal/gateway"
	"github.com/llmquota/llmquota/internal/metrics"
)

const chartDir = "../../charts/llmquota"

func tool(t *testing.T, env string) string {
	t.Helper()
	p := os.Getenv(env)
	if p == "" {
		t.Fatalf("%s is not set: run through `make test`, which builds the tools with hack/build-tools.sh", env)
	}
	return p
}

func helm(t *testing.T, args ...string) (string, error) {
	t.Helper()
	cmd := exec.Command(tool(t, "HELM"), args...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	return out.String(), err
}

// render returns the chart's objects for the given --set values.
func render(t *testing.T, sets ...string) []map[string]any {
	t.Helper()
	args := []string{"template", "rel", chartDir, "-n", "llmquota-system", "--kube-version", "1.37.2"}
	for _, s := range sets {
		args = append(args, "--set", s)
	}
	out, err := helm(t, args...)
	if err != nil {
		t.Fatalf("helm template %v: %v\n%s", sets, err, out)
	}
	var objs []map[string]any
	for _, doc := range strings.Split(out, "\n---") {
		var o map[string]any
		if err := yaml.Unmarshal([]byte(doc), &o); err != nil {
			t.Fatalf("rendered YAML does not parse: %v\n%s", err, doc)
		}
		if o != nil {
			objs = append(objs, o)
		}
	}
	return objs
}

func kinds(objs []map[string]any) []string {
	var out []string
	for _, o := range objs {
		out = append(out, o["kind"].(string)+"/"+o["metadata"].(map[string]any)["name"].(string))
	}
	return out
}

func find(objs []map[string]any, kind, name string) map[string]any {
	for _, o := range objs {
		if o["kind"] == kind && o["metadata"].(map[string]any)["name"] == name {
			return o
		}
	}
	return nil
}

func dig(o any, path ...string) any {
	for _, p := range path {
		m, ok := o.(map[string]any)
		if !ok {
			return nil
		}
		o = m[p]
	}
	return o
}

func TestLint(t *testing.T) {
	for _, sets := range [][]string{nil, {"manager.replicas=2", "nodeAgent.enabled=true", "metrics.prometheusRule.enabled=true", "manager.secretNamespaces={llmquota-system}"}} {
		args := []string{"lint", chartDir, "--strict"}
		for _, s := range sets {
			args = append(args, "--set", s)
		}
		if out, err := helm(t, args...); err != nil {
			t.Fatalf("helm lint %v: %v\n%s", sets, err, out)
		}
	}
}

func TestDefaultInstall(t *testing.T) {
	objs := render(t)
	got := kinds(objs)
	for _, want := range []string{"ServiceAccount/rel-llmquota-manager", "ClusterRole/rel-llmquota-manager", "ClusterRoleBinding/rel-llmquota-manager",
		"Role/rel-llmquota-manager-leader-election", "Deployment/rel-llmquota-manager", "Service/rel-llmquota-manager-metrics", "NetworkPolicy/rel-llmquota-manager",
		"ValidatingAdmissionPolicy/inferencebatch-spec.llmquota.dev", "ValidatingAdmissionPolicyBinding/inferencebatch-spec.llmquota.dev"} {
		if !slices.Contains(got, want) {
			t.Errorf("default render lacks %s (has %v)", want, got)
		}
	}
	for _, absent := range []string{"DaemonSet/rel-llmquota-node-agent", "PodDisruptionBudget/rel-llmquota-manager", "PrometheusRule/rel-llmquota-manager"} {
		if slices.Contains(got, absent) {
			t.Errorf("default render has %s, which is opt-in", absent)
		}
	}
	for role, aggregate := range map[string]string{"rel-llmquota-batch-editor": "aggregate-to-edit", "rel-llmquota-batch-viewer": "aggregate-to-view"} {
		labels, _ := dig(find(objs, "ClusterRole", role), "metadata", "labels").(map[string]any)
		if labels["rbac.authorization.k8s.io/"+aggregate] != "true" {
			t.Errorf("ClusterRole %s is not aggregated into the built-in role (%s): %v", role, aggregate, labels)
		}
	}
	if v := verbs(dig(find(objs, "ClusterRole", "rel-llmquota-batch-viewer"), "rules").([]any), "inferencebatches"); !slices.Equal(v, []string{"get", "list", "watch"}) {
		t.Errorf("the viewer role may %v inferencebatches, want only to read them", v)
	}
	if grants(dig(find(objs, "ClusterRole", "rel-llmquota-provider-viewer"), "rules").([]any), "secrets") {
		t.Error("the provider viewer role reads Secrets")
	}
	rules := dig(find(objs, "ClusterRole", "rel-llmquota-manager"), "rules").([]any)
	if grants(rules, "secrets") {
		t.Error("by default the manager reads Secrets cluster-wide; it should read them in the release's namespace only")
	}
	if role := find(objs, "Role", "rel-llmquota-manager-secrets"); role == nil || dig(role, "metadata", "namespace") != "llmquota-system" {
		t.Errorf("no Secret Role in the release's namespace: %v", role)
	}
	if dig(find(objs, "ClusterRole", "rel-llmquota-s3-credentials"), "rules") == nil {
		t.Error("no ClusterRole for tenants to grant the manager their S3 credentials")
	}
	c := dig(find(objs, "Deployment", "rel-llmquota-manager"), "spec", "template", "spec", "containers").([]any)[0]
	if !slices.Contains(dig(c, "args").([]any), any("--secret-namespaces=llmquota-system")) {
		t.Errorf("the manager is not told where it may read Secrets: %v", dig(c, "args"))
	}
	wide := dig(find(render(t, "manager.secretsClusterWide=true"), "ClusterRole", "rel-llmquota-manager"), "rules").([]any)
	if !grants(wide, "secrets") {
		t.Error("manager.secretsClusterWide=true does not grant Secrets cluster-wide")
	}
	if grants(rules, "*") || !slices.Equal(verbs(rules, "pods"), []string{"get", "list", "patch", "watch"}) {
		t.Error("the manager's ClusterRole grants more than its markers say: on pods it reads Ollama pools and annotates cleanup requests, nothing else")
	}
}

// verbs lists the verbs rules grant on resource.
func verbs(rules []any, resource string) []string {
	var out []string
	for _, r := range rules {
		if slices.Contains(dig(r, "resources").([]any), any(resource)) {
			for _, v := range dig(r, "verbs").([]any) {
				out = append(out, v.(string))
			}
		}
	}
	return out
}

func grants(rules []any, resource string) bool {
	for _, r := range rules {
		for _, res := range dig(r, "resources").([]any) {
			if res == resource {
				return true
			}
		}
	}
	return false
}

func TestNonDefaultValues(t *testing.T) {
	objs := render(t, "manager.replicas=2", "nodeAgent.enabled=true", "metrics.prometheusRule.enabled=true",
		"metrics.serviceMonitor.enabled=true", "manager.secretNamespaces={keys-a,keys-b}", "image.tag=v9", "networkPolicy.enabled=false",
		"manager.ollamaNamespaces={llm}", "manager.s3AllowedEndpoints={minio.storage.svc,*.amazonaws.com}")
	got := kinds(objs)
	for _, want := range []string{"PodDisruptionBudget/rel-llmquota-manager", "DaemonSet/rel-llmquota-node-agent", "PrometheusRule/rel-llmquota-manager",
		"ServiceMonitor/rel-llmquota-manager", "PodMonitor/rel-llmquota-node-agent", "Role/rel-llmquota-manager-secrets"} {
		if !slices.Contains(got, want) {
			t.Errorf("render lacks %s", want)
		}
	}
	agentSpec := dig(find(render(t, "nodeAgent.enabled=true", "nodeAgent.podGPUMemory=true"), "DaemonSet", "rel-llmquota-node-agent"), "spec", "template", "spec")
	agentContainer := dig(agentSpec, "containers").([]any)[0]
	mount := dig(agentContainer, "volumeMounts").([]any)[0]
	if !slices.Contains(dig(agentContainer, "args").([]any), any("--proc-root=/host/proc")) || dig(dig(agentSpec, "volumes").([]any)[0], "hostPath", "path") != "/proc" ||
		dig(mount, "mountPath") != "/host/proc" || dig(mount, "readOnly") != true {
		t.Errorf("nodeAgent.podGPUMemory: the node's /proc is not mounted read-only for the agent: %v", agentSpec)
	}
	podLabels := dig(find(objs, "DaemonSet", "rel-llmquota-node-agent"), "spec", "template", "metadata", "labels").(map[string]any)
	for k, v := range dig(find(objs, "PodMonitor", "rel-llmquota-node-agent"), "spec", "selector", "matchLabels").(map[string]any) {
		if podLabels[k] != v {
			t.Errorf("the agent's PodMonitor selects %s=%v, which its pods lack (%v)", k, v, podLabels)
		}
	}
	if slices.Contains(got, "NetworkPolicy/rel-llmquota-manager") {
		t.Error("networkPolicy.enabled=false still renders the NetworkPolicy")
	}
	rules := dig(find(objs, "ClusterRole", "rel-llmquota-manager"), "rules").([]any)
	if grants(rules, "secrets") || grants(rules, "pods") {
		t.Error("with secretNamespaces and ollamaNamespaces the manager must not read Secrets or pods cluster-wide")
	}
	// controller-gen merges resources that share verbs into one rule:
	// taking Secrets out must leave the rest of their rule.
	if !slices.Equal(verbs(rules, "namespaces"), []string{"get", "list", "watch"}) || !grants(rules, "configmaps") {
		t.Errorf("with secretNamespaces the manager lost a cluster-wide grant it needs: %v", rules)
	}
	podRole := find(objs, "Role", "rel-llmquota-manager-pods")
	if dig(podRole, "metadata", "namespace") != "llm" || !slices.Equal(verbs(dig(podRole, "rules").([]any), "pods"), []string{"get", "list", "patch", "watch"}) {
		t.Errorf("pod Role in the Ollama namespace: %v", podRole)
	}
	secretRoles := 0
	for _, o := range objs {
		if o["kind"] == "Role" && dig(o, "metadata", "name") == "rel-llmquota-manager-secrets" {
			secretRoles++
		}
	}
	if secretRoles != 2 {
		t.Errorf("%d Secret Roles, want one per namespace (2)", secretRoles)
	}
	dep := find(objs, "Deployment", "rel-llmquota-manager")
	if r := dig(dep, "spec", "replicas"); r != float64(2) {
		t.Errorf("replicas %v", r)
	}
	c := dig(dep, "spec", "template", "spec", "containers").([]any)[0]
	if !strings.HasSuffix(dig(c, "image").(string), ":v9") || !slices.Contains(dig(c, "args").([]any), any("--secret-namespaces=keys-a,keys-b")) ||
		!slices.Contains(dig(c, "args").([]any), any("--ollama-namespaces=llm")) {
		t.Errorf("manager container %v", c)
	}
	for _, arg := range []string{"--batch-workers=8", "--results-flush-interval=10s", "--results-flush-items=100", "--gateway-checkin-timeout=2m",
		"--s3-allowed-endpoints=minio.storage.svc,*.amazonaws.com"} {
		if !slices.Contains(dig(c, "args").([]any), any(arg)) {
			t.Errorf("manager args lack %s: %v", arg, dig(c, "args"))
		}
	}
	env := map[string]any{}
	for _, e := range dig(c, "env").([]any) {
		env[dig(e, "name").(string)] = dig(e, "valueFrom")
	}
	if dig(env["LLMQUOTA_MEMORY_LIMIT"], "resourceFieldRef", "resource") != "limits.memory" {
		t.Errorf("the manager is not told its memory limit: %v", env)
	}
	if dig(env["POD_NAMESPACE"], "fieldRef", "fieldPath") != "metadata.namespace" {
		t.Errorf("the manager is not told its namespace (where its quota state lives): %v", env)
	}
	agentRules := dig(find(objs, "ClusterRole", "rel-llmquota-node-agent"), "rules").([]any)
	if grants(agentRules, "secrets") || !slices.Equal(verbs(agentRules, "pods/status"), []string{"patch"}) ||
		!slices.Equal(verbs(agentRules, "pods"), []string{"get", "list", "watch"}) {
		t.Errorf("node agent rules %v: it reads pods, patches their status only, and must not read Secrets", agentRules)
	}
	ds := find(objs, "DaemonSet", "rel-llmquota-node-agent")
	agent := dig(ds, "spec", "template", "spec", "containers").([]any)[0]
	if dig(agent, "command").([]any)[0] != "/node-agent" || !slices.Contains(dig(agent, "args").([]any), any("--poll-interval=30s")) {
		t.Errorf("node agent container %v", agent)
	}
}

// TestRestrictedPodSecurity checks every pod the chart makes against the
// Pod Security "restricted" profile's requirements.
func TestRestrictedPodSecurity(t *testing.T) {
	for _, o := range render(t, "nodeAgent.enabled=true", "gateway.enabled=true") {
		spec := dig(o, "spec", "template", "spec")
		if spec == nil {
			continue
		}
		name := dig(o, "metadata", "name")
		if dig(spec, "securityContext", "runAsNonRoot") != true || dig(spec, "securityContext", "seccompProfile", "type") != "RuntimeDefault" {
			t.Errorf("%s: pod securityContext %v", name, dig(spec, "securityContext"))
		}
		for _, c := range dig(spec, "containers").([]any) {
			sc := dig(c, "securityContext")
			if dig(sc, "allowPrivilegeEscalation") != false || dig(sc, "readOnlyRootFilesystem") != true ||
				!slices.Equal(dig(sc, "capabilities", "drop").([]any), []any{"ALL"}) {
				t.Errorf("%s: container securityContext %v", name, sc)
			}
			if dig(c, "resources", "requests") == nil {
				t.Errorf("%s: no resource requests", name)
			}
		}
	}
}

// TestPinnedImagesAndPodExtras: a digest pins each image (the tag is
// then ignored), each component takes a priorityClassName and pod
// annotations, and a parent chart's global values are accepted.
func TestPinnedImagesAndPodExtras(t *testing.T) {
	digest := "sha256:" + strings.Repeat("ab", 32)
	objs := render(t, "global.imageRegistry=example", "nodeAgent.enabled=true", "image.digest="+digest, "image.tag=v9",
		"gateway.image.digest="+digest, "nodeAgent.image.digest="+digest,
		"manager.priorityClassName=high", "gateway.priorityClassName=high", "nodeAgent.priorityClassName=system-node-critical",
		"manager.podAnnotations.team=platform", "gateway.podAnnotations.team=platform", "nodeAgent.podAnnotations.team=platform")
	for _, w := range []struct{ kind, name, repo, class string }{
		{"Deployment", "rel-llmquota-manager", "ghcr.io/llmquota/manager", "high"},
		{"Deployment", "rel-llmquota-gateway", "ghcr.io/llmquota/gateway", "high"},
		{"DaemonSet", "rel-llmquota-node-agent", "ghcr.io/llmquota/node-agent", "system-node-critical"},
	} {
		tmpl := dig(find(objs, w.kind, w.name), "spec", "template")
		if image := dig(dig(tmpl, "spec", "containers").([]any)[0], "image"); image != w.repo+"@"+digest {
			t.Errorf("%s image %v, want pinned by digest", w.name, image)
		}
		if class := dig(tmpl, "spec", "priorityClassName"); class != w.class {
			t.Errorf("%s priorityClassName %v, want %s", w.name, class, w.class)
		}
		if team := dig(tmpl, "metadata", "annotations", "team"); team != "platform" {
			t.Errorf("%s pod annotations lack team=platform: %v", w.name, dig(tmpl, "metadata", "annotations"))
		}
	}
	plain := dig(find(render(t), "Deployment", "rel-llmquota-manager"), "spec", "template")
	if dig(plain, "spec", "priorityClassName") != nil || dig(plain, "metadata", "annotations") != nil {
		t.Errorf("the defaults set a priority class or annotations: %v", plain)
	}
}

func TestSchemaRefusesBadValues(t *testing.T) {
	for _, bad := range []string{"manager.replicas=0", "manager.logLevel=loud", "metrics.prometheusRule.quotaWarningRatio=2", "nosuchkey=1",
		"manager.batchWorkers=0", "manager.resultsFlush.interval=soon", "manager.resultsFlush.items=0", "manager.gatewayCheckinTimeout=soon",
		"gateway.replicas=0", "gateway.maxWait=soon", "gateway.cacheMaxMiB=-1", "image.digest=latest", "gateway.image.digest=sha256:short", "gateway.autoscaling.targetCPUUtilizationPercentage=101", "gateway.nosuchkey=1"} {
		if out, err := helm(t, "template", "rel", chartDir, "--kube-version", "1.37.2", "--set", bad); err == nil {
			t.Errorf("--set %s rendered:\n%.200s", bad, out)
		}
	}
}

// TestInSyncWithConfig: the chart carries the generated CRDs and RBAC rules
// byte for byte (`make manifests` copies them).
func TestInSyncWithConfig(t *testing.T) {
	pairs := map[string]string{
		filepath.Join(chartDir, "files", "manager-role.yaml"):    "../../config/rbac/role.yaml",
		filepath.Join(chartDir, "files", "node-agent-role.yaml"): "../../config/rbac/node-agent/role.yaml",
	}
	crds, _ := filepath.Glob("../../config/crd/bases/*.yaml")
	for _, c := range crds {
		pairs[filepath.Join(chartDir, "crds", filepath.Base(c))] = c
	}
	for chartFile, source := range pairs {
		a, err1 := os.ReadFile(chartFile)
		b, err2 := os.ReadFile(source)
		if err1 != nil || err2 != nil || !bytes.Equal(a, b) {
			t.Errorf("%s differs from %s: run make manifests", chartFile, source)
		}
	}
}

// TestAlerts renders the PrometheusRule and runs promtool's rule checks and
// unit tests (alerts_test.yaml) on it.
func TestAlerts(t *testing.T) {
	objs := render(t, "metrics.prometheusRule.enabled=true", "nodeAgent.enabled=true")
	spec := dig(find(objs, "PrometheusRule", "rel-llmquota-manager"), "spec")
	data, err := yaml.Marshal(spec)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	rules := filepath.Join(dir, "rules.yaml")
	if err := os.WriteFile(rules, data, 0o600); err != nil {
		t.Fatal(err)
	}
	tests, _ := os.ReadFile("alerts_test.yaml")
	if err := os.WriteFile(filepath.Join(dir, "alerts_test.yaml"), tests, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{{"check", "rules", rules}, {"test", "rules", filepath.Join(dir, "alerts_test.yaml")}} {
		cmd := exec.Command(tool(t, "PROMTOOL"), args...)
		cmd.Dir = dir
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("promtool %v: %v\n%s", args, err, out)
		}
	}
}

// recorder is a prometheus.Registerer that keeps what is registered.
type recorder struct{ collectors []prometheus.Collector }

func (r *recorder) Register(c prometheus.Collector) error {
	r.collectors = append(r.collectors, c)
	return nil
}
func (r *recorder) MustRegister(cs ...prometheus.Collector) {
	r.collectors = append(r.collectors, cs...)
}
func (r *recorder) Unregister(prometheus.Collector) bool { return false }

// TestAlertsNameRegisteredMetrics: every metric of the manager or the
// gateway that an alert names is one the code registers, including those
// with no series until something happens (a failed batch, a budget, a
// gateway call), which the real-cluster suite's scrape cannot see. The
// agent's are checked there, on the running agent.
func TestAlertsNameRegisteredMetrics(t *testing.T) {
	gw := &recorder{}
	gateway.NewMetrics(gw)
	registered := map[string]bool{}
	fqName := regexp.MustCompile(`fqName: "([^"]+)"`)
	for _, c := range append(slices.Clone(metrics.All), gw.collectors...) {
		descs := make(chan *prometheus.Desc, 16)
		go func() { c.Describe(descs); close(descs) }()
		for d := range descs {
			if m := fqName.FindStringSubmatch(d.String()); m != nil {
				registered[m[1]] = true
			}
		}
	}
	rules, err := helm(t, "template", "rel", chartDir, "--kube-version", "1.37.2", "--set", "metrics.prometheusRule.enabled=true",
		"--set", "nodeAgent.enabled=true", "--show-only", "templates/monitoring.yaml")
	if err != nil {
		t.Fatal(err)
	}
	named := regexp.MustCompile(`\bllmquota_[a-z_]+`).FindAllString(rules, -1)
	if len(named) == 0 {
		t.Fatal("the alerts name no llmquota metric")
	}
	for _, name := range named {
		if !strings.HasPrefix(name, "llmquota_agent_") && !registered[name] {
			t.Errorf("an alert names %s, which neither the manager nor the gateway registers", name)
		}
	}
}

// TestGateway: the gateway renders by default (and not when disabled),
// with its RBAC, a projected token for the quota authority, a Service, a
// PDB, a NetworkPolicy that lets it reach the manager's quota port, and
// the manager told which ServiceAccount may draw quota.
func TestGateway(t *testing.T) {
	if got := kinds(render(t)); !slices.Contains(got, "Deployment/rel-llmquota-gateway") {
		t.Fatal("the gateway does not render by default")
	}
	if got := kinds(render(t, "gateway.enabled=false")); slices.Contains(got, "Deployment/rel-llmquota-gateway") {
		t.Fatal("the gateway renders when disabled")
	}
	objs := render(t, "metrics.serviceMonitor.enabled=true", "manager.secretNamespaces={keys-a}")
	got := kinds(objs)
	for _, want := range []string{"ServiceAccount/rel-llmquota-gateway", "ClusterRole/rel-llmquota-gateway", "ClusterRoleBinding/rel-llmquota-gateway",
		"Role/rel-llmquota-gateway-secrets", "RoleBinding/rel-llmquota-gateway-secrets", "Role/rel-llmquota-gateway-leader",
		"Deployment/rel-llmquota-gateway", "Service/rel-llmquota-gateway", "PodDisruptionBudget/rel-llmquota-gateway",
		"NetworkPolicy/rel-llmquota-gateway", "ServiceMonitor/rel-llmquota-gateway"} {
		if !slices.Contains(got, want) {
			t.Errorf("render lacks %s", want)
		}
	}
	if slices.Contains(got, "HorizontalPodAutoscaler/rel-llmquota-gateway") {
		t.Error("an HPA without gateway.autoscaling.enabled")
	}
	if grants(dig(find(objs, "ClusterRole", "rel-llmquota-gateway"), "rules").([]any), "secrets") {
		t.Error("with secretNamespaces the gateway reads Secrets cluster-wide")
	}
	dep := find(objs, "Deployment", "rel-llmquota-gateway")
	if dig(dep, "spec", "replicas") != float64(2) {
		t.Errorf("gateway replicas %v, want 2 by default", dig(dep, "spec", "replicas"))
	}
	pod := dig(dep, "spec", "template", "spec")
	token := dig(dig(pod, "volumes").([]any)[0], "projected", "sources").([]any)[0]
	if dig(token, "serviceAccountToken", "audience") != "llmquota.dev" {
		t.Errorf("the gateway's token volume %v", token)
	}
	gw := dig(pod, "containers").([]any)[0]
	args := dig(gw, "args").([]any)
	for _, want := range []any{"--authority-lease=llmquota-system/manager.llmquota.dev", "--secret-namespaces=keys-a", "--max-wait=10s", "--cache-max-mib=32", "--max-spares=64"} {
		if !slices.Contains(args, want) {
			t.Errorf("gateway args %v lack %v", args, want)
		}
	}
	// A new leader lists the gateway's pods and waits until each, by
	// name, told it the calls in flight.
	podName := false
	for _, e := range dig(gw, "env").([]any) {
		podName = podName || dig(e, "name") == "POD_NAME" && dig(e, "valueFrom", "fieldRef", "fieldPath") == "metadata.name"
	}
	if !podName {
		t.Errorf("the gateway is not told its pod's name: %v", dig(gw, "env"))
	}
	listsPods := false
	for _, r := range dig(find(objs, "Role", "rel-llmquota-manager-leader-election"), "rules").([]any) {
		listsPods = listsPods || slices.Contains(dig(r, "resources").([]any), any("pods")) && slices.Contains(dig(r, "verbs").([]any), any("list"))
	}
	if !listsPods {
		t.Error("the manager may not list the gateway's pods in its namespace")
	}
	mgr := dig(find(objs, "Deployment", "rel-llmquota-manager"), "spec", "template", "spec", "containers").([]any)[0]
	if !slices.Contains(dig(mgr, "args").([]any), any("--gateway-service-accounts=llmquota-system/rel-llmquota-gateway")) {
		t.Errorf("the manager is not told the gateway's ServiceAccount: %v", dig(mgr, "args"))
	}
	ingress := dig(find(objs, "NetworkPolicy", "rel-llmquota-manager"), "spec", "ingress").([]any)
	if len(ingress) != 2 || dig(dig(ingress[1], "ports").([]any)[0], "port") != float64(8444) {
		t.Errorf("the manager's NetworkPolicy does not let the gateway reach the quota port: %v", ingress)
	}
	hpa := kinds(render(t, "gateway.enabled=true", "gateway.autoscaling.enabled=true"))
	if !slices.Contains(hpa, "HorizontalPodAutoscaler/rel-llmquota-gateway") {
		t.Error("gateway.autoscaling.enabled renders no HPA")
	}
}

// TestEgressPolicy: networkPolicy.egress lets the manager and the gateway
// reach DNS, the API server and public addresses on 443, not a cloud's
// metadata address or the cluster's private ranges; the gateway reaches
// the manager's quota port. Off, the policies restrict ingress only.
func TestEgressPolicy(t *testing.T) {
	for _, o := range render(t, "gateway.enabled=true") {
		if o["kind"] == "NetworkPolicy" && slices.Contains(dig(o, "spec", "policyTypes").([]any), any("Egress")) {
			t.Errorf("%s restricts egress by default", dig(o, "metadata", "name"))
		}
	}
	objs := render(t, "gateway.enabled=true", "networkPolicy.egress.enabled=true", "networkPolicy.egress.apiServerCIDRs={10.96.0.1/32}")
	for _, name := range []string{"rel-llmquota-manager", "rel-llmquota-gateway"} {
		np := find(objs, "NetworkPolicy", name)
		if !slices.Contains(dig(np, "spec", "policyTypes").([]any), any("Egress")) {
			t.Fatalf("%s does not restrict egress", name)
		}
		text := fmt.Sprint(dig(np, "spec", "egress"))
		for _, want := range []string{"port:53", "cidr:10.96.0.1/32", "port:6443", "cidr:0.0.0.0/0", "169.254.0.0/16", "10.0.0.0/8", "port:443"} {
			if !strings.Contains(text, want) {
				t.Errorf("%s's egress lacks %s: %s", name, want, text)
			}
		}
	}
	if text := fmt.Sprint(dig(find(objs, "NetworkPolicy", "rel-llmquota-gateway"), "spec", "egress")); !strings.Contains(text, "port:8444") ||
		!strings.Contains(text, "app.kubernetes.io/component:manager") {
		t.Errorf("the gateway may not reach the manager's quota port: %s", text)
	}
}

// TestChartNamesItsMinimum: the chart installs on Kubernetes 1.35 and
// later only. Its InferenceBatch admission policy uses CEL's lists library
// (sort(), distinct(), lists.range()), which the API server has from 1.34
// but lets a new expression use only from 1.35 (it compiles new
// expressions for the release before its own, so a rollback can read
// them); a 1.34 API server refuses the policy. `make test-minimum` runs the
// CRDs and the policy on a 1.35 API server.
func TestChartNamesItsMinimum(t *testing.T) {
	if out, err := helm(t, "template", "rel", chartDir, "--kube-version", "1.34.4"); err == nil || !strings.Contains(out, "requires kubeVersion: >=1.35.0-0") {
		t.Fatalf("the chart rendered for Kubernetes 1.34 (%v): %s", err, out)
	}
	if out, err := helm(t, "template", "rel", chartDir, "--kube-version", "1.35.0"); err != nil {
		t.Fatalf("the chart did not render for Kubernetes 1.35: %v\n%s", err, out)
	}
}

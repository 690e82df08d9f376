// Command demo runs llmquota's main job end to end on this machine: a local
// control plane (etcd + kube-apiserver, or the cluster in $KUBECONFIG), the
// provider emulator with the original report's Gemini limits scaled down,
// the manager, the gateway, and the original report's 136-item batch while
// an app calls the same provider through the gateway. It shows progress
// and the app's calls until the batch is Complete, prints the final state
// and what the provider saw (every arrival, batch and app together, within
// the windows), and stops everything it started. Run it through `make demo`.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	"sigs.k8s.io/yaml"

	llmv1 "github.com/llmquota/llmquota/api/v1alpha1"
	"github.com/llmquota/llmquota/internal/emulator"
	"github.com/llmquota/llmquota/internal/results"
	"github.com/llmquota/llmquota/internal/testbed/apiserver"
	"github.com/llmquota/llmquota/internal/testbed/process"
	"github.com/llmquota/llmquota/internal/testbed/supervise"
)

const demoKey = "demo-key"

func main() {
	supervise.Run() // whatever ends this program, its control plane and children end with it
	keep := flag.Bool("keep", false, "Keep the control plane, emulator, manager and gateway running after the batch completes, until Ctrl-C, to try things.")
	limit := flag.Duration("timeout", 6*time.Minute, "Give up if the batch is not Complete by then.")
	batch := flag.String("batch", "config/samples/llmquota_v1alpha1_inferencebatch.yaml", "The InferenceBatch the demo runs (named news-sentiment, provider gemini).")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, *keep, *limit, *batch)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "demo:", err)
		os.Exit(1)
	}
}

func say(format string, args ...any) { fmt.Printf("==> "+format+"\n", args...) }

func run(ctx context.Context, keep bool, limit time.Duration, batch string) error {
	dir, err := filepath.Abs(".demo")
	if err != nil {
		return err
	}
	_ = os.RemoveAll(dir)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	bin := os.Getenv("LLMQUOTA_BIN")

	kubeconfig := os.Getenv("KUBECONFIG")
	if kubeconfig == "" {
		say("Starting a local control plane (etcd and kube-apiserver from %s)", os.Getenv("KUBEBUILDER_ASSETS"))
		env := &envtest.Environment{CRDDirectoryPaths: []string{"config/crd/bases"}, ErrorIfCRDPathMissing: true}
		if _, err := env.Start(); err != nil {
			return fmt.Errorf("starting the control plane: %w", err)
		}
		defer func() {
			say("Stopping the control plane")
			_ = env.Stop()
		}()
		var err error
		if kubeconfig, err = apiserver.WriteAdminKubeconfig(env, dir, "demo-admin", nil); err != nil {
			return err
		}
	} else {
		say("Using the cluster in KUBECONFIG=%s; installing the CRDs and the InferenceBatch admission policy", kubeconfig)
		for _, path := range []string{"config/crd/bases", "config/policy/inferencebatch-spec.yaml"} {
			if err := kubectl(ctx, kubeconfig, "apply", "--server-side", "-f", path); err != nil {
				return err
			}
		}
	}
	c, err := newClient(kubeconfig)
	if err != nil {
		return err
	}
	// Creates the policy where it is missing (the local control plane) and
	// waits until the API server enforces it.
	if err := apiserver.InstallPolicies(ctx, c, "config/policy"); err != nil {
		return err
	}

	port, err := process.FreePort()
	if err != nil {
		return err
	}
	endpoint := fmt.Sprintf("http://127.0.0.1:%d", port)
	say("Starting the provider emulator at %s: Gemini limits scaled 6x (60/min, 3600/h, 9000/day), 150ms latency, 5%% injected 429s and 3%% 500s", endpoint)
	emu, err := process.Start(filepath.Join(dir, "emulator.log"), filepath.Join(bin, "provider-emulator"),
		"--listen", fmt.Sprintf("127.0.0.1:%d", port), "--limits", "60/1m,3600/1h,9000/24h", "--latency", "150ms",
		"--fault-429", "0.05", "--fault-500", "0.03", "--retry-after", "2s", "--keys", demoKey, "--log-requests")
	if err != nil {
		return err
	}
	defer stop(emu, "provider emulator")

	quotaPort, err := process.FreePort()
	if err != nil {
		return err
	}
	say("Starting the manager (log: .demo/manager.log), serving quota to gateways on 127.0.0.1:%d", quotaPort)
	mgr, err := process.Start(filepath.Join(dir, "manager.log"), filepath.Join(bin, "manager"),
		"--kubeconfig", kubeconfig, "--leader-elect=false", "--metrics-bind-address=0", "--health-probe-bind-address=0",
		fmt.Sprintf("--quota-bind-address=127.0.0.1:%d", quotaPort), "--gateway-service-accounts=llmquota-system/llmquota-gateway")
	if err != nil {
		return err
	}
	defer stop(mgr, "manager")

	say("Applying the Gemini provider (endpoint: the emulator) and the original report's 136-item batch")
	if err := applyProvider(ctx, dir, kubeconfig, endpoint); err != nil {
		return err
	}
	say("Starting the gateway (log: .demo/gateway.log); an app (ServiceAccount default/news-app, allowed to use gemini) calls it with the official OpenAI Go SDK every 3s")
	gatewayURL, appToken, gw, err := startGateway(ctx, c, dir, kubeconfig, bin, fmt.Sprintf("http://127.0.0.1:%d", quotaPort))
	if err != nil {
		return err
	}
	defer stop(gw, "gateway")
	if err := kubectl(ctx, kubeconfig, "apply", "-n", "default", "-f", batch); err != nil {
		return err
	}
	if err := waitProviderReady(ctx, c, "gemini"); err != nil {
		return err
	}
	appCtx, stopApp := context.WithCancel(ctx)
	calls := converse(appCtx, gatewayURL, appToken, 3*time.Second)
	err = watch(ctx, c, limit)
	stopApp()
	if err != nil {
		return err
	}
	if err := calls.summary(); err != nil {
		return err
	}
	say("Final state")
	_ = kubectl(ctx, kubeconfig, "get", "llmproviders")
	_ = kubectl(ctx, kubeconfig, "get", "inferencebatches", "-A", "-o", "wide")
	_ = kubectl(ctx, kubeconfig, "get", "configmaps", "-n", "default", "-l", "llmquota.dev/batch=news-sentiment")
	if err := showResults(ctx, c); err != nil {
		return err
	}
	if !keep {
		stop(gw, "gateway")
		stop(mgr, "manager")
		stop(emu, "provider emulator")
	}
	// The emulator writes each request to its log as it arrives.
	if err := checkServerLog(filepath.Join(dir, "emulator.log")); err != nil {
		return err
	}
	if keep {
		say("The control plane, the emulator, the manager and the gateway keep running: try things.")
		say("  export KUBECONFIG=%s", kubeconfig)
		say("  kubectl describe inferencebatch news-sentiment; kubectl get llmprovider gemini -o yaml")
		say("  kubectl create -f <your batch>.yaml   (provider gemini; logs in .demo/)")
		say("  gateway: %s (the app's token: .demo/app-token)", gatewayURL)
		say("Press Ctrl-C to stop")
		<-ctx.Done()
	}
	return nil
}

// watch prints the batch's progress until it is Complete.
func watch(ctx context.Context, c client.Client, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	key := types.NamespacedName{Namespace: "default", Name: "news-sentiment"}
	last := ""
	for {
		var b llmv1.InferenceBatch
		if err := c.Get(ctx, key, &b); err == nil {
			line := progressLine(&b)
			if line != last {
				fmt.Printf("%s  %s\n", time.Now().Format("15:04:05"), line)
				last = line
			}
			if f := meta.FindStatusCondition(b.Status.Conditions, llmv1.ConditionFinished); f != nil && f.Status == metav1.ConditionTrue {
				switch f.Reason {
				case llmv1.ReasonSucceeded:
					return nil
				case llmv1.ReasonItemsFailed: // every item has its result; the failed ones say why
					fmt.Printf("finished with failed items: %s\n", f.Message)
					return nil
				}
				return fmt.Errorf("batch failed: %s: %s", f.Reason, f.Message)
			}
		}
		if time.Now().After(deadline) {
			return errors.New("the batch did not complete in time; see .demo/manager.log")
		}
		select {
		case <-ctx.Done():
			return errors.New("interrupted")
		case <-time.After(time.Second):
		}
	}
}

func progressLine(b *llmv1.InferenceBatch) string {
	s := b.Status
	limited := "-"
	if c := meta.FindStatusCondition(s.Conditions, llmv1.ConditionRateLimited); c != nil && c.Status == metav1.ConditionTrue {
		limited = c.Reason
	}
	return fmt.Sprintf("progress %-7s filtered %-3d succeeded %-3d failed %-2d retries %-3d batches %d/%d  rate-limited: %s",
		s.Progress, s.Counts.Filtered, s.Counts.Succeeded, s.Counts.Failed, s.Counts.Retries, s.Batches.Done, s.Batches.Total, limited)
}

// applyProvider applies the Gemini sample with the emulator's endpoint and
// its limits scaled for a short demo, and the Secret holding its key.
func applyProvider(ctx context.Context, dir, kubeconfig, endpoint string) error {
	data, err := os.ReadFile("config/samples/llmquota_v1alpha1_llmprovider_gemini.yaml")
	if err != nil {
		return err
	}
	var p llmv1.LLMProvider
	if err := yaml.Unmarshal(data, &p); err != nil {
		return err
	}
	p.Spec.Endpoint = endpoint
	p.Spec.Limits.RequestsPerMinute, p.Spec.Limits.RequestsPerHour, p.Spec.Limits.RequestsPerDay = ptr(60), ptr(3600), ptr(9000)
	p.Spec.Limits.MinIntervalMilliseconds = ptr(int32(500))
	p.APIVersion, p.Kind = llmv1.GroupVersion.String(), "LLMProvider"
	out, err := yaml.Marshal(&p)
	if err != nil {
		return err
	}
	path := filepath.Join(dir, "provider-gemini.yaml")
	if err := os.WriteFile(path, out, 0o644); err != nil {
		return err
	}
	for _, args := range [][]string{
		{"create", "namespace", "llmquota-system"},
		{"-n", "llmquota-system", "create", "secret", "generic", "gemini-api-key", "--from-literal=api-key=" + demoKey},
		// The sample admits namespaces an admin labels (its
		// namespaceSelector): the demo's batch and app run in default.
		{"label", "--overwrite", "namespace", "default", "llmquota.dev/gemini=allowed"},
		{"apply", "-f", path},
	} {
		if err := kubectl(ctx, kubeconfig, args...); err != nil && !strings.Contains(err.Error(), "AlreadyExists") {
			return err
		}
	}
	return nil
}

func ptr(v int32) *int32 { return &v }

func newClient(kubeconfig string) (client.Client, error) {
	cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		return nil, err
	}
	if err := llmv1.AddToScheme(scheme.Scheme); err != nil {
		return nil, err
	}
	return client.New(cfg, client.Options{Scheme: scheme.Scheme})
}

func kubectl(ctx context.Context, kubeconfig string, args ...string) error {
	cmd := exec.CommandContext(ctx, os.Getenv("KUBECTL"), append([]string{"--kubeconfig", kubeconfig}, args...)...)
	cmd.Stdout = os.Stdout
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("kubectl %s: %w: %s", strings.Join(args, " "), err, stderr.String())
	}
	return nil
}

// showResults prints a few stored results, as a user reads them.
func showResults(ctx context.Context, c client.Client) error {
	var list corev1.ConfigMapList
	if err := c.List(ctx, &list, client.InNamespace("default"), client.MatchingLabels{results.LabelBatch: "news-sentiment"}); err != nil {
		return err
	}
	say("Results are JSONL in those ConfigMaps, one line per item, one ConfigMap per write (kubectl get configmap -l llmquota.dev/batch=news-sentiment -o jsonpath='{range .items[*]}{.data.results\\.jsonl}{end}'). Three of them:")
	shown := 0
	for _, cm := range list.Items {
		for _, line := range strings.Split(cm.Data[results.DataKey], "\n") {
			if strings.Contains(line, `"status":"succeeded"`) && shown < 3 {
				fmt.Println("   ", line)
				shown++
			}
		}
	}
	return nil
}

// checkServerLog reads what the emulator received and checks, from the
// server's side, that no window of its quota was ever exceeded.
func checkServerLog(path string) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	var log []emulator.Record
	for _, line := range strings.Split(strings.TrimSpace(string(data)), "\n") {
		var r emulator.Record
		if err := json.Unmarshal([]byte(line), &r); err == nil && r.API != "" { // a request's record, not a log line
			log = append(log, r)
		}
	}
	tally := emulator.Count(log)
	if err := emulator.CheckWindows(log, []emulator.Limit{{Requests: 60, Period: time.Minute}, {Requests: 3600, Period: time.Hour}}); err != nil {
		return fmt.Errorf("more requests reached the server than a quota window allows: %w", err)
	}
	say("The emulator received %d requests (by status: %v): no quota window was exceeded by the arrivals at the server", tally.Arrivals, tally.ByStatus)
	say("Quota refusals at the server: %d (429s because a window was full; must be 0). Injected faults met: %d", tally.QuotaRefusals, tally.InjectedFaults)
	if tally.QuotaRefusals > 0 {
		return fmt.Errorf("the server refused %d requests for quota", tally.QuotaRefusals)
	}
	return nil
}

// stop stops a child the demo started, saying so.
func stop(p *process.Process, name string) {
	if p.Stopped() {
		return
	}
	say("Stopping the %s", name)
	p.Stop()
}

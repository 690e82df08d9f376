// Command bench-repay measures what a crash of the manager pays twice: one
// batch of --items items runs against the provider emulator (its own
// process, 200 ms answers, its log the independent count of what arrived)
// while the manager (bin/manager, its own process) is killed with SIGKILL
// --kills times at random points and started again. The emulator's log
// then says how many calls were sent twice. It runs in one go: with the
// provider's default (answers journaled once the provider's concurrency or
// a second of them wait), with spec.crashRepay.maxCalls set to --bound,
// and first, with --baseline-manager, the default of an earlier build (the
// named baseline: before the journal, results written per 100 or per 10 s
// and nothing else). Figures go in
// docs/benchmarks.md ("What a crash pays twice").
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	llmv1 "github.com/llmquota/llmquota/api/v1alpha1"
	"github.com/llmquota/llmquota/internal/emulator"
	"github.com/llmquota/llmquota/internal/testbed/apiserver"
	"github.com/llmquota/llmquota/internal/testbed/process"
	"github.com/llmquota/llmquota/internal/testbed/supervise"
)

const (
	apiKey      = "repay-key"
	concurrency = 8
)

func main() {
	supervise.Run() // whatever ends this program, its control plane and children end with it
	items := flag.Int("items", 150, "Items of the batch.")
	kills := flag.Int("kills", 10, "How many times the manager is killed with SIGKILL while the batch runs.")
	bound := flag.Int("bound", 5, "spec.crashRepay.maxCalls of the bounded run.")
	seed := flag.Uint64("seed", 1, "Seed of the kill times.")
	baseline := flag.String("baseline-manager", "", "A manager binary of an earlier build, run first with the provider's default (the named baseline).")
	flag.Parse()
	if err := run(context.Background(), *items, *kills, *bound, *seed, *baseline); err != nil {
		fmt.Fprintln(os.Stderr, "bench-repay:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, items, kills, bound int, seed uint64, baseline string) error {
	dir, err := os.MkdirTemp("", "bench-repay-")
	if err != nil {
		return err
	}
	if os.Getenv("REPAY_KEEP") == "" {
		defer func() { _ = os.RemoveAll(dir) }()
	} else {
		fmt.Println("logs kept in", dir)
	}
	local, err := apiserver.StartLocal(dir, "bench-admin")
	if err != nil {
		return err
	}
	defer func() { _ = local.Env.Stop() }()
	kubeconfig, c := local.Kubeconfig, local.Client
	if err := c.Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "key"},
		Data: map[string][]byte{"api-key": []byte(apiKey)}}); err != nil {
		return err
	}
	fmt.Printf("%-28s %6s %6s %10s %10s %9s %8s\n", "provider", "items", "kills", "arrivals", "sent twice", "per kill", "took")
	type trialSpec struct {
		name, manager string
		repay         *llmv1.CrashRepay
	}
	var trials []trialSpec
	if baseline != "" {
		trials = append(trials, trialSpec{"default (baseline build)", baseline, nil})
	}
	manager := filepath.Join(os.Getenv("LLMQUOTA_BIN"), "manager")
	trials = append(trials, trialSpec{"default", manager, nil},
		trialSpec{fmt.Sprintf("crashRepay.maxCalls=%d", bound), manager, &llmv1.CrashRepay{MaxCalls: ptr.To(int32(bound))}})
	for i, t := range trials {
		rng := rand.New(rand.NewPCG(seed, seed))
		began := time.Now()
		arrivals, twice, err := trial(ctx, c, dir, kubeconfig, fmt.Sprintf("t%d-%s", i, strings.Fields(t.name)[0]), t.manager, t.repay, items, kills, rng)
		if err != nil {
			return fmt.Errorf("%s: %w", t.name, err)
		}
		fmt.Printf("%-28s %6d %6d %10d %10d %9.1f %8s\n", t.name, items, kills, arrivals, twice, float64(twice)/float64(max(1, kills)),
			time.Since(began).Round(100*time.Millisecond))
	}
	fmt.Printf("(at most %d calls in flight; a kill also re-pays the calls in flight then)\n", concurrency)
	return nil
}

// trial runs one batch on a provider of its own through kills of the
// manager, and counts the calls that reached the emulator and those that
// reached it twice (an item answered before).
func trial(ctx context.Context, c client.Client, dir, kubeconfig, name, manager string, repay *llmv1.CrashRepay, items, kills int,
	rng *rand.Rand) (int, int, error) {
	name = strings.NewReplacer(".", "-", "=", "-", "(", "", ")", "").Replace(strings.ToLower(name))
	port, err := process.FreePort()
	if err != nil {
		return 0, 0, err
	}
	logPath := filepath.Join(dir, name+"-emulator.log")
	emu, err := process.Start(logPath, filepath.Join(os.Getenv("LLMQUOTA_BIN"), "provider-emulator"),
		"--listen", fmt.Sprintf("127.0.0.1:%d", port), "--latency", "200ms", "--keys", apiKey, "--log-requests")
	if err != nil {
		return 0, 0, err
	}
	defer emu.Stop()
	if err := c.Create(ctx, &llmv1.LLMProvider{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: llmv1.LLMProviderSpec{
		Type: llmv1.ProviderGemini, Endpoint: fmt.Sprintf("http://127.0.0.1:%d", port), Model: "gemini-2.5-flash",
		NamespaceSelector:    &metav1.LabelSelector{},
		CredentialsSecretRef: &llmv1.SecretKeyReference{Namespace: "default", Name: "key", Key: "api-key"},
		Limits:               llmv1.RateLimits{RequestsPerMinute: ptr.To(int32(100_000)), MaxConcurrency: concurrency},
		CrashRepay:           repay,
	}}); err != nil {
		return 0, 0, err
	}
	batch := &llmv1.InferenceBatch{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: name},
		Spec: llmv1.InferenceBatchSpec{ProviderRef: llmv1.ProviderReference{Name: llmv1.LocalObjectName(name)}, BatchSize: int32(items)}}
	for i := range items {
		batch.Spec.Items = append(batch.Spec.Items, llmv1.Item{ID: fmt.Sprintf("item-%03d", i), Prompt: fmt.Sprintf("Classify headline %d", i)})
	}
	if err := c.Create(ctx, batch); err != nil {
		return 0, 0, err
	}
	start := func() (*process.Process, error) {
		return process.Start(filepath.Join(dir, name+"-manager.log"), manager,
			"--kubeconfig", kubeconfig, "--leader-elect=false", "--metrics-bind-address=0", "--health-probe-bind-address=0", "--quota-bind-address=0")
	}
	mgr, err := start()
	if err != nil {
		return 0, 0, err
	}
	key := types.NamespacedName{Namespace: "default", Name: name}
	for range kills {
		// A random point of the sending: once this manager's first call
		// reached the emulator, up to 1.5 s later (the batch takes about 4 s
		// without kills).
		if err := sending(logPath, 30*time.Second); err != nil {
			return 0, 0, err
		}
		time.Sleep(time.Duration(rng.IntN(1500)) * time.Millisecond)
		if done, err := isComplete(ctx, c, key); err != nil || done {
			break
		}
		mgr.Kill()
		if mgr, err = start(); err != nil {
			return 0, 0, err
		}
	}
	defer mgr.Stop()
	if err := complete(ctx, c, key); err != nil {
		return 0, 0, err
	}
	arrivals, twice, err := count(logPath)
	if err == nil { // the next trial's managers need not read this one back
		err = errors.Join(c.Delete(ctx, batch), c.Delete(ctx, &llmv1.LLMProvider{ObjectMeta: metav1.ObjectMeta{Name: name}}))
	}
	return arrivals, twice, err
}

// sending waits until a call arrives at the emulator after now: the
// manager just started sends again.
func sending(logPath string, timeout time.Duration) error {
	before, _, err := count(logPath)
	if err != nil {
		return err
	}
	for deadline := time.Now().Add(timeout); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if n, _, err := count(logPath); err != nil || n > before {
			return err
		}
	}
	return fmt.Errorf("no call reached the emulator in %v after the manager started", timeout)
}

// isComplete reports whether the batch is Complete.
func isComplete(ctx context.Context, c client.Client, key types.NamespacedName) (bool, error) {
	var b llmv1.InferenceBatch
	if err := c.Get(ctx, key, &b); err != nil {
		return false, err
	}
	return apimeta.IsStatusConditionTrue(b.Status.Conditions, llmv1.ConditionComplete), nil
}

// complete waits until the batch is Complete.
func complete(ctx context.Context, c client.Client, key types.NamespacedName) error {
	for deadline := time.Now().Add(5 * time.Minute); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		if done, err := isComplete(ctx, c, key); err != nil || done {
			return err
		}
	}
	return fmt.Errorf("the batch %s did not complete", key)
}

// count reads the emulator's log: the calls that arrived, and those whose
// prompt had been answered before.
func count(path string) (arrivals, twice int, err error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return 0, 0, err
	}
	answered := map[string]bool{}
	for _, line := range strings.Split(strings.TrimSpace(string(data)), "\n") {
		var r emulator.Record
		if json.Unmarshal([]byte(line), &r) != nil || r.API == "" {
			continue // a log line, not a request's record
		}
		arrivals++
		if answered[r.PromptHash] {
			twice++
		}
		if r.Status == 200 {
			answered[r.PromptHash] = true
		}
	}
	return arrivals, twice, nil
}

package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	clocktesting "k8s.io/utils/clock/testing"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	llmv1 "github.com/llmquota/llmquota/api/v1alpha1"
	"github.com/llmquota/llmquota/internal/dashboard"
)

var update = flag.Bool("update", false, "rewrite testdata/top.golden from this run")

// now is the fixed clock the fixtures and the golden output are drawn at.
var now = time.Date(2026, 11, 27, 14, 0, 0, 0, time.UTC)

var (
	k8sClient  client.Client
	kubeconfig string
)

func TestMain(m *testing.M) {
	flag.Parse()
	if os.Getenv("KUBEBUILDER_ASSETS") == "" {
		// Run through `make test`, which builds the API server and sets it.
		os.Exit(m.Run())
	}
	env := &envtest.Environment{CRDDirectoryPaths: []string{filepath.Join("..", "..", "config", "crd", "bases")}, ErrorIfCRDPathMissing: true}
	cfg, err := env.Start()
	if err != nil {
		panic(err)
	}
	code := func() int {
		defer func() { _ = env.Stop() }()
		user, err := env.AddUser(envtest.User{Name: "viewer", Groups: []string{"system:masters"}}, nil)
		if err != nil {
			panic(err)
		}
		data, err := user.KubeConfig()
		if err != nil {
			panic(err)
		}
		dir, err := os.MkdirTemp("", "kubectl-llmquota")
		if err != nil {
			panic(err)
		}
		defer func() { _ = os.RemoveAll(dir) }()
		kubeconfig = filepath.Join(dir, "kubeconfig")
		if err := os.WriteFile(kubeconfig, data, 0o600); err != nil {
			panic(err)
		}
		scheme := runtime.NewScheme()
		_ = llmv1.AddToScheme(scheme)
		_ = corev1.AddToScheme(scheme)
		if k8sClient, err = client.New(cfg, client.Options{Scheme: scheme}); err != nil {
			panic(err)
		}
		if err := createFixtures(context.Background()); err != nil {
			panic(err)
		}
		return m.Run()
	}()
	os.Exit(code)
}

func needAPIServer(t *testing.T) {
	t.Helper()
	if k8sClient == nil {
		// A missing prerequisite fails the suite: a skip would hide the test.
		t.Fatal("needs the API server: run through `make test`, which sets KUBEBUILDER_ASSETS")
	}
}

func condition(typ string, status metav1.ConditionStatus, reason, message string) metav1.Condition {
	return metav1.Condition{Type: typ, Status: status, Reason: reason, Message: message, LastTransitionTime: metav1.NewTime(now.Add(-time.Hour))}
}

func at(d time.Duration) *metav1.Time { t := metav1.NewTime(now.Add(d)); return &t }

// createFixtures writes two providers and four batches with the statuses a
// manager would have written, one of each state a user meets.
func createFixtures(ctx context.Context) error {
	gemini := &llmv1.LLMProvider{ObjectMeta: metav1.ObjectMeta{Name: "gemini"}, Spec: llmv1.LLMProviderSpec{NamespaceSelector: &metav1.LabelSelector{},
		Type: llmv1.ProviderGemini, Model: "gemini-2.5-flash",
		CredentialsSecretRef: &llmv1.SecretKeyReference{Namespace: "default", Name: "gemini-api-key", Key: "api-key"},
		Limits:               llmv1.RateLimits{RequestsPerMinute: ptr.To[int32](60), RequestsPerHour: ptr.To[int32](3600)},
		Cost: &llmv1.CostPolicy{PerRequest: "0.01", Alerts: llmv1.CostAlerts{Daily: "5.00", Monthly: "50.00"},
			Budgets: llmv1.CostBudgets{Daily: "10.00"}},
	}}
	pool := &llmv1.LLMProvider{ObjectMeta: metav1.ObjectMeta{Name: "local"}, Spec: llmv1.LLMProviderSpec{NamespaceSelector: &metav1.LabelSelector{},
		Type: llmv1.ProviderOllama, Model: "tiny-a",
		Ollama: &llmv1.OllamaSpec{Namespace: "llm", PodSelector: metav1.LabelSelector{MatchLabels: map[string]string{"app": "ollama"}}},
	}}
	for _, p := range []*llmv1.LLMProvider{gemini, pool} {
		if err := k8sClient.Create(ctx, p); err != nil {
			return err
		}
	}
	gemini.Status = llmv1.LLMProviderStatus{
		Conditions: []metav1.Condition{
			condition(llmv1.ConditionReady, metav1.ConditionTrue, llmv1.ReasonConfigured, "credentials and fallback chain resolve"),
			condition(llmv1.ConditionDegraded, metav1.ConditionFalse, llmv1.ReasonHealthy, "recent calls succeed"),
			condition(llmv1.ConditionRateLimited, metav1.ConditionTrue, llmv1.ReasonMinuteWindowFull, "next call at 2026-11-27T14:00:12Z"),
			condition(llmv1.ConditionCostAlert, metav1.ConditionFalse, llmv1.ReasonWithinThreshold, "under the thresholds"),
		},
		Usage: llmv1.ProviderUsage{
			Minute:      &llmv1.WindowUsage{Used: 60, Limit: 60, Summary: "60/60"},
			Hour:        &llmv1.WindowUsage{Used: 245, Limit: 3600, Summary: "245/3600"},
			Day:         &llmv1.WindowUsage{Summary: llmv1.UnlimitedSummary},
			Interactive: &llmv1.LaneUsage{CallsLastMinute: 42, TokensLastMinute: 18400, RefusedLastMinute: 3, InFlight: 2, Waiting: 1},
			Batch:       &llmv1.LaneUsage{CallsLastMinute: 18, TokensLastMinute: 5200, InFlight: 1, Waiting: 21},
		},
		NextRequestAt: at(12 * time.Second),
		Cost:          &llmv1.CostStatus{Day: "2026-11-27", Today: "0.41", Month: "2026-11", ThisMonth: "3.20"},
	}
	pool.Status = llmv1.LLMProviderStatus{
		Conditions: []metav1.Condition{
			condition(llmv1.ConditionReady, metav1.ConditionTrue, llmv1.ReasonConfigured, "credentials and fallback chain resolve"),
			condition(llmv1.ConditionDegraded, metav1.ConditionTrue, llmv1.ReasonConsecutiveFailures, "3 failed calls in a row"),
			condition(llmv1.ConditionRateLimited, metav1.ConditionTrue, llmv1.ReasonBackingOff, "next call at 2026-11-27T14:00:08Z"),
			condition(llmv1.ConditionWarm, metav1.ConditionTrue, llmv1.ReasonEndpointsWarm, "1/2 endpoints warm"),
		},
		Usage:        llmv1.ProviderUsage{Minute: &llmv1.WindowUsage{Summary: llmv1.UnlimitedSummary}, Hour: &llmv1.WindowUsage{Summary: llmv1.UnlimitedSummary}, Day: &llmv1.WindowUsage{Summary: llmv1.UnlimitedSummary}},
		BackoffUntil: at(8 * time.Second),
		Endpoints: []llmv1.EndpointStatus{
			{Name: "ollama-0", Node: "gpu-1", State: llmv1.EndpointWarm, Model: "tiny-a", VRAMBytes: 2 << 30, GPUMemoryUsedBytes: 8912896000, GPUMemoryTotalBytes: 80 << 30,
				PodGPUMemoryBytes: 2254857830, GPUMemorySource: llmv1.GPUSourceNVML},
			{Name: "ollama-1", Node: "gpu-2", State: llmv1.EndpointCold, Message: "loading model tiny-a"},
		},
	}
	for _, p := range []*llmv1.LLMProvider{gemini, pool} {
		if err := k8sClient.Status().Update(ctx, p); err != nil {
			return err
		}
	}

	type fixture struct {
		ns, name, provider string
		counts             llmv1.ItemCounts
		conditions         []metav1.Condition
		eta                *metav1.Time
		usage              *llmv1.BatchUsage
	}
	fixtures := []fixture{
		{"default", "news-sentiment", "gemini", llmv1.ItemCounts{Total: 136, Filtered: 95, Succeeded: 20},
			[]metav1.Condition{condition(llmv1.ConditionProgressing, metav1.ConditionFalse, llmv1.ReasonMinuteWindowFull, "20 of 41 items done; the minute window of LLMProvider gemini is full; its status.nextRequestAt says when")},
			at(3*time.Minute + 12*time.Second), &llmv1.BatchUsage{TokensIn: 840, TokensOut: 1200, CostUSD: "0.20"}},
		{"team-a", "early", "not-yet", llmv1.ItemCounts{},
			[]metav1.Condition{condition(llmv1.ConditionProgressing, metav1.ConditionFalse, llmv1.ReasonProviderNotFound, `LLMProvider "not-yet" named by spec.providerRef does not exist`)}, nil, nil},
		{"team-b", "summaries", "local", llmv1.ItemCounts{Total: 40, Succeeded: 40},
			[]metav1.Condition{condition(llmv1.ConditionProgressing, metav1.ConditionFalse, llmv1.ReasonSucceeded, "40 items done"),
				condition(llmv1.ConditionFinished, metav1.ConditionTrue, llmv1.ReasonSucceeded, "40 items done")}, nil,
			&llmv1.BatchUsage{TokensIn: 4000, TokensOut: 2000}},
		{"team-b", "translations", "local", llmv1.ItemCounts{Total: 12, Succeeded: 9, Failed: 3},
			[]metav1.Condition{condition(llmv1.ConditionProgressing, metav1.ConditionFalse, llmv1.ReasonItemsFailed, "3 of 12 items failed after their retries"),
				condition(llmv1.ConditionFinished, metav1.ConditionTrue, llmv1.ReasonItemsFailed, "3 of 12 items failed after their retries")}, nil,
			&llmv1.BatchUsage{TokensIn: 900, TokensOut: 450, CostUSD: "0.000001"}},
	}
	for _, f := range fixtures {
		if f.ns != "default" {
			if err := k8sClient.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: f.ns}}); client.IgnoreAlreadyExists(err) != nil {
				return err
			}
		}
		b := &llmv1.InferenceBatch{ObjectMeta: metav1.ObjectMeta{Namespace: f.ns, Name: f.name}, Spec: llmv1.InferenceBatchSpec{
			ProviderRef: llmv1.ProviderReference{Name: llmv1.LocalObjectName(f.provider)},
			Items:       []llmv1.Item{{ID: "a", Prompt: "p", Score: "0.5"}},
		}}
		if err := k8sClient.Create(ctx, b); err != nil {
			return err
		}
		b.Status.Counts = f.counts
		for _, c := range f.conditions {
			meta.SetStatusCondition(&b.Status.Conditions, c)
		}
		b.Status.EstimatedCompletionTime, b.Status.Usage = f.eta, f.usage
		if err := k8sClient.Status().Update(ctx, b); err != nil {
			return err
		}
	}
	return nil
}

// TestTopGolden draws the dashboard from a real API server at a fixed
// clock and compares it with testdata/top.golden (go test -update rewrites it).
func TestTopGolden(t *testing.T) {
	needAPIServer(t)
	var out, errOut bytes.Buffer
	if code := run(context.Background(), []string{"top", "--kubeconfig", kubeconfig}, &out, &errOut, clocktesting.NewFakePassiveClock(now)); code != 0 {
		t.Fatalf("exit %d: %s", code, errOut.String())
	}
	golden := filepath.Join("testdata", "top.golden")
	if *update {
		if err := os.WriteFile(golden, out.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatal(err)
	}
	if out.String() != string(want) {
		t.Fatalf("top drew (want testdata/top.golden; -update rewrites it):\n%s", out.String())
	}
}

// TestTopJSON: -o json carries the same view, for scripts.
func TestTopJSON(t *testing.T) {
	needAPIServer(t)
	var out, errOut bytes.Buffer
	if code := run(context.Background(), []string{"top", "--kubeconfig", kubeconfig, "-o", "json", "-n", "team-b"}, &out, &errOut, clocktesting.NewFakePassiveClock(now)); code != 0 {
		t.Fatalf("exit %d: %s", code, errOut.String())
	}
	var s dashboard.Snapshot
	if err := json.Unmarshal(out.Bytes(), &s); err != nil {
		t.Fatalf("%v: %s", err, out.String())
	}
	if len(s.Batches) != 2 || s.Batches[1].Name != "translations" || s.Batches[1].Failed != 3 || s.Batches[1].Status != llmv1.ReasonItemsFailed {
		t.Fatalf("team-b's batches: %+v", s.Batches)
	}
	gemini := s.Providers[0]
	if gemini.Name != "gemini" || gemini.Windows[0].FreesInSeconds != 12 || !gemini.Windows[2].Unlimited || gemini.Cost.DailyBudget != "10.00" {
		t.Fatalf("gemini: %+v", gemini)
	}
	wantLanes := []dashboard.Lane{{Name: "interactive", Calls: 42, Tokens: 18400, Refused: 3, InFlight: 2, Waiting: 1},
		{Name: "batch", Calls: 18, Tokens: 5200, InFlight: 1, Waiting: 21}}
	if !slices.Equal(gemini.Lanes, wantLanes) {
		t.Fatalf("gemini's lanes: %+v, want %+v", gemini.Lanes, wantLanes)
	}
}

func TestTopRefusesUnknownOutput(t *testing.T) {
	var out, errOut bytes.Buffer
	if code := run(context.Background(), []string{"top", "-o", "yaml"}, &out, &errOut, clocktesting.NewFakePassiveClock(now)); code != 2 || !bytes.Contains(errOut.Bytes(), []byte(`-o "yaml"`)) {
		t.Fatalf("exit %d, %q", code, errOut.String())
	}
}

// TestCost: the tokens and cost of every namespace's batches, the most
// expensive namespace first, as a table and as JSON.
func TestCost(t *testing.T) {
	needAPIServer(t)
	var out, errOut bytes.Buffer
	if code := run(context.Background(), []string{"cost", "--kubeconfig", kubeconfig, "-o", "json"}, &out, &errOut, clocktesting.NewFakePassiveClock(now)); code != 0 {
		t.Fatalf("exit %d: %s", code, errOut.String())
	}
	var r dashboard.CostReport
	if err := json.Unmarshal(out.Bytes(), &r); err != nil {
		t.Fatalf("%v: %s", err, out.String())
	}
	var got []string
	for _, ns := range r.Namespaces {
		got = append(got, fmt.Sprintf("%s %d/%d %s", ns.Namespace, ns.Usage.TokensIn, ns.Usage.TokensOut, ns.Usage.CostUSD))
	}
	if want := []string{"default 840/1200 0.20", "team-b 4900/2450 0.000001", "team-a 0/0 0.00"}; !slices.Equal(got, want) {
		t.Fatalf("namespaces %v, want %v", got, want)
	}
	out.Reset()
	if code := run(context.Background(), []string{"cost", "--kubeconfig", kubeconfig, "-n", "team-b"}, &out, &errOut, clocktesting.NewFakePassiveClock(now)); code != 0 {
		t.Fatalf("exit %d: %s", code, errOut.String())
	}
	for _, want := range []string{"NAMESPACE", "team-b", "summaries", "translations", "0.000001"} {
		if !strings.Contains(out.String(), want) {
			t.Fatalf("the table lacks %q:\n%s", want, out.String())
		}
	}
	if strings.Contains(out.String(), "news-sentiment") {
		t.Fatalf("-n team-b shows another namespace's batch:\n%s", out.String())
	}
}

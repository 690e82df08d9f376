// Command bench-scale measures llmquota at production scale: for each size
// it starts a fresh control plane (etcd + kube-apiserver), the provider
// emulator with a fixed latency and no quota, and the real manager binary;
// creates that many InferenceBatches in parallel across namespaces; waits
// until all are Complete; and prints time to all Complete, admission
// p50/p99 (from the create call's answer until the watch shows
// Admitted=True), items/s, manager peak RSS and CPU seconds, API writes per item
// (the manager's rest_client_requests_total), etcd growth and the result
// bytes stored, and how far a batch's status lagged behind its stored
// results. Run it through `make bench-scale`.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"

	llmv1 "github.com/llmquota/llmquota/api/v1alpha1"
	"github.com/llmquota/llmquota/internal/memlimit"
	"github.com/llmquota/llmquota/internal/testbed/apiserver"
	"github.com/llmquota/llmquota/internal/testbed/process"
	"github.com/llmquota/llmquota/internal/testbed/supervise"
)

type config struct {
	sizes                          []int
	items, namespaces, concurrency int
	rpm                            int
	batchSize, workers, flushItems int
	// createRate paces the creates (a second); 0 creates in a burst.
	createRate                   int
	latency, flushEvery, timeout time.Duration
	batchDelay                   time.Duration
	pprof                        string
	// apiserverProfile, if set, is where the API server's CPU profile of
	// the run's first apiserverProfileFor is written.
	apiserverProfile    string
	apiserverProfileFor time.Duration
	// s3 reads every batch's items from, and writes its results to, a
	// real MinIO (the S3 sink) instead of inline items and ConfigMaps.
	s3 bool
	// s3Input reads the items from MinIO and keeps the ConfigMap sink:
	// results in etcd without inline items beside them.
	s3Input bool
	// baseline runs this manager binary instead of bin/manager, with only
	// the flags every version has (the first wave's, for the baseline row).
	baseline string
	// crds is the directory of the CRDs served (an older commit's, to
	// measure what the schema alone costs).
	crds string
	// policies is the admission policy directory; empty: none.
	policies string
	// memoryLimit is the container limit the manager is told of, as the
	// chart tells it (LLMQUOTA_MEMORY_LIMIT); 0 tells none.
	memoryLimit int64
	// keep keeps each run's directory (manager and emulator logs).
	keep bool
	// ranges is the file of the key figures' ranges each run is checked
	// against; empty checks none.
	ranges string
}

func main() {
	supervise.Run() // whatever ends this program, its control plane and children end with it
	var c config
	sizes := flag.String("sizes", "100,300,1000", "Comma-separated numbers of InferenceBatches, one run each.")
	flag.IntVar(&c.items, "items", 100, "Items per batch.")
	flag.IntVar(&c.namespaces, "namespaces", 100, "Namespaces the batches are spread across.")
	flag.IntVar(&c.concurrency, "concurrency", 256, "The provider's maxConcurrency.")
	flag.IntVar(&c.rpm, "rpm", defaultRPM, "The provider's requestsPerMinute: below what the concurrency and latency allow, the batches wait on a saturated provider.")
	flag.IntVar(&c.batchSize, "batch-size", 20, "Each batch's spec.batchSize.")
	flag.DurationVar(&c.batchDelay, "batch-delay", 0, "Each batch's spec.batchDelay.")
	flag.DurationVar(&c.latency, "latency", 200*time.Millisecond, "The emulator's latency per call.")
	flag.IntVar(&c.workers, "workers", 8, "The manager's --batch-workers.")
	flag.IntVar(&c.createRate, "create-rate", 0, "Batches created a second; 0: as fast as 16 goroutines can (a burst).")
	flag.DurationVar(&c.flushEvery, "flush-interval", 10*time.Second, "The manager's --results-flush-interval.")
	flag.IntVar(&c.flushItems, "flush-items", 100, "The manager's --results-flush-items.")
	flag.BoolVar(&c.s3, "s3", false, "Items from and results to object storage (a real MinIO from $MINIO) instead of inline items and ConfigMaps.")
	flag.BoolVar(&c.s3Input, "s3-input", false, "Items from object storage (a real MinIO from $MINIO), results to ConfigMaps.")
	flag.StringVar(&c.crds, "crds", "config/crd/bases", "Directory of the CRDs the API server serves (an older commit's, to measure what the schema costs; make bench-apiwrite extracts them).")
	flag.StringVar(&c.policies, "policies", "config/policy", "Directory of the admission policies installed beside the CRDs; empty: none (with an older commit's CRDs, whose rules were all in the CRD).")
	flag.StringVar(&c.baseline, "baseline-manager", "", "Measure this manager binary instead (an older build, such as the first wave's), passing only the flags it knows.")
	flag.StringVar(&c.ranges, "ranges", "test/performance/scale/ranges.yaml", "File of the ranges the key figures of every run must fall in (a figure outside fails the run); empty: none.")
	flag.BoolVar(&c.keep, "keep", false, "Keep each run's directory with the manager's and the emulator's logs.")
	flag.Int64Var(&c.memoryLimit, "memory-limit", 256<<20, "Bytes of the container memory limit passed to the manager as the chart does (LLMQUOTA_MEMORY_LIMIT; the chart's default is 256Mi); 0: none.")
	flag.StringVar(&c.pprof, "pprof", "0", "The manager's --pprof-bind-address, to profile it during a run.")
	flag.StringVar(&c.apiserverProfile, "apiserver-profile", "", "Write the API server's CPU profile of the run's first -apiserver-profile-for to this file (go tool pprof reads it); with several sizes, the size is appended to the name.")
	flag.DurationVar(&c.apiserverProfileFor, "apiserver-profile-for", 20*time.Second, "How long -apiserver-profile profiles, from the first create.")
	flag.DurationVar(&c.timeout, "timeout", 20*time.Minute, "Give up a run after this long.")
	flag.Parse()
	ctrllog.SetLogger(logr.Discard()) // envtest logs nothing the table needs
	for _, s := range strings.Split(*sizes, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n < 1 {
			fmt.Fprintf(os.Stderr, "bench-scale: bad size %q\n", s)
			os.Exit(2)
		}
		c.sizes = append(c.sizes, n)
	}
	sink := map[string]string{sinkConfigMap: "inline items, ConfigMap sink", sinkS3: "items from S3, S3 sink (MinIO)",
		sinkS3Input: "items from S3 (MinIO), ConfigMap sink"}[sinkOf(c)]
	if c.baseline != "" {
		fmt.Printf("# baseline: %s\n", c.baseline)
	}
	creates := "created in a burst from 16 goroutines"
	if c.createRate > 0 {
		creates = fmt.Sprintf("created at %d a second", c.createRate)
	}
	fmt.Printf("# %d items per batch across %d namespaces, %s, %s; provider latency %s, maxConcurrency %d; batchSize %d, batchDelay %s; manager --batch-workers=%d --results-flush-interval=%s --results-flush-items=%d, container memory limit %d MiB\n",
		c.items, c.namespaces, sink, creates, c.latency, c.concurrency, c.batchSize, c.batchDelay, c.workers, c.flushEvery, c.flushItems, c.memoryLimit>>20)
	fmt.Println("| batches | items | all Complete | admission p50 / p99 | items/s | manager peak RSS | manager CPU | API writes / item | etcd growth | result bytes | status lag max |")
	fmt.Println("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
	for _, n := range c.sizes {
		row, err := run(c, n)
		if err != nil {
			fmt.Fprintf(os.Stderr, "bench-scale: %d batches: %v\n", n, err)
			os.Exit(1)
		}
		fmt.Println(row)
	}
}

// run measures one size on a fresh control plane.
func run(c config, batches int) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), c.timeout)
	defer cancel()
	dir, err := os.MkdirTemp("", "bench-scale-")
	if err != nil {
		return "", err
	}
	if c.keep {
		fmt.Fprintf(os.Stderr, "bench-scale: logs kept in %s\n", dir)
	} else {
		defer func() { _ = os.RemoveAll(dir) }()
	}
	bin := os.Getenv("LLMQUOTA_BIN")

	env := &envtest.Environment{CRDDirectoryPaths: []string{c.crds}, ErrorIfCRDPathMissing: true}
	env.ControlPlane.GetAPIServer().Configure().Append("max-requests-inflight", "2000").Append("max-mutating-requests-inflight", "1000")
	cfg, err := env.Start()
	if err != nil {
		return "", fmt.Errorf("starting the control plane (KUBEBUILDER_ASSETS): %w", err)
	}
	defer func() { _ = env.Stop() }()
	kubeconfig, err := apiserver.WriteAdminKubeconfig(env, dir, "bench-admin", &rest.Config{QPS: 2000, Burst: 4000})
	if err != nil {
		return "", err
	}
	if err := llmv1.AddToScheme(scheme.Scheme); err != nil {
		return "", err
	}
	cfg.QPS, cfg.Burst = 2000, 4000
	k, err := client.New(cfg, client.Options{Scheme: scheme.Scheme})
	if err != nil {
		return "", err
	}
	if c.policies != "" {
		if err := apiserver.InstallPolicies(ctx, k, c.policies); err != nil {
			return "", err
		}
	}

	port, err := process.FreePort()
	if err != nil {
		return "", err
	}
	emu, err := process.Start(filepath.Join(dir, "emulator.log"), filepath.Join(bin, "provider-emulator"),
		"--listen", fmt.Sprintf("127.0.0.1:%d", port), "--latency", c.latency.String(), "--keys", "bench-key")
	if err != nil {
		return "", err
	}
	defer emu.Stop()
	metricsPort, err := process.FreePort()
	if err != nil {
		return "", err
	}
	if c.memoryLimit > 0 {
		if err := os.Setenv(memlimit.EnvVar, strconv.FormatInt(c.memoryLimit, 10)); err != nil {
			return "", err
		}
	}
	path, args := filepath.Join(bin, "manager"), []string{"--kubeconfig", kubeconfig, "--leader-elect=false", "--health-probe-bind-address=0",
		fmt.Sprintf("--metrics-bind-address=127.0.0.1:%d", metricsPort), "--metrics-secure=false"}
	if c.baseline != "" {
		path = c.baseline
	} else {
		args = append(args, fmt.Sprintf("--batch-workers=%d", c.workers), "--results-flush-interval="+c.flushEvery.String(),
			fmt.Sprintf("--results-flush-items=%d", c.flushItems), "--pprof-bind-address="+c.pprof,
			// MinIO listens on loopback, which the manager refuses unless
			// allowed (docs/tenancy.md).
			"--s3-allowed-endpoints=127.0.0.1")
	}
	mgr, err := process.Start(filepath.Join(dir, "manager.log"), path, args...)
	if err != nil {
		return "", err
	}
	defer mgr.Stop()

	if err := createProvider(ctx, k, c, port); err != nil {
		return "", err
	}
	for i := range min(c.namespaces, batches) {
		if err := k.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("team-%03d", i)}}); err != nil {
			return "", err
		}
	}
	// Batches are created once the provider is Ready, so that admission is
	// measured, not the manager's start: a batch created before then waits
	// (ProviderNotReady, rechecked every 5 s) as it should.
	if err := waitProviderReady(ctx, k); err != nil {
		return "", err
	}
	var store *objects
	if c.s3 || c.s3Input {
		if store, err = startObjects(ctx, k, c, batches); err != nil {
			return "", err
		}
		defer store.srv.Close()
	}
	etcdBefore, err := etcdSize(env)
	if err != nil {
		return "", err
	}
	liveBefore, liveErr := etcdLive(env)
	writesBefore, err := managerWrites(metricsPort)
	if err != nil {
		return "", fmt.Errorf("reading the manager's metrics: %w", err)
	}

	w := newWatcher(batches)
	go w.batches(ctx, cfg)
	go w.shards(ctx, cfg)
	go w.journal(ctx, cfg)
	if c.apiserverProfile != "" {
		path := c.apiserverProfile
		if len(c.sizes) > 1 {
			path += "." + strconv.Itoa(batches)
		}
		go profileAPIServer(ctx, cfg, path, c.apiserverProfileFor)
	}
	cpuBefore := cpuShares()
	start := time.Now()
	go func() { // who used the CPU while admissions were pending
		select {
		case <-ctx.Done():
		case <-w.allAdmitted:
			fmt.Fprintf(os.Stderr, "bench-scale: %d batches: CPU by process until the last admission: %s\n", batches, cpuSpent(cpuBefore, cpuShares(), time.Since(start)))
		}
	}()
	if err := createBatches(ctx, k, c, batches, w, store); err != nil {
		return "", err
	}
	created := time.Since(start)
	fmt.Fprintf(os.Stderr, "bench-scale: %d batches created in %.1f s; CPU by process meanwhile: %s\n", batches, created.Seconds(), cpuSpent(cpuBefore, cpuShares(), created))
	if err := w.waitComplete(ctx, batches); err != nil {
		return "", fmt.Errorf("%w (manager log: keep it with a breakpoint in %s)", err, dir)
	}
	elapsed := time.Since(start)
	fmt.Fprintf(os.Stderr, "bench-scale: %d batches: CPU by process from the first create to the last completion: %s\n", batches, cpuSpent(cpuBefore, cpuShares(), elapsed))
	usage, err := process.UsageOf(mgr.Pid())
	if err != nil {
		return "", err
	}
	writes, err := managerWrites(metricsPort)
	if err != nil {
		return "", err
	}
	etcdAfter, err := etcdSize(env)
	if err != nil {
		return "", err
	}
	fmt.Fprintf(os.Stderr, "bench-scale: %d batches: objects written, as the watch saw them: %s\n", batches, w.written())
	fmt.Fprintf(os.Stderr, "bench-scale: %d batches: the API server's watch showed each new batch p50 %s, p99 %s after its create returned (the manager's informer waits as long)\n",
		batches, w.delivery(0.5).Round(time.Millisecond), w.delivery(0.99).Round(time.Millisecond))
	if text, err := fetchMetrics(fmt.Sprintf("http://127.0.0.1:%d/metrics", metricsPort)); err != nil {
		fmt.Fprintf(os.Stderr, "bench-scale: %d batches: the manager's metrics: %v\n", batches, err)
	} else {
		fmt.Fprintf(os.Stderr, "bench-scale: %d batches: the manager's InferenceBatch reconciles: %s\n", batches, batchQueue(text))
		fmt.Fprintf(os.Stderr, "bench-scale: %d batches: the manager's admission wait: %s\n", batches, admissionWait(text))
	}
	if !c.s3 {
		fmt.Fprintf(os.Stderr, "bench-scale: %d batches: %s\n", batches, w.lagSummary(start))
	}
	if liveAfter, err := etcdLive(env); err != nil || liveErr != nil {
		fmt.Fprintf(os.Stderr, "bench-scale: %d batches: etcd compaction: %v\n", batches, errors.Join(liveErr, err))
	} else {
		fmt.Fprintf(os.Stderr, "bench-scale: %d batches: etcd after compacting its history and defragmenting: %.1f MiB more (the objects as they are now, without older revisions)\n",
			batches, float64(liveAfter-liveBefore)/(1<<20))
	}
	resultsIn := store
	if !c.s3 {
		resultsIn = nil // in ConfigMaps
	}
	resultBytes, err := storedResultBytes(ctx, k, resultsIn)
	if err != nil {
		return "", err
	}
	lag := w.maxLag().Round(time.Millisecond).String()
	if c.s3 {
		lag = "-" // no ConfigMaps to watch
	}
	items := batches * c.items
	byMethod, sum := delta(writesBefore, writes)
	f := figures{batches: batches, items: items, elapsed: elapsed, p50: w.admission(0.50), p99: w.admission(0.99),
		peakRSS: usage.PeakRSS, cpu: usage.CPU, writesPerItem: float64(sum) / float64(items), byMethod: byMethod,
		etcdGrowth: etcdAfter - etcdBefore, resultBytes: resultBytes, resultsInEtcd: !c.s3, lag: lag}
	row := f.row()
	if err := checkRanges(c, f); err != nil {
		fmt.Println(row)
		return "", err
	}
	return row, nil
}

// defaultRPM is the provider's requestsPerMinute unless -rpm says less: a
// window that never fills, so the concurrency and the latency set the pace.
const defaultRPM = 1000000

func createProvider(ctx context.Context, k client.Client, c config, port int) error {
	if err := k.Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "bench-key"},
		StringData: map[string]string{"apiKey": "bench-key"}}); err != nil {
		return err
	}
	return k.Create(ctx, &llmv1.LLMProvider{ObjectMeta: metav1.ObjectMeta{Name: "bench"}, Spec: llmv1.LLMProviderSpec{NamespaceSelector: &metav1.LabelSelector{},
		Type: llmv1.ProviderGemini, Endpoint: fmt.Sprintf("http://127.0.0.1:%d", port), Model: "bench-model",
		CredentialsSecretRef: &llmv1.SecretKeyReference{Namespace: "default", Name: "bench-key", Key: "apiKey"},
		Limits:               llmv1.RateLimits{RequestsPerMinute: ptr.To(int32(c.rpm)), MaxConcurrency: int32(c.concurrency)},
	}})
}

// waitProviderReady waits until the manager has found the provider Ready.
func waitProviderReady(ctx context.Context, k client.Client) error {
	for {
		var p llmv1.LLMProvider
		if err := k.Get(ctx, client.ObjectKey{Name: "bench"}, &p); err != nil {
			return err
		}
		if meta.IsStatusConditionTrue(p.Status.Conditions, llmv1.ConditionReady) {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("the provider is not Ready: %w", ctx.Err())
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// createBatches creates n batches from 16 goroutines, round robin over the
// namespaces, as fast as they can or c.createRate a second, and records
// when each was created.
func createBatches(ctx context.Context, k client.Client, c config, n int, w *watcher, store *objects) error {
	var tick <-chan time.Time
	if c.createRate > 0 {
		t := time.NewTicker(time.Second / time.Duration(c.createRate))
		defer t.Stop()
		tick = t.C
	}
	next := make(chan int)
	errs := make(chan error, 16)
	var wg sync.WaitGroup
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				b := batch(c, i, store)
				if err := k.Create(ctx, b); err != nil {
					errs <- fmt.Errorf("creating batch %s/%s: %w", b.Namespace, b.Name, err)
					return
				}
				w.created(b.Namespace+"/"+b.Name, time.Now())
			}
		}()
	}
	for i := range n {
		if tick != nil {
			<-tick
		}
		next <- i
	}
	close(next)
	wg.Wait()
	close(errs)
	return <-errs
}

func batch(c config, i int, store *objects) *llmv1.InferenceBatch {
	delayMillis := int32(c.batchDelay / time.Millisecond)
	b := &llmv1.InferenceBatch{ObjectMeta: metav1.ObjectMeta{Namespace: fmt.Sprintf("team-%03d", i%c.namespaces), Name: fmt.Sprintf("batch-%05d", i)},
		Spec: llmv1.InferenceBatchSpec{ProviderRef: llmv1.ProviderReference{Name: "bench"}, MinScore: "0", BatchSize: int32(c.batchSize),
			BatchDelayMilliseconds: &delayMillis}}
	if store != nil {
		b.Spec.ItemsFrom = &llmv1.ItemsSource{S3: &llmv1.S3ObjectReference{S3Bucket: store.bucket, Key: inputKey(i)}}
		if c.s3 {
			b.Spec.Output = llmv1.OutputSpec{Kind: llmv1.OutputS3, S3: &llmv1.S3Output{S3Bucket: store.bucket}}
		}
		return b
	}
	for j := range c.items {
		b.Spec.Items = append(b.Spec.Items, llmv1.Item{ID: fmt.Sprintf("item-%06d", j), Score: "0.5", Prompt: prompt(i, j)})
	}
	return b
}

// prompt is a 100-byte prompt, as a news headline with its context.
func prompt(batch, item int) string {
	return fmt.Sprintf("Rate the sentiment of headline %06d of batch %05d for the trading desk: %s", item, batch, strings.Repeat("x", 19))
}

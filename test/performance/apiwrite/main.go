// Command bench-apiwrite measures what one InferenceBatch costs the API
// server, for the CRDs of this tree against a baseline's: CPU per create
// and per status write (the kube-apiserver process's own CPU time, from
// /proc through testbed/process), and the bytes of the stored object with
// its managedFields. Each CRD set (with its admission policies, if any,
// and its way of writing status) gets a fresh API server and etcd; the
// sets alternate, run after run, so a drift of the machine hits both.
// `make bench-apiwrite` runs it against the CRDs of a named commit;
// docs/benchmarks.md has the figures.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"slices"
	"strings"
	"sync"

	"github.com/go-logr/logr"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	logf "sigs.k8s.io/controller-runtime/pkg/log"

	llmv1 "github.com/llmquota/llmquota/api/v1alpha1"
	"github.com/llmquota/llmquota/internal/testbed/apiserver"
	"github.com/llmquota/llmquota/internal/testbed/process"
	"github.com/llmquota/llmquota/internal/testbed/supervise"
)

type options struct {
	batches, items, patches, runs, workers int
}

// Ways of writing a batch's status.
const (
	// writePatch is a JSON merge patch of the status subresource, as the
	// manager sent until 2026-11-28.
	writePatch = "patch"
	// writePut is a PUT of the status subresource without the inline
	// items, as the manager sends now (writeStatus).
	writePut = "put"
)

// figures are one run's, per batch.
type figures struct {
	createMs, statusMs  float64
	objectBytes, mfByte int
}

func main() {
	supervise.Run() // whatever ends this program, its control plane and children end with it
	var o options
	baseline := flag.String("baseline", "", "Directory of the baseline's CRDs.")
	basePolicies := flag.String("baseline-policies", "", "Directory of the baseline's admission policies (config/policy); empty: none.")
	crds := flag.String("crds", "config/crd/bases", "Directory of the CRDs measured.")
	policies := flag.String("policies", "config/policy", "Directory of the admission policies installed with the CRDs measured; empty: none.")
	baseWrite := flag.String("baseline-write", writePatch, "How the baseline writes status: patch (a merge patch, as the manager did before 2026-11-28) or put (a PUT without the inline items).")
	write := flag.String("write", writePut, "How this tree writes status: put (as the manager does) or patch.")
	flag.IntVar(&o.batches, "batches", 300, "Batches created per run.")
	flag.IntVar(&o.items, "items", 100, "Inline items per batch (prompts as test/performance/scale writes them).")
	flag.IntVar(&o.patches, "patches", 3, "Status writes per batch (as the manager's: start time, counts, a condition).")
	flag.IntVar(&o.runs, "runs", 3, "Runs of each CRD set, alternating.")
	flag.IntVar(&o.workers, "workers", 8, "Requests in flight.")
	flag.Parse()
	if *baseline == "" {
		fmt.Fprintln(os.Stderr, "-baseline names the baseline's CRD directory")
		os.Exit(2)
	}
	logf.SetLogger(logr.Discard()) // envtest's own lines are not figures
	if err := llmv1.AddToScheme(scheme.Scheme); err != nil {
		panic(err)
	}
	for _, w := range []string{*baseWrite, *write} {
		if w != writePatch && w != writePut {
			fmt.Fprintf(os.Stderr, "a status write is %s or %s, not %q\n", writePatch, writePut, w)
			os.Exit(2)
		}
	}
	sets := []struct{ name, dir, policies, write string }{{"baseline", *baseline, *basePolicies, *baseWrite}, {"this tree", *crds, *policies, *write}}
	all := map[string][]figures{}
	for r := 0; r < o.runs; r++ {
		for _, s := range sets {
			f, err := measure(s.dir, s.policies, s.write, o)
			if err != nil {
				fmt.Fprintf(os.Stderr, "%s: %v\n", s.name, err)
				os.Exit(1)
			}
			fmt.Printf("run %d %-9s create %5.1f ms CPU, status %-5s %5.1f ms CPU, object %6d bytes (managedFields %5d)\n",
				r+1, s.name, f.createMs, s.write, f.statusMs, f.objectBytes, f.mfByte)
			all[s.name] = append(all[s.name], f)
		}
	}
	fmt.Printf("\n%d batches x %d items, %d status writes each, median of %d runs (kube-apiserver CPU per request):\n", o.batches, o.items, o.patches, o.runs)
	fmt.Println("| CRDs | create | status write | object in etcd | of which managedFields |")
	fmt.Println("| --- | --- | --- | --- | --- |")
	for _, s := range sets {
		fs := all[s.name]
		fmt.Printf("| %s | %.1f ms | %s %.1f ms | %d B | %d B |\n", s.name,
			median(fs, func(f figures) float64 { return f.createMs }), s.write, median(fs, func(f figures) float64 { return f.statusMs }),
			fs[0].objectBytes, fs[0].mfByte)
	}
}

func median(fs []figures, get func(figures) float64) float64 {
	v := make([]float64, len(fs))
	for i, f := range fs {
		v[i] = get(f)
	}
	slices.Sort(v)
	if len(v)%2 == 1 {
		return v[len(v)/2]
	}
	return (v[len(v)/2-1] + v[len(v)/2]) / 2
}

func measure(dir, policies, write string, o options) (figures, error) {
	env := &envtest.Environment{CRDDirectoryPaths: []string{dir}, ErrorIfCRDPathMissing: true}
	cfg, err := env.Start()
	if err != nil {
		return figures{}, err
	}
	defer func() { _ = env.Stop() }()
	cfg = rest.CopyConfig(cfg)
	cfg.QPS, cfg.Burst = -1, 0 // no client-side throttling: the server is measured
	k, err := client.New(cfg, client.Options{Scheme: scheme.Scheme})
	if err != nil {
		return figures{}, err
	}
	ctx := context.Background()
	name := func(i int) string { return fmt.Sprintf("b-%05d", i) }
	if policies != "" { // as the chart installs them: their cost on creates is measured too
		if err := apiserver.InstallPolicies(ctx, k, policies); err != nil {
			return figures{}, err
		}
	}

	pid, err := apiserverPID()
	if err != nil {
		return figures{}, err
	}
	cpu := func() float64 {
		u, _ := process.UsageOf(pid)
		return u.CPU.Seconds()
	}
	c0 := cpu()
	if err := parallel(o.batches, o.workers, func(i int) error { return k.Create(ctx, batch(name(i), i, o.items)) }); err != nil {
		return figures{}, fmt.Errorf("creating: %w", err)
	}
	// Each batch is read before the CPU is counted, as the manager reads
	// from its cache: only the writes are measured.
	batches := make([]*llmv1.InferenceBatch, o.batches)
	if err := parallel(o.batches, o.workers, func(i int) error {
		batches[i] = &llmv1.InferenceBatch{}
		return k.Get(ctx, client.ObjectKey{Namespace: "default", Name: name(i)}, batches[i])
	}); err != nil {
		return figures{}, fmt.Errorf("reading: %w", err)
	}
	c1 := cpu()
	for p := 0; p < o.patches; p++ {
		err := parallel(o.batches, o.workers, func(i int) error {
			b := batches[i]                // the answer of its last write
			var orig *llmv1.InferenceBatch // what a merge patch is computed against
			if write == writePatch {
				orig = b.DeepCopy()
			}
			now := metav1.Now()
			b.Status.StartTime = &now
			b.Status.Counts.Succeeded = int32(10 * (p + 1))
			meta.SetStatusCondition(&b.Status.Conditions, metav1.Condition{Type: llmv1.ConditionProgressing, Status: metav1.ConditionTrue,
				Reason: llmv1.ReasonRunning, Message: fmt.Sprintf("%d of %d items done", 10*(p+1), o.items), ObservedGeneration: b.Generation})
			if write == writePut {
				b.Spec.Items = nil
				return k.Status().Update(ctx, b)
			}
			return k.Status().Patch(ctx, b, client.MergeFrom(orig))
		})
		if err != nil {
			return figures{}, fmt.Errorf("writing status: %w", err)
		}
	}
	c2 := cpu()

	var b llmv1.InferenceBatch
	if err := k.Get(ctx, client.ObjectKey{Namespace: "default", Name: name(0)}, &b); err != nil {
		return figures{}, err
	}
	whole, _ := json.Marshal(&b)
	mf, _ := json.Marshal(b.ManagedFields)
	return figures{createMs: 1000 * (c1 - c0) / float64(o.batches), statusMs: 1000 * (c2 - c1) / float64(o.batches*o.patches),
		objectBytes: len(whole), mfByte: len(mf)}, nil
}

// batch is shaped as test/performance/scale's.
func batch(name string, i, items int) *llmv1.InferenceBatch {
	b := &llmv1.InferenceBatch{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: name},
		Spec: llmv1.InferenceBatchSpec{ProviderRef: llmv1.ProviderReference{Name: "bench"}}}
	for j := 0; j < items; j++ {
		b.Spec.Items = append(b.Spec.Items, llmv1.Item{ID: fmt.Sprintf("item-%06d", j), Score: "0.5",
			Prompt: fmt.Sprintf("Rate the sentiment of headline %06d of batch %05d for the trading desk: %s", j, i, strings.Repeat("x", 19))})
	}
	return b
}

// apiserverPID finds the kube-apiserver envtest started for this process.
func apiserverPID() (int, error) {
	kids, err := process.Children(os.Getpid())
	if err != nil {
		return 0, err
	}
	if pid, ok := kids["kube-apiserver"]; ok {
		return pid, nil
	}
	return 0, errors.New("no kube-apiserver started by this process in /proc")
}

func parallel(n, workers int, fn func(i int) error) error {
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		first error
	)
	next := make(chan int)
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				if err := fn(i); err != nil {
					mu.Lock()
					if first == nil {
						first = err
					}
					mu.Unlock()
				}
			}
		}()
	}
	for i := 0; i < n; i++ {
		next <- i
	}
	close(next)
	wg.Wait()
	return first
}

package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"slices"
	"strings"
	"time"

	"k8s.io/client-go/rest"

	"github.com/llmquota/llmquota/internal/testbed/process"
)

// cpuShares is each process's CPU time so far, by command name: the bench
// itself and the children it and envtest started (kube-apiserver, etcd,
// the manager, the emulator, MinIO). On two cores their sum is what a run
// competes for; the difference of two readings says who used it.
func cpuShares() map[string]time.Duration {
	shares := map[string]time.Duration{}
	if u, err := process.UsageOf(os.Getpid()); err == nil {
		shares["bench-scale"] = u.CPU
	}
	kids, err := process.Children(os.Getpid())
	if err != nil {
		return shares
	}
	for name, pid := range kids {
		if u, err := process.UsageOf(pid); err == nil {
			shares[name] = u.CPU
		}
	}
	return shares
}

// cpuSpent describes the CPU each process used between two readings, most
// first, with the run's length for scale (two cores give twice that).
func cpuSpent(before, after map[string]time.Duration, elapsed time.Duration) string {
	type share struct {
		name  string
		spent time.Duration
	}
	var shares []share
	var total time.Duration
	for name, t := range after {
		spent := t - before[name]
		shares = append(shares, share{name, spent})
		total += spent
	}
	slices.SortFunc(shares, func(a, b share) int { return int(b.spent - a.spent) })
	parts := make([]string, 0, len(shares))
	for _, s := range shares {
		parts = append(parts, fmt.Sprintf("%s %.1f s", s.name, s.spent.Seconds()))
	}
	return fmt.Sprintf("%s; %.1f s in all over a %.1f s run", strings.Join(parts, ", "), total.Seconds(), elapsed.Seconds())
}

// profileAPIServer writes the API server's CPU profile of the next d to
// path (go tool pprof reads it), from its /debug/pprof, which envtest's
// API server serves to its admin user. Errors go to stderr: a profile is
// a help, not a figure.
func profileAPIServer(ctx context.Context, cfg *rest.Config, path string, d time.Duration) {
	fail := func(err error) { fmt.Fprintf(os.Stderr, "bench-scale: the API server's profile: %v\n", err) }
	hc, err := rest.HTTPClientFor(cfg)
	if err != nil {
		fail(err)
		return
	}
	url := fmt.Sprintf("%s/debug/pprof/profile?seconds=%d", strings.TrimSuffix(cfg.Host, "/"), int(d.Seconds()))
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		fail(err)
		return
	}
	resp, err := hc.Do(req)
	if err != nil {
		fail(err)
		return
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		fail(fmt.Errorf("%s", resp.Status))
		return
	}
	out, err := os.Create(path)
	if err != nil {
		fail(err)
		return
	}
	defer out.Close()
	if _, err := io.Copy(out, resp.Body); err != nil {
		fail(err)
		return
	}
	fmt.Fprintf(os.Stderr, "bench-scale: the API server's CPU profile of the run's first %s: %s\n", d, path)
}

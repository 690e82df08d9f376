// Command bench-gateway measures what the gateway adds to a call: the same
// Chat Completions requests, sent by vegeta at fixed rates, straight to the
// provider emulator (the baseline), through a gateway replica that asks the
// quota authority once per call (--max-spares=-1, the design before spare
// grants), and through one with spare grants (the default), side by side in
// one run. Each replica is its own process, with a real API server for
// TokenReview and SubjectAccessReview. It then measures the quota authority alone: acquire and release
// from three clients, as three replicas would, with no provider call.
// Figures go in docs/benchmarks.md ("Gateway").
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	vegeta "github.com/tsenart/vegeta/v12/lib"

	"github.com/llmquota/llmquota/internal/authority"
	"github.com/llmquota/llmquota/internal/testbed/apiserver"
	"github.com/llmquota/llmquota/internal/testbed/process"
	"github.com/llmquota/llmquota/internal/testbed/supervise"
)

func main() {
	supervise.Run() // whatever ends this program, its control plane and children end with it
	rates := flag.String("rates", "500,2000", "Comma-separated request rates per second.")
	duration := flag.Duration("duration", 10*time.Second, "How long each attack lasts.")
	authorityFor := flag.Duration("authority-duration", 5*time.Second, "How long the authority alone is measured.")
	flag.StringVar(&profilePath, "gateway-profile", "", "If set, where each gateway's CPU profile during the last rate's attack is written (its name added: -spares, -per-call).")
	flag.Parse()
	if err := run(*rates, *duration, *authorityFor); err != nil {
		fmt.Fprintln(os.Stderr, "bench-gateway:", err)
		os.Exit(1)
	}
}

// profilePath is -gateway-profile.
var profilePath string

func run(rates string, duration, authorityFor time.Duration) error {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	dir, err := os.MkdirTemp("", "bench-gateway-")
	if err != nil {
		return err
	}
	defer func() { _ = os.RemoveAll(dir) }()
	bin := os.Getenv("LLMQUOTA_BIN")

	local, err := apiserver.StartLocal(dir, "bench-admin")
	if err != nil {
		return err
	}
	defer func() { _ = local.Env.Stop() }()
	kubeconfig, k := local.Kubeconfig, local.Client

	emuPort, err := process.FreePort()
	if err != nil {
		return err
	}
	emuURL := fmt.Sprintf("http://127.0.0.1:%d", emuPort)
	emu, err := process.Start(filepath.Join(dir, "emulator.log"), filepath.Join(bin, "provider-emulator"),
		"--listen", fmt.Sprintf("127.0.0.1:%d", emuPort), "--latency", "0s", "--keys", apiKey)
	if err != nil {
		return err
	}
	defer emu.Stop()
	callerToken, gatewayToken, err := objects(ctx, k, emuURL)
	if err != nil {
		return err
	}
	authorityURL, _, err := serveAuthority(ctx, k)
	if err != nil {
		return err
	}
	tokenFile, err := writeToken(dir, gatewayToken)
	if err != nil {
		return err
	}
	// Two replicas, measured one at a time: one with spare grants (the
	// default), and the baseline that asks the authority once per call.
	spares, err := startGateway(dir, bin, "spares", kubeconfig, authorityURL, tokenFile)
	if err != nil {
		return err
	}
	defer spares.Stop()
	perCall, err := startGateway(dir, bin, "per-call", kubeconfig, authorityURL, tokenFile, "--max-spares=-1")
	if err != nil {
		return err
	}
	defer perCall.Stop()

	body := []byte(`{"model":"emu","max_tokens":32,"messages":[{"role":"user","content":"How much quota is left this minute?"}]}`)
	direct := vegeta.Target{Method: http.MethodPost, URL: emuURL + "/v1/chat/completions", Body: []byte(strings.Replace(string(body), `"emu"`, `"bench"`, 1)),
		Header: http.Header{"Authorization": {"Bearer " + apiKey}, "Content-Type": {"application/json"}}}
	through := func(g *gatewayProcess) vegeta.Target {
		return vegeta.Target{Method: http.MethodPost, URL: g.url + "/v1/chat/completions", Body: body,
			Header: http.Header{"Authorization": {"Bearer " + callerToken}, "Content-Type": {"application/json"}}}
	}
	// Warm every path (connections, the review caches, the provider's client).
	attack(direct, 50, time.Second)
	for _, g := range []*gatewayProcess{spares, perCall} {
		attack(through(g), 50, time.Second)
	}

	fmt.Printf("%-8s %-10s %9s %9s %9s %8s %12s %12s\n", "rate/s", "path", "p50", "p99", "max", "success", "gw-cpu/req", "gw-allocs/req")
	for _, r := range strings.Split(rates, ",") {
		var rate int
		if _, err := fmt.Sscan(strings.TrimSpace(r), &rate); err != nil {
			return fmt.Errorf("rate %q: %w", r, err)
		}
		base := attack(direct, rate, duration)
		row(rate, "direct", base, "", "")
		for _, g := range []*gatewayProcess{perCall, spares} {
			used0, _ := scrape(g.metrics, `llmquota_gateway_spare_grants_total{result="used"}`)
			m, cpu, allocs := g.measure(through(g), rate, duration)
			row(rate, g.name, m, cpu, allocs)
			fmt.Printf("%-8d %-10s %9s %9s\n", rate, "added", round(m.Latencies.P50-base.Latencies.P50), round(m.Latencies.P99-base.Latencies.P99))
			if used1, err := scrape(g.metrics, `llmquota_gateway_spare_grants_total{result="used"}`); err == nil && m.Requests > 0 {
				fmt.Printf("%-8d %-10s %8.1f%% of calls served from a spare grant\n", rate, "", 100*(used1-used0)/float64(m.Requests))
			}
		}
	}
	return measureAuthority(ctx, authorityURL, gatewayToken, authorityFor)
}

// gatewayProcess is a gateway replica of the benchmark: bin/gateway in
// its own process.
type gatewayProcess struct {
	*process.Process
	name, url, metrics, pprof string
}

// startGateway starts a gateway replica with extra flags and waits until
// it is ready.
func startGateway(dir, bin, name, kubeconfig, authorityURL, tokenFile string, extra ...string) (*gatewayProcess, error) {
	ports := make([]int, 4)
	for i := range ports {
		var err error
		if ports[i], err = process.FreePort(); err != nil {
			return nil, err
		}
	}
	args := append([]string{"--kubeconfig", kubeconfig,
		fmt.Sprintf("--bind-address=127.0.0.1:%d", ports[0]), fmt.Sprintf("--metrics-bind-address=127.0.0.1:%d", ports[1]),
		"--metrics-secure=false", fmt.Sprintf("--health-probe-bind-address=127.0.0.1:%d", ports[2]),
		"--authority-url", authorityURL, "--token-file", tokenFile, "--secret-namespaces", systemNS,
		fmt.Sprintf("--pprof-bind-address=127.0.0.1:%d", ports[3])}, extra...)
	p, err := process.Start(filepath.Join(dir, "gateway-"+name+".log"), filepath.Join(bin, "gateway"), args...)
	if err != nil {
		return nil, err
	}
	if err := waitReady(fmt.Sprintf("http://127.0.0.1:%d/readyz", ports[2]), time.Minute); err != nil {
		p.Stop()
		return nil, err
	}
	return &gatewayProcess{Process: p, name: name, url: fmt.Sprintf("http://127.0.0.1:%d", ports[0]),
		metrics: fmt.Sprintf("http://127.0.0.1:%d/metrics", ports[1]), pprof: fmt.Sprintf("http://127.0.0.1:%d/debug/pprof", ports[3])}, nil
}

// measure attacks the replica with t and returns the results, and its CPU
// and allocations per request.
func (g *gatewayProcess) measure(t vegeta.Target, rate int, duration time.Duration) (*vegeta.Metrics, string, string) {
	cpu0, _ := process.UsageOf(g.Pid())
	allocs0, _ := scrape(g.metrics, "go_memstats_mallocs_total")
	profiled := profile(fmt.Sprintf("%s/profile?seconds=%d", g.pprof, max(1, int(duration.Seconds())-1)), g.name)
	m := attack(t, rate, duration)
	<-profiled
	cpu1, _ := process.UsageOf(g.Pid())
	allocs1, _ := scrape(g.metrics, "go_memstats_mallocs_total")
	n := float64(m.Requests)
	return m, fmt.Sprintf("%.0fus", float64((cpu1.CPU-cpu0.CPU).Microseconds())/n), fmt.Sprintf("%.0f", (allocs1-allocs0)/n)
}

func attack(t vegeta.Target, rate int, d time.Duration) *vegeta.Metrics {
	a := vegeta.NewAttacker(vegeta.KeepAlive(true), vegeta.Workers(32), vegeta.MaxWorkers(2048), vegeta.Connections(2048))
	var m vegeta.Metrics
	for res := range a.Attack(vegeta.NewStaticTargeter(t), vegeta.Rate{Freq: rate, Per: time.Second}, d, "") {
		m.Add(res)
	}
	m.Close()
	return &m
}

func row(rate int, path string, m *vegeta.Metrics, cpu, allocs string) {
	fmt.Printf("%-8d %-10s %9s %9s %9s %7.1f%% %12s %12s\n", rate, path, round(m.Latencies.P50), round(m.Latencies.P99), round(m.Latencies.Max),
		100*m.Success, cpu, allocs)
	if m.Success < 1 {
		fmt.Fprintf(os.Stderr, "  %s at %d/s: statuses %v, errors %v\n", path, rate, m.StatusCodes, m.Errors)
	}
}

func round(d time.Duration) time.Duration { return d.Round(time.Microsecond) }

// measureAuthority asks the authority for quota and gives it back, from
// three clients (three replicas) of 32 callers each, for d: the quota
// decisions per second it sustains here and the acquire latency.
func measureAuthority(ctx context.Context, url, token string, d time.Duration) error {
	var mu sync.Mutex
	var latencies []time.Duration
	var failures int
	deadline := time.Now().Add(d)
	var wg sync.WaitGroup
	for range 3 {
		c := &authority.Client{Resolver: authority.StaticURL(url), HTTP: &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}},
			Token: func() (string, error) { return token, nil }}
		for range 32 {
			wg.Go(func() {
				var mine []time.Duration
				bad := 0
				for time.Now().Before(deadline) {
					start := time.Now()
					got, err := c.Acquire(ctx, authority.AcquireRequest{Provider: "emu", Namespace: "team-a", InputChars: 40, MaxTokens: 32})
					mine = append(mine, time.Since(start))
					if err != nil || got.Grant == "" {
						bad++
						continue
					}
					if err := c.Release(ctx, authority.ReleaseRequest{Grant: got.Grant, Sent: true, InputTokens: 10, OutputTokens: 20}); err != nil {
						bad++
					}
				}
				mu.Lock()
				latencies, failures = append(latencies, mine...), failures+bad
				mu.Unlock()
			})
		}
	}
	wg.Wait()
	slices.Sort(latencies)
	if len(latencies) == 0 {
		return fmt.Errorf("no quota decision in %v", d)
	}
	p := func(q float64) time.Duration { return round(latencies[int(q*float64(len(latencies)-1))]) }
	fmt.Printf("authority: %d decisions in %v (%.0f/s, each with its release) from 3 clients x 32 callers; acquire p50 %v p99 %v; failures %d\n",
		len(latencies), d, float64(len(latencies))/d.Seconds(), p(0.5), p(0.99), failures)
	return nil
}

// scrape reads one unlabelled metric from a Prometheus text endpoint.
func scrape(url, name string) (float64, error) {
	resp, err := http.Get(url)
	if err != nil {
		return 0, err
	}
	defer func() { _ = resp.Body.Close() }()
	var sb strings.Builder
	buf := make([]byte, 32<<10)
	for {
		n, err := resp.Body.Read(buf)
		sb.Write(buf[:n])
		if err != nil {
			break
		}
	}
	for _, line := range strings.Split(sb.String(), "\n") {
		if v, ok := strings.CutPrefix(line, name+" "); ok {
			var f float64
			_, err := fmt.Sscan(v, &f)
			return f, err
		}
	}
	return 0, fmt.Errorf("metric %s not found", name)
}

// profile fetches a CPU profile into profilePath (when set; the replica's
// name is added before its extension) while the caller attacks; the
// channel closes once it is written.
func profile(url, name string) <-chan struct{} {
	done := make(chan struct{})
	go func() {
		defer close(done)
		if profilePath == "" {
			return
		}
		resp, err := http.Get(url)
		if err != nil {
			fmt.Fprintln(os.Stderr, "profile:", err)
			return
		}
		defer func() { _ = resp.Body.Close() }()
		ext := filepath.Ext(profilePath)
		f, err := os.Create(strings.TrimSuffix(profilePath, ext) + "-" + name + ext)
		if err != nil {
			fmt.Fprintln(os.Stderr, "profile:", err)
			return
		}
		_, _ = io.Copy(f, resp.Body)
		_ = f.Close()
	}()
	return done
}

// Command poollearn measures where the concurrency learner of an Ollama
// pool's pods (internal/aimd.Concurrency, which the dispatcher keeps per
// pod with spec.limits.adaptive: AIMD) settles against a real `ollama
// serve` under load. For each OLLAMA_NUM_PARALLEL it starts a fresh server
// with the tiny generated models and keeps as many calls in flight as the
// learner allows, exactly as the dispatcher's endpoint load does (a call is
// sent while the pod is under its limit; it counts as sent at the limit
// when it filled it; its answer's pace or its failure teaches the learner),
// then prints the limit it learned, the calls' latency and the throughput.
//
// Usage: OLLAMA=bin/tools/ollama-<version>/ollama go run ./test/performance/poollearn
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/llmquota/llmquota/internal/aimd"
	"github.com/llmquota/llmquota/internal/provider"
	"github.com/llmquota/llmquota/internal/testbed/ollamaserver"
)

func main() {
	parallels := flag.String("parallel", "1,2,4", "Comma-separated OLLAMA_NUM_PARALLEL values, one server each.")
	declared := flag.Int("declared", 8, "The calls at once the provider declares per pod (spec.limits.maxConcurrency), where the learner starts.")
	calls := flag.Int("calls", 300, "Calls per server.")
	maxTokens := flag.Int("max-tokens", 48, "Output tokens asked per call.")
	flag.Parse()
	bin := os.Getenv("OLLAMA")
	if bin == "" {
		fmt.Fprintln(os.Stderr, ollamaserver.ErrNoBinary)
		os.Exit(2)
	}
	fmt.Printf("# declared %d calls at once per pod, %d calls per server, %d output tokens asked, tiny generated model, CPU\n", *declared, *calls, *maxTokens)
	fmt.Println("| OLLAMA_NUM_PARALLEL | limit | limit every 50 calls | final | latency p50 / p90 | calls/s | cuts |")
	fmt.Println("| --- | --- | --- | --- | --- | --- | --- |")
	for _, p := range strings.Split(*parallels, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(p))
		if err != nil || n < 1 {
			fmt.Fprintf(os.Stderr, "poollearn: bad --parallel %q\n", p)
			os.Exit(2)
		}
		// The baseline first: the declared limit, nothing learned.
		for _, learn := range []bool{false, true} {
			if err := measure(bin, n, *declared, *calls, int32(*maxTokens), learn); err != nil {
				fmt.Fprintf(os.Stderr, "poollearn: OLLAMA_NUM_PARALLEL=%d: %v\n", n, err)
				os.Exit(1)
			}
		}
	}
}

// measure runs one server with parallel slots and prints its row; without
// learn the declared limit holds (the baseline).
func measure(bin string, parallel, declared, calls int, maxTokens int32, learn bool) error {
	if err := os.Setenv("OLLAMA_NUM_PARALLEL", strconv.Itoa(parallel)); err != nil {
		return err
	}
	srv, err := ollamaserver.Start(bin)
	if err != nil {
		return err
	}
	defer srv.Close()
	c, err := provider.New(provider.Config{Type: provider.Ollama, Endpoint: srv.URL, ContextLength: 256})
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	// The model loaded before timing starts, as the node agent warms a pod.
	if _, err := c.Generate(ctx, provider.Request{Model: ollamaserver.Models[0], Prompt: "warm up", MaxTokens: 1}); err != nil {
		return fmt.Errorf("warming the model: %w", err)
	}

	learner := aimd.NewConcurrency(declared)
	var (
		mu        sync.Mutex
		room      = sync.NewCond(&mu)
		inFlight  int
		latencies []time.Duration
		trail     []string
		cuts      int
		failed    error
		wg        sync.WaitGroup
	)
	start := time.Now()
	for i := range calls {
		mu.Lock()
		for inFlight >= learner.Limit() {
			room.Wait()
		}
		inFlight++
		atLimit := inFlight >= learner.Limit()
		if i%50 == 0 {
			trail = append(trail, strconv.Itoa(learner.Limit()))
		}
		mu.Unlock()
		wg.Add(1)
		go func(i int, atLimit bool) {
			defer wg.Done()
			sent := time.Now()
			resp, err := c.Generate(ctx, provider.Request{Model: ollamaserver.Models[0], Prompt: fmt.Sprintf("Classify headline %d", i), MaxTokens: maxTokens})
			now := time.Now()
			mu.Lock()
			defer mu.Unlock()
			inFlight--
			room.Broadcast()
			before := learner.Limit()
			var pe *provider.Error
			switch {
			case err == nil && !learn:
				latencies = append(latencies, now.Sub(sent))
			case !learn:
				failed = err
			case errors.As(err, &pe) && (pe.Class == provider.ClassServerError || pe.Class == provider.ClassTimeout):
				learner.Overloaded(now, sent)
			case err != nil:
				failed = err
			default:
				latencies = append(latencies, now.Sub(sent))
				learner.Answered(now, sent, resp.OutputTokens, atLimit)
			}
			if learner.Limit() < before {
				cuts++
			}
		}(i, atLimit)
	}
	wg.Wait()
	took := time.Since(start)
	if failed != nil {
		return failed
	}
	sort.Slice(latencies, func(i, j int) bool { return latencies[i] < latencies[j] })
	pct := func(q float64) time.Duration {
		return latencies[int(q*float64(len(latencies)-1))].Round(time.Millisecond)
	}
	mode := "declared"
	if learn {
		mode = "learned (AIMD)"
	}
	fmt.Printf("| %d | %s | %s | **%d** | %s / %s | %.1f | %d |\n", parallel, mode, strings.Join(trail, ", "), learner.Limit(),
		pct(0.5), pct(0.9), float64(calls)/took.Seconds(), cuts)
	return nil
}

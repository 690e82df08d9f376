// Command provider-emulator serves the Gemini, Anthropic, OpenAI and Ollama
// APIs on one port with per-key quotas and injected faults, for tests,
// benchmarks and the demo. See docs/emulator.md.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/llmquota/llmquota/internal/emulator"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "provider-emulator:", err)
		os.Exit(1)
	}
}

func run() error {
	var (
		listen     = flag.String("listen", "127.0.0.1:8090", "Address to serve on.")
		limits     = flag.String("limits", "", `Per-key quotas, such as "10/10s,600/1h,1500/24h". Empty: no quota.`)
		outputs    = flag.String("output-token-limits", "", `Per-key output tokens, such as "8000/1m", charged max_tokens on arrival as Anthropic counts OTPM. Empty: none.`)
		tokens     = flag.String("token-limits", "", `Per-key prompt and output tokens, such as "40000/1m", charged the prompt and max_tokens on arrival as OpenAI counts TPM. Empty: none.`)
		inputs     = flag.String("input-token-limits", "", `Per-key prompt tokens, such as "30000/1m", as Anthropic counts ITPM and Gemini TPM. Empty: none.`)
		latency    = flag.Duration("latency", 0, "Delay before every answer.")
		chunkDelay = flag.Duration("chunk-delay", 0, "Pause between a stream's events.")
		keys       = flag.String("keys", "", "Comma-separated API keys to accept; empty accepts any non-empty key.")
		script     = flag.String("script", "", `Faults for the first requests within quota, in order, such as "429,500,,hang".`)
		retryAfter = flag.Duration("retry-after", 2*time.Second, "Retry-After of an injected 429.")
		hangFor    = flag.Duration("hang-for", 30*time.Second, "How long an injected hang lasts unless the client gives up first.")
		seed       = flag.Uint64("seed", 1, "Seed of the random faults.")
		logFile    = flag.String("log", "", "Write every request as a JSON line to this file on exit.")
		logStream  = flag.Bool("log-requests", false, "Also write every request as a JSON line to stdout as it arrives (for a Pod's log).")
		rates      emulator.FaultRates
	)
	flag.Float64Var(&rates.RateLimit, "fault-429", 0, "Probability of an injected 429 with Retry-After.")
	flag.Float64Var(&rates.ServerError, "fault-500", 0, "Probability of an injected 500.")
	flag.Float64Var(&rates.Unavailable, "fault-503", 0, "Probability of an injected 503.")
	flag.Float64Var(&rates.Overloaded, "fault-529", 0, "Probability of an injected 529 (overloaded).")
	flag.Float64Var(&rates.Hang, "fault-hang", 0, "Probability of a hang past the client's timeout.")
	flag.Float64Var(&rates.Reset, "fault-reset", 0, "Probability of a connection reset.")
	flag.Float64Var(&rates.Malformed, "fault-malformed", 0, "Probability of a malformed JSON body.")
	flag.Float64Var(&rates.Cut, "fault-cut", 0, "Probability of an answer cut in its middle (a stream after its first event).")
	flag.Parse()

	cfg := emulator.Config{Latency: *latency, ChunkDelay: *chunkDelay, Faults: rates, RetryAfter: *retryAfter, HangFor: *hangFor, Seed: *seed}
	var err error
	if cfg.Limits, err = emulator.ParseLimits(*limits); err != nil {
		return err
	}
	if cfg.OutputTokenLimits, err = tokenLimits("--output-token-limits", *outputs); err != nil {
		return err
	}
	if cfg.TokenLimits, err = tokenLimits("--token-limits", *tokens); err != nil {
		return err
	}
	if cfg.InputTokenLimits, err = tokenLimits("--input-token-limits", *inputs); err != nil {
		return err
	}
	if cfg.Script, err = emulator.ParseScript(*script); err != nil {
		return err
	}
	if *keys != "" {
		cfg.Keys = strings.Split(*keys, ",")
	}
	if *logStream {
		enc := json.NewEncoder(os.Stdout)
		cfg.OnRequest = func(r emulator.Record) { _ = enc.Encode(r) }
	}
	srv := emulator.New(cfg)

	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	httpSrv := emulator.NewHTTPServer(srv)
	go func() {
		<-ctx.Done()
		shutdown, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = httpSrv.Shutdown(shutdown)
	}()
	slog.Info("provider emulator serving", "address", ln.Addr().String(), "limits", *limits)
	if err := httpSrv.Serve(emulator.StampArrivals(ln)); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	if *logFile != "" {
		return writeLog(*logFile, srv.Log())
	}
	return nil
}

func writeLog(path string, records []emulator.Record) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	enc := json.NewEncoder(f)
	for _, r := range records {
		if err := enc.Encode(r); err != nil {
			_ = f.Close()
			return err
		}
	}
	return f.Close()
}

// tokenLimits parses a flag of token limits, N/duration as --limits.
func tokenLimits(name, value string) ([]emulator.TokenLimit, error) {
	limits, err := emulator.ParseLimits(value)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	out := make([]emulator.TokenLimit, len(limits))
	for i, l := range limits {
		out[i] = emulator.TokenLimit{Tokens: l.Requests, Period: l.Period}
	}
	return out, nil
}

// Command kubectl-llmquota is a kubectl plugin, the original report's
// planned monitoring dashboard in a terminal:
//
//	kubectl llmquota top [-n NAMESPACE] [--watch] [--interval 2s] [-o json]
//	kubectl llmquota cost [-n NAMESPACE] [-o json]
//
// top draws, per provider, the minute/hour/day windows as bars with the
// time until a slot frees, cost against alerts and budgets, rate-limit and
// backoff state, and an Ollama pool's endpoints with GPU memory; per batch,
// its progress, ETA, failures and why it waits. --watch redraws in place;
// -o json prints the same view for scripts. cost lists what each namespace's
// batches used and cost, per batch, the most expensive namespace first.
// Install it with
// `go install github.com/llmquota/llmquota/cmd/kubectl-llmquota@latest`
// (kubectl finds kubectl-* binaries on the PATH).
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/charmbracelet/colorprofile"
	"golang.org/x/term"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/utils/clock"
	"sigs.k8s.io/controller-runtime/pkg/client"

	llmv1 "github.com/llmquota/llmquota/api/v1alpha1"
	"github.com/llmquota/llmquota/internal/dashboard"
	"github.com/llmquota/llmquota/internal/version"
)

const usage = `Usage: kubectl llmquota top|cost [flags]

top draws every LLMProvider's quota windows, cost, rate-limit and backoff
state and Ollama endpoints, and every InferenceBatch's progress, ETA,
failures and why it waits.

cost lists the tokens and cost of every namespace's batches, per batch.

Flags:
`

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr, clock.RealClock{})
	stop()
	os.Exit(code)
}

// options are top's flags.
type options struct {
	kubeconfig, context, namespace, output string
	watch                                  bool
	interval                               time.Duration
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer, clk clock.PassiveClock) int {
	if len(args) == 0 || (args[0] != "top" && args[0] != "cost") {
		if len(args) > 0 && (args[0] == "version" || args[0] == "--version") {
			_, _ = fmt.Fprintln(stdout, "kubectl-llmquota", version.Version)
			return 0
		}
		_, _ = fmt.Fprint(stderr, usage)
		return 2
	}
	var o options
	fs := flag.NewFlagSet(args[0], flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { _, _ = fmt.Fprint(stderr, usage); fs.PrintDefaults() }
	fs.StringVar(&o.kubeconfig, "kubeconfig", "", "Path to the kubeconfig file (default: $KUBECONFIG or ~/.kube/config).")
	fs.StringVar(&o.context, "context", "", "The kubeconfig context to use.")
	for _, name := range []string{"n", "namespace"} {
		fs.StringVar(&o.namespace, name, "", "Show only this namespace's batches (default: all namespaces).")
	}
	for _, name := range []string{"w", "watch"} {
		fs.BoolVar(&o.watch, name, false, "Redraw in place every --interval until interrupted.")
	}
	fs.DurationVar(&o.interval, "interval", 2*time.Second, "How often --watch redraws.")
	fs.StringVar(&o.output, "o", "", "Output format: empty for the dashboard, json for scripts.")
	if err := fs.Parse(args[1:]); err != nil {
		return 2
	}
	if o.output != "" && o.output != "json" {
		_, _ = fmt.Fprintf(stderr, "error: -o %q: only json is supported\n", o.output)
		return 2
	}
	c, err := newClient(o)
	if err != nil {
		_, _ = fmt.Fprintln(stderr, "error:", err)
		return 1
	}
	show := top
	if args[0] == "cost" {
		show = costs
	}
	if err := show(ctx, c, o, stdout, clk); err != nil && !errors.Is(err, context.Canceled) {
		_, _ = fmt.Fprintln(stderr, "error:", err)
		return 1
	}
	return 0
}

func newClient(o options) (client.Client, error) {
	rules := clientcmd.NewDefaultClientConfigLoadingRules()
	rules.ExplicitPath = o.kubeconfig
	cfg, err := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, &clientcmd.ConfigOverrides{CurrentContext: o.context}).ClientConfig()
	if err != nil {
		return nil, err
	}
	scheme := runtime.NewScheme()
	if err := llmv1.AddToScheme(scheme); err != nil {
		return nil, err
	}
	return client.New(cfg, client.Options{Scheme: scheme})
}

// snapshot lists the providers and batches and builds the view.
func snapshot(ctx context.Context, c client.Client, namespace string, now time.Time) (dashboard.Snapshot, error) {
	var providers llmv1.LLMProviderList
	if err := c.List(ctx, &providers); err != nil {
		return dashboard.Snapshot{}, fmt.Errorf("listing LLMProviders: %w", err)
	}
	var batches llmv1.InferenceBatchList
	if err := c.List(ctx, &batches, client.InNamespace(namespace)); err != nil {
		return dashboard.Snapshot{}, fmt.Errorf("listing InferenceBatches: %w", err)
	}
	return dashboard.Build(now, providers.Items, batches.Items), nil
}

// costs prints what each namespace's batches used and cost.
func costs(ctx context.Context, c client.Client, o options, stdout io.Writer, _ clock.PassiveClock) error {
	var batches llmv1.InferenceBatchList
	if err := c.List(ctx, &batches, client.InNamespace(o.namespace)); err != nil {
		return fmt.Errorf("listing InferenceBatches: %w", err)
	}
	r := dashboard.BuildCost(batches.Items)
	if o.output == "json" {
		return json.NewEncoder(stdout).Encode(r)
	}
	_, err := io.WriteString(stdout, dashboard.RenderCost(r))
	return err
}

// top draws once, or, with --watch, in place every interval: on a
// terminal's alternate screen, each frame over the last from the top-left
// corner, clearing what the last one left.
func top(ctx context.Context, c client.Client, o options, stdout io.Writer, clk clock.PassiveClock) error {
	out := colorprofile.NewWriter(stdout, os.Environ())
	width, terminal := 120, false
	if f, ok := stdout.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		terminal = true
		if w, _, err := term.GetSize(int(f.Fd())); err == nil && w > 0 {
			width = w
		}
	}
	styles := dashboard.NewStyles()
	frame := func() (string, error) {
		s, err := snapshot(ctx, c, o.namespace, clk.Now())
		if err != nil {
			return "", err
		}
		if o.output == "json" {
			data, err := json.Marshal(s)
			return string(data) + "\n", err
		}
		return dashboard.Render(s, styles, width), nil
	}
	if !o.watch {
		text, err := frame()
		if err != nil {
			return err
		}
		_, err = io.WriteString(out, text)
		return err
	}
	inPlace := terminal && o.output != "json" // a pipe gets one frame after another
	if inPlace {
		_, _ = io.WriteString(stdout, "\x1b[?1049h\x1b[?25l") // alternate screen, cursor hidden
		defer func() { _, _ = io.WriteString(stdout, "\x1b[?25h\x1b[?1049l") }()
	}
	ticker := time.NewTicker(o.interval)
	defer ticker.Stop()
	for {
		text, err := frame()
		if err != nil {
			text = "error: " + err.Error() + "\n" // shown, and tried again at the next tick
		}
		if inPlace {
			text = "\x1b[H" + strings.ReplaceAll(text, "\n", "\x1b[K\n") + "\x1b[J" // home, clear each line's rest, clear below
		} else if o.output != "json" {
			text += "\n"
		}
		if _, err := io.WriteString(out, text); err != nil {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-ticker.C:
		}
	}
}

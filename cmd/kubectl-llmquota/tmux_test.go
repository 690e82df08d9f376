package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"sigs.k8s.io/controller-runtime/pkg/client"

	llmv1 "github.com/llmquota/llmquota/api/v1alpha1"
)

// TestTopWatchInRealTerminal runs the built plugin with --watch in a real
// terminal (a detached tmux pane of 120x40) and reads the screen back as a
// person would see it: one frame, redrawn in place when a batch moves.
func TestTopWatchInRealTerminal(t *testing.T) {
	needAPIServer(t)
	if _, err := exec.LookPath("tmux"); err != nil {
		t.Fatal("tmux is not installed: `make test` installs it (hack/test-deps.sh), or apt-get install tmux")
	}
	bin := filepath.Join(t.TempDir(), "kubectl-llmquota")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	socket := fmt.Sprintf("llmquota-test-%d", os.Getpid())
	tmux := func(args ...string) string {
		out, err := exec.Command("tmux", append([]string{"-L", socket}, args...)...).CombinedOutput()
		if err != nil {
			t.Fatalf("tmux %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	tmux("new-session", "-d", "-s", "top", "-x", "120", "-y", "40",
		bin+" top --watch --interval 200ms --kubeconfig "+kubeconfig)
	t.Cleanup(func() { _ = exec.Command("tmux", "-L", socket, "kill-server").Run() })

	screen := func(want string) string {
		t.Helper()
		var last string
		for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
			if last = tmux("capture-pane", "-p", "-t", "top"); strings.Contains(last, want) {
				return last
			}
		}
		t.Fatalf("the pane never showed %q; it shows:\n%s", want, last)
		return ""
	}
	first := screen("115/136")
	// The fixtures' times are fixed (the golden test's clock) and this
	// binary reads the real one: only what does not move with it is checked.
	for _, want := range []string{"gemini (Gemini)", "60/60     full", "ollama-0  Warm  tiny-a", "translations", "ItemsFailed", "████"} {
		if !strings.Contains(first, want) {
			t.Errorf("the pane lacks %q:\n%s", want, first)
		}
	}

	if path := os.Getenv("LLMQUOTA_SCREENSHOT"); path != "" { // docs/dashboard.md's screenshot, as the pane shows it
		if err := os.WriteFile(path, []byte(tmux("capture-pane", "-p", "-e", "-t", "top")), 0o644); err != nil {
			t.Fatal(err)
		}
	}

	// A batch moves: the next frame replaces the last in place.
	ctx := context.Background()
	var b llmv1.InferenceBatch
	if err := k8sClient.Get(ctx, client.ObjectKey{Namespace: "default", Name: "news-sentiment"}, &b); err != nil {
		t.Fatal(err)
	}
	before := b.Status.Counts
	b.Status.Counts.Succeeded += 10
	if err := k8sClient.Status().Update(ctx, &b); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := k8sClient.Get(ctx, client.ObjectKeyFromObject(&b), &b); err == nil {
			b.Status.Counts = before
			_ = k8sClient.Status().Update(ctx, &b)
		}
	})
	next := screen("125/136")
	if strings.Contains(next, "115/136") {
		t.Errorf("the old frame is still on screen:\n%s", next)
	}
	if n := strings.Count(next, "llmquota top ·"); n != 1 {
		t.Errorf("%d headers on screen, want 1: frames are appended, not redrawn in place:\n%s", n, next)
	}
}

package ollama

import (
	"strings"
	"testing"
	"time"

	"k8s.io/utils/clock"
)

func TestWarmupLoadsAndConfirms(t *testing.T) {
	c := client()
	w, err := Warmup(ctx(t), c, clock.RealClock{}, Spec{Model: "tiny-a", KeepAlive: 10 * time.Minute}, 3, 10*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	if w.Attempt != 1 || w.Latency <= 0 {
		t.Fatalf("warmup %+v, want attempt 1 with a latency", w)
	}
	// Ollama moves a model's expiry when a request's end reaches its
	// scheduler, a moment after the answer: an earlier test's load (one
	// minute) can still show for a few reads.
	var running []Running
	for try := 0; ; try++ {
		if running, err = c.PS(ctx(t)); err != nil {
			t.Fatal(err)
		}
		r, ok := Resident(running, "tiny-a")
		if !ok || r.SizeBytes <= 0 {
			t.Fatalf("after warmup /api/ps shows %+v: want tiny-a resident", running)
		}
		if r.ExpiresAt.After(time.Now().Add(5 * time.Minute)) {
			break
		}
		if try == 50 {
			t.Fatalf("after warmup /api/ps shows %+v: want tiny-a's keep-alive of 10 minutes", running)
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Logf("cold warmup of the tiny model: %v (attempt %d)", w.Latency, w.Attempt)
}

func TestRewarmAfterUnload(t *testing.T) {
	c := client()
	if _, err := Warmup(ctx(t), c, clock.RealClock{}, Spec{Model: "tiny-b", KeepAlive: time.Minute}, 3, 10*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	if _, err := Unload(ctx(t), c, []Model{{Name: "tiny-b"}}); err != nil {
		t.Fatal(err)
	}
	running := ps(t, c)
	if _, ok := Resident(running, "tiny-b"); ok {
		t.Fatal("tiny-b still resident after Unload confirmed it gone")
	}
	if _, err := Warmup(ctx(t), c, clock.RealClock{}, Spec{Model: "tiny-b", KeepAlive: time.Minute}, 3, 10*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	running = ps(t, c)
	if _, ok := Resident(running, "tiny-b"); !ok {
		t.Fatal("tiny-b not resident after re-warming")
	}
}

// TestCleanupUnloadsOnlyIdle: with both models resident and tiny-a used
// just now, a cleanup unloads tiny-b only, and /api/ps confirms it.
func TestCleanupUnloadsOnlyIdle(t *testing.T) {
	c := client()
	for _, m := range []string{"tiny-a", "tiny-b"} {
		if _, err := Warmup(ctx(t), c, clock.RealClock{}, Spec{Model: m, KeepAlive: 10 * time.Minute}, 3, 10*time.Millisecond); err != nil {
			t.Fatal(err)
		}
	}
	running, err := c.PS(ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	var models []Model
	for _, r := range running {
		used := now.Add(-10 * time.Minute)
		if strings.HasPrefix(r.Name, "tiny-a") {
			used = now
		}
		models = append(models, Model{Name: r.Name, VRAMBytes: r.VRAMBytes, SizeBytes: r.SizeBytes, LastUsed: used})
	}
	idle := Idle(models, now, 5*time.Minute)
	if len(idle) != 1 || !strings.HasPrefix(idle[0].Name, "tiny-b") {
		t.Fatalf("idle %+v, want tiny-b only", idle)
	}
	freed, err := Unload(ctx(t), c, idle)
	if err != nil {
		t.Fatal(err)
	}
	running = ps(t, c)
	if _, ok := Resident(running, "tiny-a"); !ok {
		t.Fatal("the recently used model was unloaded")
	}
	if _, ok := Resident(running, "tiny-b"); ok {
		t.Fatal("the idle model is still resident")
	}
	if freed <= 0 {
		t.Fatalf("freed %d bytes", freed)
	}
}

func TestWarmupFailsWithBoundedRetries(t *testing.T) {
	c := client()
	_, err := Warmup(ctx(t), c, clock.RealClock{}, Spec{Model: "no-such-model", KeepAlive: time.Minute}, 3, 5*time.Millisecond)
	if err == nil || !strings.Contains(err.Error(), "after 3 attempts") || !strings.Contains(err.Error(), "404") {
		t.Fatalf("got %v, want a failure after 3 attempts naming the 404", err)
	}
	down := New("http://127.0.0.1:1", nil)
	if _, err := Warmup(ctx(t), down, clock.RealClock{}, Spec{Model: "tiny-a", KeepAlive: time.Minute}, 2, 5*time.Millisecond); err == nil || !strings.Contains(err.Error(), "after 2 attempts") {
		t.Fatalf("server down: %v", err)
	}
}

// ps lists the resident models, failing the test when Ollama cannot say:
// an absent model must mean unloaded, not an unanswered question.
func ps(t *testing.T, c *Client) []Running {
	t.Helper()
	running, err := c.PS(ctx(t))
	if err != nil {
		t.Fatalf("listing resident models: %v", err)
	}
	return running
}

package gateway

import (
	"strings"
	"testing"
	"time"

	"github.com/llmquota/llmquota/internal/provider"
)

func TestAnswerCache(t *testing.T) {
	t0 := time.Date(2026, 12, 7, 9, 0, 0, 0, time.UTC)
	answer := func(text string) *provider.Response {
		return &provider.Response{Text: text, InputTokens: 3, OutputTokens: 5}
	}
	size := func(key, text string) int { return len(key) + len(text) + entryOverhead }

	t.Run("an answer is reused until it expires", func(t *testing.T) {
		c := NewAnswerCache(1 << 20)
		c.put("k", answer("a"), t0.Add(time.Minute))
		if got, ok := c.get("k", t0.Add(59*time.Second)); !ok || got.Text != "a" || got.OutputTokens != 5 {
			t.Fatalf("before expiry: %+v, %v", got, ok)
		}
		if _, ok := c.get("k", t0.Add(time.Minute)); ok || c.Len() != 0 {
			t.Fatalf("at expiry: reused (%v) or kept (%d)", ok, c.Len())
		}
	})
	t.Run("a reader's copy does not change the stored answer", func(t *testing.T) {
		c := NewAnswerCache(1 << 20)
		c.put("k", answer("a"), t0.Add(time.Minute))
		got, _ := c.get("k", t0)
		got.Text = "changed"
		if again, _ := c.get("k", t0); again.Text != "a" {
			t.Fatalf("stored answer became %q", again.Text)
		}
	})
	t.Run("the least recently used goes first when full", func(t *testing.T) {
		c := NewAnswerCache(2 * size("k1", "x"))
		c.put("k1", answer("x"), t0.Add(time.Hour))
		c.put("k2", answer("x"), t0.Add(time.Hour))
		c.get("k1", t0) // k2 is now the least recently used
		c.put("k3", answer("x"), t0.Add(time.Hour))
		_, has1 := c.get("k1", t0)
		_, has2 := c.get("k2", t0)
		_, has3 := c.get("k3", t0)
		if !has1 || has2 || !has3 || c.Len() != 2 {
			t.Fatalf("after eviction: k1 %v, k2 %v, k3 %v, %d held", has1, has2, has3, c.Len())
		}
	})
	t.Run("an answer larger than the cache is not stored", func(t *testing.T) {
		c := NewAnswerCache(size("k", "x"))
		c.put("k", answer(strings.Repeat("x", 100)), t0.Add(time.Hour))
		if c.Len() != 0 || c.bytes != 0 {
			t.Fatalf("%d held, %d bytes", c.Len(), c.bytes)
		}
	})
	t.Run("storing a key again replaces it", func(t *testing.T) {
		c := NewAnswerCache(1 << 20)
		c.put("k", answer("a"), t0.Add(time.Hour))
		c.put("k", answer("b"), t0.Add(time.Hour))
		if got, _ := c.get("k", t0); got.Text != "b" || c.Len() != 1 || c.bytes != size("k", "b") {
			t.Fatalf("%+v, %d held, %d bytes", got, c.Len(), c.bytes)
		}
	})
}

func TestCacheKey(t *testing.T) {
	base := call{caller: caller{namespace: "team-a"}, provider: "p", maxTokens: 64,
		req: provider.Request{System: "s", Prompt: "hello", History: []provider.Turn{{Text: "hi"}, {Assistant: true, Text: "yes"}}}}
	same := base
	if cacheKey(base, "m") != cacheKey(same, "m") {
		t.Fatal("the same call has two keys")
	}
	differs := map[string]func(c *call) string{
		"namespace":  func(c *call) string { c.caller.namespace = "team-b"; return "m" },
		"provider":   func(c *call) string { c.provider = "q"; return "m" },
		"model":      func(*call) string { return "n" },
		"system":     func(c *call) string { c.req.System = "t"; return "m" },
		"output cap": func(c *call) string { c.maxTokens = 65; return "m" },
		"prompt":     func(c *call) string { c.req.Prompt = "hello!"; return "m" },
		"a turn's author": func(c *call) string {
			c.req.History = []provider.Turn{{Text: "hi"}, {Text: "yes"}}
			return "m"
		},
		"where a turn splits": func(c *call) string {
			c.req.History = []provider.Turn{{Text: "hiy"}, {Assistant: true, Text: "es"}}
			return "m"
		},
	}
	for name, change := range differs {
		c := base
		c.req.History = append([]provider.Turn(nil), base.req.History...)
		model := change(&c)
		if cacheKey(c, model) == cacheKey(base, "m") {
			t.Errorf("a call with another %s has the same key", name)
		}
	}
}

func TestZeroTemperature(t *testing.T) {
	for in, want := range map[string]bool{"0": true, "0.0": true, "0e0": true, "": false, "0.2": false, "1": false, "x": false} {
		if got := zeroTemperature(in); got != want {
			t.Errorf("zeroTemperature(%q) = %v, want %v", in, got, want)
		}
	}
}

package ollama

import (
	"testing"
	"time"
)

// TestContextLengthSizesTheRunner: the context a model is loaded with is
// what /api/ps reports, and the runner's memory grows with it (the KV
// cache): what spec.ollama.contextLength controls.
func TestContextLengthSizesTheRunner(t *testing.T) {
	c := client()
	size := map[int]int64{}
	for _, n := range []int{512, 0} {
		if _, err := Unload(ctx(t), c, []Model{{Name: "tiny-a"}}); err != nil {
			t.Fatal(err)
		}
		if err := c.LoadSpec(ctx(t), Spec{Model: "tiny-a", KeepAlive: time.Minute, ContextLength: n}); err != nil {
			t.Fatal(err)
		}
		running, err := c.PS(ctx(t))
		if err != nil {
			t.Fatal(err)
		}
		r, ok := Resident(running, "tiny-a")
		if !ok {
			t.Fatalf("tiny-a not resident after loading with num_ctx %d", n)
		}
		want := int64(n)
		if n == 0 {
			want = 2048 // the tiny model's trained context, which caps Ollama's default
		}
		if r.ContextLength != want {
			t.Fatalf("num_ctx %d: /api/ps context_length %d, want %d", n, r.ContextLength, want)
		}
		size[n] = r.SizeBytes
	}
	if size[512] >= size[0] {
		t.Fatalf("the runner with 512 tokens of context takes %d bytes, not less than with the default's 2048 (%d)", size[512], size[0])
	}
	t.Logf("runner size: %d bytes at 512 tokens, %d at 2048", size[512], size[0])
}

package gateway_test

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"
	"k8s.io/utils/ptr"

	llmv1 "github.com/llmquota/llmquota/api/v1alpha1"
	"github.com/llmquota/llmquota/internal/gateway"
)

// TestIdenticalCallsAtTemperatureZeroAreReused: with spec.interactive.cache
// Enabled, a call identical to an earlier one at temperature 0, from the
// same namespace, is answered from the cache (also as a stream) without
// quota or a provider call. Another temperature, another namespace or a
// provider without the cache is sent.
func TestIdenticalCallsAtTemperatureZeroAreReused(t *testing.T) {
	b := newBed(t, 600, time.Minute)
	ctx := context.Background()
	emu, d := b.addProvider(t, "cached", 600, time.Minute, func(spec *llmv1.LLMProviderSpec) {
		spec.Interactive = &llmv1.InteractivePolicy{Cache: llmv1.CacheEnabled, CacheTTLSeconds: ptr.To(int32(600))}
	})
	plainEmu, _ := b.addProvider(t, "plain", 600, time.Minute, nil)
	grant(t, b.c, "use-cached", []string{"cached"}, "team-a", "app")
	call := func(token, provider string, temperature float64) (text string, hit bool) {
		t.Helper()
		var resp *http.Response
		out, err := sdk(b, token).Chat.Completions.New(ctx, openai.ChatCompletionNewParams{Model: provider,
			Messages:    []openai.ChatCompletionMessageParamUnion{openai.UserMessage("what is a quota?")},
			Temperature: openai.Float(temperature), MaxTokens: openai.Int(64)}, option.WithResponseInto(&resp))
		if err != nil {
			t.Fatal(err)
		}
		return out.Choices[0].Message.Content, resp.Header.Get(gateway.CacheHeader) == "hit"
	}

	first, hit := call(b.ops, "cached", 0)
	if hit {
		t.Fatal("the first call was a hit")
	}
	again, hit := call(b.ops, "cached", 0)
	if !hit || again != first {
		t.Fatalf("the same call again: hit %v, %q (first %q)", hit, again, first)
	}
	var s streamed
	stream := sdk(b, b.ops).Chat.Completions.NewStreaming(ctx, openai.ChatCompletionNewParams{Model: "cached",
		Messages:    []openai.ChatCompletionMessageParamUnion{openai.UserMessage("what is a quota?")},
		Temperature: openai.Float(0), MaxTokens: openai.Int(64)})
	for stream.Next() {
		for _, c := range stream.Current().Choices {
			s.add(c.Delta.Content, nil)
		}
	}
	if err := stream.Err(); err != nil || s.text() != first {
		t.Fatalf("the same call streamed: %q, %v", s.text(), err)
	}
	if n := len(emu.Log()); n != 1 {
		t.Fatalf("the provider saw %d calls, want 1: the others were reused", n)
	}
	if used := d.Quota().Windows[0].Used; used != 1 {
		t.Fatalf("the window counts %d calls, want 1", used)
	}

	for _, c := range []struct {
		name, token, provider string
		temperature           float64
	}{
		{"another temperature", b.ops, "cached", 0.5},
		{"another namespace", b.app, "cached", 0},
		{"a provider without the cache", b.ops, "plain", 0},
		{"a provider without the cache, again", b.ops, "plain", 0},
	} {
		if _, hit := call(c.token, c.provider, c.temperature); hit {
			t.Fatalf("%s: a hit", c.name)
		}
	}
	if n, plain := len(emu.Log()), len(plainEmu.Log()); n != 3 || plain != 2 {
		t.Fatalf("the providers saw %d and %d calls, want 3 and 2", n, plain)
	}
}

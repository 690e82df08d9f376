package provider

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/llmquota/llmquota/internal/emulator"
)

func emulatorClient(t *testing.T, typ Type) (Client, string) {
	t.Helper()
	c, _, url := emulatorClientWith(t, typ, emulator.Config{})
	return c, url
}

// emulatorClientWith is a client of typ against an emulator of cfg (its
// keys set to the test's), with the emulator and its URL.
func emulatorClientWith(t *testing.T, typ Type, cfg emulator.Config) (Client, *emulator.Server, string) {
	t.Helper()
	cfg.Keys = []string{testKey}
	emu := emulator.New(cfg)
	srv := emulator.NewTestServer(emu)
	t.Cleanup(srv.Close)
	endpoint := srv.URL
	if typ == OpenAI {
		endpoint += "/v1"
	}
	c, err := New(Config{Type: typ, Endpoint: endpoint, APIKey: testKey})
	if err != nil {
		t.Fatal(err)
	}
	return c, emu, srv.URL
}

// TestOpenAIReasoningModelsTakeMaxCompletionTokens: a reasoning model
// refuses max_tokens with 400, as OpenAI's does; the client sends
// max_completion_tokens to it, and its reasoning is counted as output.
func TestOpenAIReasoningModelsTakeMaxCompletionTokens(t *testing.T) {
	c, base := emulatorClient(t, OpenAI)
	body, _ := json.Marshal(map[string]any{"model": "o3-mini", "max_tokens": 64, "messages": []any{map[string]any{"role": "user", "content": "hello"}}})
	post, _ := http.NewRequest(http.MethodPost, base+"/v1/chat/completions", bytes.NewReader(body))
	post.Header.Set("Authorization", "Bearer "+testKey)
	raw, err := http.DefaultClient.Do(post)
	if err != nil {
		t.Fatal(err)
	}
	refusal, _ := io.ReadAll(raw.Body)
	_ = raw.Body.Close()
	if raw.StatusCode != http.StatusBadRequest || !strings.Contains(string(refusal), "max_completion_tokens") {
		t.Fatalf("max_tokens to o3-mini: %d %s, want 400 naming max_completion_tokens", raw.StatusCode, refusal)
	}

	for _, model := range []string{"o3-mini", "gpt-5", "o4-mini"} {
		resp, err := c.Generate(context.Background(), Request{Model: model, Prompt: "hello", MaxTokens: 4096})
		if err != nil {
			t.Fatalf("%s: %v", model, err)
		}
		if resp.OutputTokens < 4*8 || resp.Model != model { // reasoning is three times the answer
			t.Fatalf("%s: %d output tokens, model %q: reasoning not counted", model, resp.OutputTokens, resp.Model)
		}
	}
	if resp, err := c.Generate(context.Background(), Request{Model: "gpt-4o", Prompt: "hello", MaxTokens: 64}); err != nil || resp.OutputTokens > 31 {
		t.Fatalf("gpt-4o with max_tokens: %+v, %v", resp, err)
	}
}

// TestGeminiThinkingIsOutput: Gemini 2.5's thinking tokens are billed as
// output; thinkingBudget bounds them (0 turns them off); a cap cut is a
// length finish.
func TestGeminiThinkingIsOutput(t *testing.T) {
	c, _ := emulatorClient(t, Gemini)
	ask := func(budget *int32, maxTokens int32) *Response {
		t.Helper()
		resp, err := c.Generate(context.Background(), Request{Model: "gemini-2.5-flash", Prompt: "hello", MaxTokens: maxTokens, ThinkingBudget: budget})
		if err != nil {
			t.Fatal(err)
		}
		return resp
	}
	off, thinking := ask(new(int32), 0), ask(nil, 0)
	if thinking.OutputTokens != 4*off.OutputTokens || thinking.Model != "gemini-2.5-flash" {
		t.Fatalf("thinking %d output tokens, without %d: want the thoughts (three times the answer) counted", thinking.OutputTokens, off.OutputTokens)
	}
	budget := int32(5)
	if got := ask(&budget, 0).OutputTokens; got != off.OutputTokens+5 {
		t.Fatalf("a thinking budget of 5 gave %d output tokens, want %d", got, off.OutputTokens+5)
	}
	if cut := ask(nil, 10); cut.OutputTokens != 10 || cut.Finish() != FinishLength {
		t.Fatalf("a cap of 10: %d output tokens, finish %s (%s), want 10 and length", cut.OutputTokens, cut.Finish(), cut.FinishReason)
	}
	if off.Finish() != FinishStop {
		t.Fatalf("finish %s (%s), want stop", off.Finish(), off.FinishReason)
	}
}

// TestAnthropicCacheTokensPricedAsInput: prompt-cache writes count 1.25
// times, reads 0.1 times, at the input price, rounded up.
func TestAnthropicCacheTokensPricedAsInput(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		_, _ = w.Write([]byte(`{"model":"claude-haiku-4-5","content":[{"type":"text","text":"ok"}],"stop_reason":"max_tokens",
			"usage":{"input_tokens":100,"output_tokens":7,"cache_creation_input_tokens":10,"cache_read_input_tokens":1001}}`))
	}))
	defer srv.Close()
	c, _ := New(Config{Type: Anthropic, Endpoint: srv.URL, APIKey: testKey})
	resp, err := c.Generate(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	if want := int64(100 + 13 + 101); resp.InputTokens != want || resp.Finish() != FinishLength || resp.Model != "claude-haiku-4-5" {
		t.Fatalf("input %d (want %d), finish %s, model %q", resp.InputTokens, want, resp.Finish(), resp.Model)
	}
}

func TestFinishVocabulary(t *testing.T) {
	for reason, want := range map[string]Finish{"stop": FinishStop, "end_turn": FinishStop, "STOP": FinishStop, "length": FinishLength,
		"MAX_TOKENS": FinishLength, "max_tokens": FinishLength, "SAFETY": FinishSafety, "content_filter": FinishSafety,
		"refusal": FinishSafety, "MALFORMED_FUNCTION_CALL": FinishOther} {
		if got := (&Response{FinishReason: reason}).Finish(); got != want {
			t.Errorf("%s: %s, want %s", reason, got, want)
		}
	}
}

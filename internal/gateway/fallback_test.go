package gateway_test

import (
	"context"
	"errors"
	"net/http"
	"testing"
	"time"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"

	llmv1 "github.com/llmquota/llmquota/api/v1alpha1"
	"github.com/llmquota/llmquota/internal/dispatch"
	"github.com/llmquota/llmquota/internal/emulator"
	"github.com/llmquota/llmquota/internal/gateway"
	"github.com/llmquota/llmquota/internal/ratewindow"
)

// TestGatewayFallsBackWhenLimited: a provider whose spec.interactive.fallback
// is WhenLimited sends a call it cannot admit at once to its fallback,
// which answers under its own quota and is named in the answer; a caller
// that may not use the fallback waits for the provider as before and gets
// its 429. Neither provider sees a call past its window.
func TestGatewayFallsBackWhenLimited(t *testing.T) {
	ctx := context.Background()
	b := newBed(t, 10, time.Minute)
	backupEmu, _ := b.addProvider(t, "backup", 10, time.Minute, func(spec *llmv1.LLMProviderSpec) { spec.Model = "gpt-backup" })
	primaryEmu, _ := b.addProvider(t, "primary", 1, time.Minute, func(spec *llmv1.LLMProviderSpec) {
		spec.Fallback = &llmv1.ProviderReference{Name: "backup"}
		spec.Interactive = &llmv1.InteractivePolicy{Fallback: llmv1.InteractiveFallbackWhenLimited}
	})
	grant(t, b.c, "use-primary", []string{"primary"}, "team-a", "app") // not backup

	ask := func(token, model string) (*openai.ChatCompletion, *http.Response, error) {
		var raw *http.Response
		resp, err := sdk(b, token).Chat.Completions.New(ctx, openai.ChatCompletionNewParams{Model: model,
			Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("hello")}},
			option.WithResponseInto(&raw), option.WithHeader(gateway.MaxWaitHeader, "0"))
		return resp, raw, err
	}
	cases := []struct {
		name, token, model    string
		servedBy, answerModel string // "" for a 429
	}{
		{"the provider has quota", b.ops, "primary", "primary", "primary/gpt-test"},
		{"its window is full: the fallback answers with its own model", b.ops, "primary/gpt-test", "backup", "backup/gpt-backup"},
		{"a caller that may not use the fallback gets the provider's 429", b.app, "primary", "", ""},
	}
	for _, c := range cases {
		resp, raw, err := ask(c.token, c.model)
		if c.servedBy == "" {
			var apiErr *openai.Error
			if !errors.As(err, &apiErr) || apiErr.StatusCode != http.StatusTooManyRequests ||
				apiErr.Response.Header.Get(gateway.LimitedByHeader) != "Window/window" {
				t.Errorf("%s: %v, want a 429 limited by the provider's window", c.name, err)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s: %v", c.name, err)
			continue
		}
		if got := raw.Header.Get(gateway.ProviderHeader); got != c.servedBy || resp.Model != c.answerModel {
			t.Errorf("%s: served by %q as model %q, want %q as %q", c.name, got, resp.Model, c.servedBy, c.answerModel)
		}
	}
	for name, emu := range map[string]*emulator.Server{"primary": primaryEmu, "backup": backupEmu} {
		if n := len(emu.Log()); n != 1 {
			t.Errorf("%s saw %d calls, want 1", name, n)
		}
		if tally := emulator.Count(emu.Log()); tally.QuotaRefusals != 0 {
			t.Errorf("%s refused %d calls for its quota", name, tally.QuotaRefusals)
		}
	}
	must(t, emulator.CheckWindows(primaryEmu.Log(), []emulator.Limit{{Requests: 1, Period: time.Minute}}))
}

// TestGatewayCallsCountInTheirModelsLimits: a call names its model, and the
// model's own limits (spec.modelLimits) refuse it at once once full, naming
// them; a call to the provider's default model goes on.
func TestGatewayCallsCountInTheirModelsLimits(t *testing.T) {
	ctx := context.Background()
	b := newBed(t, 10, time.Minute)
	b.addProviderWith(t, "models", 10, time.Minute, providerOptions{dispatch: func(cfg *dispatch.Config) {
		cfg.ModelLimits = map[string]*ratewindow.Config{"pro": {Windows: []ratewindow.Window{{Name: "minute", Limit: 1, Period: time.Minute}}}}
	}})
	grant(t, b.c, "use-models", []string{"models"}, "team-a", "app")
	call := func(model string) error {
		_, err := sdk(b, b.app).Chat.Completions.New(ctx, openai.ChatCompletionNewParams{Model: model,
			Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("hello")}}, option.WithHeader(gateway.MaxWaitHeader, "0"))
		return err
	}
	if err := call("models/pro"); err != nil {
		t.Fatalf("the first call to pro: %v", err)
	}
	var apiErr *openai.Error
	if err := call("models/pro"); !errors.As(err, &apiErr) || apiErr.StatusCode != http.StatusTooManyRequests ||
		apiErr.Response.Header.Get(gateway.LimitedByHeader) != "Window/model-limit/minute" {
		t.Fatalf("the second call to pro: %v, want a 429 limited by pro's own minute", err)
	}
	if err := call("models"); err != nil {
		t.Fatalf("a call to the default model: %v", err)
	}
}

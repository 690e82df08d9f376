package gateway_test

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/anthropics/anthropic-sdk-go/v2"
	anthropicoption "github.com/anthropics/anthropic-sdk-go/v2/option"
	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/shared"
	"google.golang.org/genai"

	"github.com/llmquota/llmquota/internal/dispatch"
	"github.com/llmquota/llmquota/internal/ratewindow"
)

// TestGatewayRefusesWhatItCannotCarry: a field that would change the
// answer in a way the gateway cannot carry to the provider (tools, a JSON
// response format, stop sequences, other sampling knobs) is refused with a
// 400 naming it, through each official SDK, and nothing is sent; the same
// fields at their neutral values, as SDKs and frameworks send them, are
// answered.
func TestGatewayRefusesWhatItCannotCarry(t *testing.T) {
	b := newBed(t, 600, time.Minute)
	ctx := context.Background()
	user := []openai.ChatCompletionMessageParamUnion{openai.UserMessage("what is a quota?")}
	weather := openai.ChatCompletionFunctionTool(shared.FunctionDefinitionParam{Name: "get_weather"})
	jsonObject := openai.ChatCompletionNewParamsResponseFormatUnion{OfJSONObject: &shared.ResponseFormatJSONObjectParam{}}
	text := openai.ChatCompletionNewParamsResponseFormatUnion{OfText: &shared.ResponseFormatTextParam{}}
	before := len(b.emu.Log())

	for _, tc := range []struct {
		field  string
		params openai.ChatCompletionNewParams
	}{
		{"tools", openai.ChatCompletionNewParams{Model: "emu", Messages: user, Tools: []openai.ChatCompletionToolUnionParam{weather}}},
		{"response_format", openai.ChatCompletionNewParams{Model: "emu", Messages: user, ResponseFormat: jsonObject}},
		{"stop", openai.ChatCompletionNewParams{Model: "emu", Messages: user,
			Stop: openai.ChatCompletionNewParamsStopUnion{OfString: openai.String("\n")}}},
		{"top_p", openai.ChatCompletionNewParams{Model: "emu", Messages: user, TopP: openai.Float(0.5)}},
		{"presence_penalty", openai.ChatCompletionNewParams{Model: "emu", Messages: user, PresencePenalty: openai.Float(1)}},
		{"logprobs", openai.ChatCompletionNewParams{Model: "emu", Messages: user, Logprobs: openai.Bool(true)}},
	} {
		_, err := sdk(b, b.app).Chat.Completions.New(ctx, tc.params)
		var apiErr *openai.Error
		if !errors.As(err, &apiErr) || apiErr.StatusCode != http.StatusBadRequest || apiErr.Code != "unsupported_parameter" ||
			!strings.HasPrefix(apiErr.Message, tc.field+"=") {
			t.Errorf("%s: %v, want 400 unsupported_parameter naming it", tc.field, err)
		}
	}

	claude := anthropic.NewClient(anthropicoption.WithBaseURL(b.gateway+"/anthropic/"), anthropicoption.WithAPIKey(b.app), anthropicoption.WithMaxRetries(0))
	_, err := claude.Messages.New(ctx, anthropic.MessageNewParams{Model: "emu", MaxTokens: 64, StopSequences: []string{"END"},
		Messages: []anthropic.MessageParam{anthropic.NewUserMessage(anthropic.NewTextBlock("what is a quota?"))}})
	var claudeErr *anthropic.Error
	if !errors.As(err, &claudeErr) || claudeErr.StatusCode != http.StatusBadRequest || !strings.Contains(claudeErr.RawJSON(), "stop_sequences=") {
		t.Errorf("Anthropic stop_sequences: %v, want 400 naming it", err)
	}

	gemini, err := genai.NewClient(ctx, &genai.ClientConfig{APIKey: b.app, Backend: genai.BackendGeminiAPI,
		HTTPOptions: genai.HTTPOptions{BaseURL: b.gateway + "/gemini/"}})
	must(t, err)
	_, err = gemini.Models.GenerateContent(ctx, "emu", genai.Text("what is a quota?"), &genai.GenerateContentConfig{ResponseMIMEType: "application/json"})
	var geminiErr genai.APIError
	if !errors.As(err, &geminiErr) || geminiErr.Code != http.StatusBadRequest || !strings.Contains(geminiErr.Message, "generationConfig.responseMimeType=") {
		t.Errorf("Gemini responseMimeType: %v, want 400 naming it", err)
	}
	if n := len(b.emu.Log()) - before; n != 0 {
		t.Fatalf("%d refused calls reached the provider", n)
	}

	// Neutral values are what the gateway does anyway: answered.
	if _, err := sdk(b, b.app).Chat.Completions.New(ctx, openai.ChatCompletionNewParams{Model: "emu", Messages: user, MaxTokens: openai.Int(64),
		TopP: openai.Float(1), PresencePenalty: openai.Float(0), FrequencyPenalty: openai.Float(0), ResponseFormat: text,
		Logprobs: openai.Bool(false), User: openai.String("team-a/app")}); err != nil {
		t.Errorf("neutral values: %v", err)
	}
	budget := int32(0)
	resp, err := gemini.Models.GenerateContent(ctx, "emu", genai.Text("what is a quota?"), &genai.GenerateContentConfig{MaxOutputTokens: 64,
		ResponseMIMEType: "text/plain", ThinkingConfig: &genai.ThinkingConfig{ThinkingBudget: &budget}})
	if err != nil || !strings.HasPrefix(resp.Text(), "emulated answer") {
		t.Errorf("Gemini with a thinking budget and a text response: %v", err)
	}
}

// TestGatewayRefusesACallNoWindowHolds: a call whose token cost alone is
// more than the provider's tokens window holds is answered 400 at once,
// saying what to send instead (the gateway's default output cap, when the
// call named none), not 429 with a Retry-After that no wait honours; a
// call that fits is answered.
func TestGatewayRefusesACallNoWindowHolds(t *testing.T) {
	b := newBed(t, 600, time.Minute)
	ctx := context.Background()
	emu, _ := b.addProviderWith(t, "small", 600, time.Minute, providerOptions{dispatch: func(c *dispatch.Config) {
		c.Limits.Tokens = &ratewindow.Window{Name: "tokensPerMinute", Limit: 1000, Period: time.Minute}
	}})
	grant(t, b.c, "use-small", []string{"small"}, "team-a", "app")
	user := []openai.ChatCompletionMessageParamUnion{openai.UserMessage("what is a quota?")}
	_, err := sdk(b, b.app).Chat.Completions.New(ctx, openai.ChatCompletionNewParams{Model: "small", Messages: user})
	var apiErr *openai.Error
	if !errors.As(err, &apiErr) || apiErr.StatusCode != http.StatusBadRequest || apiErr.Code != "tokens_over_limit" ||
		!strings.Contains(apiErr.Message, "4096 tokens, the gateway's default") || !strings.Contains(apiErr.Message, "tokensPerMinute") {
		t.Fatalf("no output cap named: %v, want 400 tokens_over_limit naming the default cap and the window", err)
	}
	if _, err := sdk(b, b.app).Chat.Completions.New(ctx, openai.ChatCompletionNewParams{Model: "small", Messages: user,
		MaxTokens: openai.Int(64)}); err != nil {
		t.Fatalf("a call that fits: %v", err)
	}
	if n := len(emu.Log()); n != 1 {
		t.Fatalf("%d calls reached the provider, want the one that fits", n)
	}
}

package gateway_test

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/anthropics/anthropic-sdk-go/v2"
	anthropicoption "github.com/anthropics/anthropic-sdk-go/v2/option"
	"github.com/openai/openai-go/v3"
	"google.golang.org/genai"

	llmv1 "github.com/llmquota/llmquota/api/v1alpha1"
	"github.com/llmquota/llmquota/internal/emulator"
)

// hold holds an emulator's streams after their first piece until the
// caller has read that piece through the gateway: a gateway that held the
// first piece back until the last would never let it through, and the
// caller's deadline would fail the test. It also tells when a held
// stream's request ended (the caller left).
type hold struct {
	mu      sync.Mutex
	release chan struct{}
	left    chan struct{}
}

// arm readies the hold for the next stream; first releases it.
func (h *hold) arm() (first func(), left <-chan struct{}) {
	h.mu.Lock()
	defer h.mu.Unlock()
	release := make(chan struct{})
	h.release, h.left = release, make(chan struct{})
	return sync.OnceFunc(func() { close(release) }), h.left
}

// before is the emulator's BeforeChunk.
func (h *hold) before(ctx context.Context, chunk int) {
	if chunk != 1 {
		return
	}
	h.mu.Lock()
	release, left := h.release, h.left
	h.mu.Unlock()
	select {
	case <-release:
	case <-ctx.Done():
		close(left)
	case <-time.After(30 * time.Second): // the caller's deadline has failed the test by now
	}
}

// streamed is what a caller read from a stream: its text, in pieces, and
// the usage its last event said.
type streamed struct {
	pieces  []string
	in, out int64
}

func (s streamed) text() string { return strings.Join(s.pieces, "") }

// add records a piece, calling first at the first one.
func (s *streamed) add(piece string, first func()) {
	if piece == "" {
		return
	}
	if len(s.pieces) == 0 && first != nil {
		first()
	}
	s.pieces = append(s.pieces, piece)
}

// streamingSDK streams one call to model through the gateway with an
// official SDK, calling first once the first piece of text has arrived.
type streamingSDK func(ctx context.Context, b *bed, token, model string, first func()) (streamed, error)

var streamingSDKs = map[string]streamingSDK{
	"OpenAI SDK": func(ctx context.Context, b *bed, token, model string, first func()) (streamed, error) {
		stream := sdk(b, token).Chat.Completions.NewStreaming(ctx, openai.ChatCompletionNewParams{Model: model,
			Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("stream me")}, MaxCompletionTokens: openai.Int(64),
			StreamOptions: openai.ChatCompletionStreamOptionsParam{IncludeUsage: openai.Bool(true)}})
		var s streamed
		for stream.Next() {
			chunk := stream.Current()
			for _, c := range chunk.Choices {
				s.add(c.Delta.Content, first)
			}
			if chunk.Usage.TotalTokens > 0 {
				s.in, s.out = chunk.Usage.PromptTokens, chunk.Usage.CompletionTokens
			}
		}
		return s, stream.Err()
	},
	"Anthropic SDK": func(ctx context.Context, b *bed, token, model string, first func()) (streamed, error) {
		claude := anthropic.NewClient(anthropicoption.WithBaseURL(b.gateway+"/anthropic/"), anthropicoption.WithAPIKey(token), anthropicoption.WithMaxRetries(0))
		stream := claude.Messages.NewStreaming(ctx, anthropic.MessageNewParams{Model: model, MaxTokens: 64,
			Messages: []anthropic.MessageParam{anthropic.NewUserMessage(anthropic.NewTextBlock("stream me"))}})
		var s streamed
		acc := anthropic.Message{}
		for stream.Next() {
			ev := stream.Current()
			if err := acc.Accumulate(ev); err != nil {
				return s, err
			}
			if ev.Type == "content_block_delta" {
				s.add(ev.Delta.Text, first)
			}
		}
		s.in, s.out = acc.Usage.InputTokens, acc.Usage.OutputTokens
		return s, stream.Err()
	},
	"Gen AI SDK": func(ctx context.Context, b *bed, token, model string, first func()) (streamed, error) {
		client, err := genai.NewClient(ctx, &genai.ClientConfig{APIKey: token, Backend: genai.BackendGeminiAPI,
			HTTPOptions: genai.HTTPOptions{BaseURL: b.gateway + "/gemini/"}})
		if err != nil {
			return streamed{}, err
		}
		var s streamed
		for chunk, err := range client.Models.GenerateContentStream(ctx, model, genai.Text("stream me"), &genai.GenerateContentConfig{MaxOutputTokens: 64}) {
			if err != nil {
				return s, err
			}
			s.add(chunk.Text(), first)
			if u := chunk.UsageMetadata; u != nil && u.CandidatesTokenCount > 0 {
				s.in, s.out = int64(u.PromptTokenCount), int64(u.CandidatesTokenCount)
			}
		}
		return s, nil
	},
}

// upstreams are the provider APIs a gateway call is translated to, each
// with its default model.
var upstreams = map[llmv1.ProviderType]string{llmv1.ProviderOpenAI: "gpt-test", llmv1.ProviderAnthropic: "claude-test", llmv1.ProviderGemini: "gemini-test"}

// addUpstream adds a provider of type typ whose emulator streams through h.
func (b *bed) addUpstream(t *testing.T, name string, typ llmv1.ProviderType, h *hold, script ...emulator.Fault) *emulator.Server {
	t.Helper()
	emu, _ := b.addProviderWith(t, name, 600, time.Minute, providerOptions{
		spec: func(spec *llmv1.LLMProviderSpec) {
			spec.Type, spec.Model = typ, upstreams[typ]
			if typ != llmv1.ProviderOpenAI {
				spec.Endpoint = strings.TrimSuffix(spec.Endpoint, "/v1")
			}
		},
		emulator: func(cfg *emulator.Config) { cfg.BeforeChunk, cfg.Script = h.before, script },
	})
	return emu
}

// TestStreamsArePassedOnAsTheyArrive: every dialect's official SDK streams
// from every provider API through the gateway. Each stream is held at the
// provider after its first piece until that piece has reached the SDK, so
// a gateway that buffered would fail here. The SDK reads the provider's
// whole answer, in pieces, with the provider's usage, and the provider saw
// a streamed call.
func TestStreamsArePassedOnAsTheyArrive(t *testing.T) {
	b := newBed(t, 600, time.Minute)
	for typ := range upstreams {
		h := &hold{}
		name := "up-" + strings.ToLower(string(typ))
		emu := b.addUpstream(t, name, typ, h)
		for sdkName, stream := range streamingSDKs {
			t.Run(string(typ)+" through the "+sdkName, func(t *testing.T) {
				ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
				defer cancel()
				first, _ := h.arm()
				s, err := stream(ctx, b, b.ops, name, first)
				if err != nil {
					t.Fatal(err)
				}
				log := emu.Log()
				last := log[len(log)-1]
				if !last.Stream || last.Status != http.StatusOK {
					t.Fatalf("the provider saw %+v, want a streamed call", last)
				}
				if len(s.pieces) < 2 || !strings.HasPrefix(s.text(), "emulated answer ") || len(s.text()) != len("emulated answer ")+16 {
					t.Fatalf("read %q", s.pieces)
				}
				if s.in == 0 || s.out == 0 {
					t.Fatalf("usage in %d, out %d", s.in, s.out)
				}
			})
		}
	}
}

// TestStreamCallerLeavesCancelsTheProvidersCall: a caller that goes away
// mid-stream ends the provider's request, and the quota it held comes back.
func TestStreamCallerLeavesCancelsTheProvidersCall(t *testing.T) {
	b := newBed(t, 600, time.Minute)
	h := &hold{}
	b.addUpstream(t, "leaving", llmv1.ProviderOpenAI, h)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	_, left := h.arm() // never released: the stream stays held until its request ends
	go func() {
		_, _ = streamingSDKs["OpenAI SDK"](ctx, b, b.ops, "leaving", cancel)
	}()
	select {
	case <-left:
	case <-time.After(20 * time.Second):
		t.Fatal("the provider's request went on after its caller left")
	}
	waitIdle(t, b.dispatcher("leaving"))
}

// TestStreamFailures: a provider that refuses before its stream begins
// gets the caller an HTTP error of its own status; one whose stream is cut
// after its first piece ends the caller's stream with the dialect's error
// event, which each official SDK raises.
func TestStreamFailures(t *testing.T) {
	b := newBed(t, 600, time.Minute)
	h := &hold{}
	b.addUpstream(t, "refusing", llmv1.ProviderAnthropic, h, emulator.FaultRateLimit)
	ctx := context.Background()
	first, _ := h.arm()
	_, err := streamingSDKs["OpenAI SDK"](ctx, b, b.ops, "refusing", first)
	var apiErr *openai.Error
	if !errors.As(err, &apiErr) || apiErr.StatusCode != http.StatusTooManyRequests {
		t.Fatalf("a provider's 429 before the stream: %v, want HTTP 429", err)
	}

	b.addUpstream(t, "cut", llmv1.ProviderGemini, h, emulator.FaultCut, emulator.FaultCut, emulator.FaultCut)
	for sdkName, stream := range streamingSDKs {
		t.Run("cut, through the "+sdkName, func(t *testing.T) {
			first, _ := h.arm()
			s, err := stream(ctx, b, b.ops, "cut", first)
			if err == nil || len(s.pieces) != 1 {
				t.Fatalf("read %q, then %v; want the first piece, then an error", s.pieces, err)
			}
			var gerr genai.APIError
			switch {
			case sdkName == "Gen AI SDK" && (!errors.As(err, &gerr) || gerr.Code != http.StatusBadGateway):
				t.Fatalf("error %#v, want Google's error with code 502", err)
			case sdkName != "Gen AI SDK" && !strings.Contains(err.Error(), `provider \"cut\" failed`) && !strings.Contains(err.Error(), `provider "cut" failed`):
				t.Fatalf("error %v, want the gateway's message", err)
			}
		})
	}
}

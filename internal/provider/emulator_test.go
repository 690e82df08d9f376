package provider

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/llmquota/llmquota/internal/emulator"
)

// TestClientsAgainstEmulator runs every client over real HTTP against the
// project's emulator: a success, then each injected fault, classified.
func TestClientsAgainstEmulator(t *testing.T) {
	script := []emulator.Fault{emulator.FaultNone, emulator.FaultRateLimit, emulator.FaultServerError,
		emulator.FaultUnavailable, emulator.FaultOverloaded, emulator.FaultMalformed, emulator.FaultReset, emulator.FaultHang}
	want := []Class{"", ClassRateLimited, ClassServerError, ClassServerError, ClassServerError, ClassServerError, ClassConnection, ClassTimeout}
	for _, typ := range []Type{Gemini, Anthropic, OpenAI, Ollama} {
		t.Run(string(typ), func(t *testing.T) {
			emu := emulator.New(emulator.Config{Script: script, RetryAfter: 3 * time.Second, HangFor: 5 * time.Second, Keys: []string{testKey}})
			srv := emulator.NewTestServer(emu)
			defer srv.Close()
			endpoint := srv.URL
			if typ == OpenAI {
				endpoint += "/v1"
			}
			c, err := New(Config{Type: typ, Endpoint: endpoint, APIKey: testKey})
			if err != nil {
				t.Fatal(err)
			}
			for i, class := range want {
				ctx, cancel := context.WithTimeout(context.Background(), 1500*time.Millisecond)
				start := time.Now()
				resp, err := c.Generate(ctx, req)
				cancel()
				if class == "" {
					if err != nil || resp.Text == "" || resp.InputTokens == 0 || resp.OutputTokens == 0 {
						t.Fatalf("call %d: %+v, %v", i, resp, err)
					}
					continue
				}
				var pe *Error
				if !errors.As(err, &pe) || pe.Class != class {
					t.Fatalf("call %d (fault %q): got %v, want class %s", i, script[i], err, class)
				}
				if class == ClassRateLimited && (pe.RetryAt.Before(start.Add(3*time.Second)) || pe.RetryAt.After(time.Now().Add(3*time.Second))) {
					t.Fatalf("call %d: retry at %v, want about 3s after the call", i, pe.RetryAt.Sub(start))
				}
			}
			if n := len(emu.Log()); n != len(want) {
				t.Fatalf("emulator saw %d requests, want %d", n, len(want))
			}
		})
	}
}

func TestEmulatorQuotaAndBadKey(t *testing.T) {
	for _, typ := range []Type{Gemini, Anthropic, OpenAI} {
		t.Run(string(typ), func(t *testing.T) {
			srv := emulator.NewTestServer(emulator.New(emulator.Config{Limits: []emulator.Limit{{Requests: 2, Period: time.Minute}}, Keys: []string{testKey}}))
			defer srv.Close()
			endpoint := srv.URL
			if typ == OpenAI {
				endpoint += "/v1"
			}
			c, _ := New(Config{Type: typ, Endpoint: endpoint, APIKey: testKey})
			for range 2 {
				if _, err := c.Generate(context.Background(), req); err != nil {
					t.Fatal(err)
				}
			}
			_, err := c.Generate(context.Background(), req)
			var pe *Error
			if !errors.As(err, &pe) || pe.Class != ClassRateLimited || pe.RetryAt.Before(time.Now().Add(58*time.Second)) {
				t.Fatalf("third call in a 2/min window: %v (retry at %v), want RateLimited for about a minute", err, pe)
			}
			bad, _ := New(Config{Type: typ, Endpoint: endpoint, APIKey: "wrong"})
			if _, err := bad.Generate(context.Background(), req); !errors.As(err, &pe) || pe.Class != ClassAuth {
				t.Fatalf("wrong key: %v, want AuthFailed", err)
			}
		})
	}
}

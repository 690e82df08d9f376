package provider

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/llmquota/llmquota/internal/emulator"
)

// streamer is a client of typ against the emulator, as a Streamer.
func streamer(t *testing.T, typ Type, cfg emulator.Config) (Streamer, *emulator.Server) {
	t.Helper()
	c, emu, _ := emulatorClientWith(t, typ, cfg)
	s, ok := c.(Streamer)
	if !ok {
		t.Fatalf("the %s client does not stream", typ)
	}
	return s, emu
}

// streamTypes are the APIs whose clients stream, each with a model that
// thinks where the API has one (its thinking is output, streamed or not).
var streamTypes = map[Type]string{Gemini: "gemini-2.5-flash", Anthropic: "claude-test", OpenAI: "o4-mini", Ollama: "tiny"}

// TestStreamMatchesGenerate streams the same call Generate makes: the
// pieces arrive one by one and join to the same text, with the same usage,
// finish and model, and the emulator saw a stream.
func TestStreamMatchesGenerate(t *testing.T) {
	for typ, model := range streamTypes {
		t.Run(string(typ), func(t *testing.T) {
			c, emu := streamer(t, typ, emulator.Config{})
			r := req
			r.Model = model
			whole, err := c.Generate(context.Background(), r)
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			resp, err := c.Stream(context.Background(), r, func(p string) error { got = append(got, p); return nil })
			if err != nil {
				t.Fatal(err)
			}
			if len(got) < 2 || strings.Join(got, "") != whole.Text || resp.Text != whole.Text {
				t.Fatalf("pieces %q, text %q; Generate said %q", got, resp.Text, whole.Text)
			}
			if resp.InputTokens != whole.InputTokens || resp.OutputTokens != whole.OutputTokens || resp.UsageEstimated ||
				resp.FinishReason != whole.FinishReason || resp.Model != whole.Model {
				t.Fatalf("streamed %+v, generated %+v", resp, whole)
			}
			if log := emu.Log(); len(log) != 2 || log[0].Stream || !log[1].Stream {
				t.Fatalf("the emulator saw %+v", log)
			}
		})
	}
}

// TestStreamFailures: a refusal before the stream is classified as
// Generate's is (with its wait); a stream cut after its first piece is a
// connection failure, after that piece reached the caller; a caller that
// stops reading cancels the call.
func TestStreamFailures(t *testing.T) {
	for typ, model := range streamTypes {
		t.Run(string(typ), func(t *testing.T) {
			c, _ := streamer(t, typ, emulator.Config{RetryAfter: 3 * time.Second,
				Script: []emulator.Fault{emulator.FaultRateLimit, emulator.FaultOverloaded, emulator.FaultCut, emulator.FaultNone}})
			r := req
			r.Model = model
			class := func(err error) Class {
				var pe *Error
				if !errors.As(err, &pe) {
					t.Fatalf("%v is not an *Error", err)
				}
				return pe.Class
			}
			start := time.Now()
			_, err := c.Stream(context.Background(), r, func(string) error { return nil })
			var pe *Error
			if class(err) != ClassRateLimited || !errors.As(err, &pe) || pe.RetryAt.Before(start.Add(3*time.Second)) {
				t.Fatalf("429: %v", err)
			}
			if _, err := c.Stream(context.Background(), r, func(string) error { return nil }); class(err) != ClassServerError {
				t.Fatalf("529: %v", err)
			}
			var before []string
			if _, err := c.Stream(context.Background(), r, func(p string) error { before = append(before, p); return nil }); class(err) != ClassConnection || len(before) != 1 {
				t.Fatalf("cut: %v after %q", err, before)
			}
			stop := errors.New("the caller left")
			if _, err := c.Stream(context.Background(), r, func(string) error { return stop }); class(err) != ClassCanceled {
				t.Fatalf("a caller that stops reading: %v", err)
			}
		})
	}
}

// TestStreamWithoutUsageIsEstimated: a server that sends no usage gets
// bounds from the lengths, marked as estimates, never under the usage the
// server would have said.
func TestStreamWithoutUsageIsEstimated(t *testing.T) {
	for typ, model := range streamTypes {
		t.Run(string(typ), func(t *testing.T) {
			c, _ := streamer(t, typ, emulator.Config{NoStreamUsage: true})
			r := req
			r.Model = model
			r.MaxTokens = 1000
			whole, err := c.Generate(context.Background(), r)
			if err != nil {
				t.Fatal(err)
			}
			resp, err := c.Stream(context.Background(), r, func(string) error { return nil })
			if err != nil {
				t.Fatal(err)
			}
			if !resp.UsageEstimated || resp.InputTokens != int64(r.Chars()) || resp.OutputTokens != int64(len(whole.Text)) ||
				resp.InputTokens < whole.InputTokens {
				t.Fatalf("estimated %+v, the server said %+v", resp, whole)
			}
		})
	}
}

func TestReadEvents(t *testing.T) {
	in := "event: a\ndata: 1\ndata: 2\n\n: a comment\ndata:3\n\nevent: b\ndata: {\"x\":1}"
	var got []string
	err := readEvents(strings.NewReader(in), func(ev string, data []byte) error {
		got = append(got, ev+"="+string(data))
		return nil
	})
	want := []string{"a=1\n2", "=3", `b={"x":1}`}
	if err != nil || strings.Join(got, "|") != strings.Join(want, "|") {
		t.Fatalf("got %q, %v; want %q", got, err, want)
	}
}

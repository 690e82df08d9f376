package emulator

import (
	"net/http"
	"testing"
	"time"
)

// TestOutputTokensCountMaxTokensUntilAnswered: an output-token window
// charges a request its max_tokens when it arrives, as Anthropic counts
// OTPM, and the output it got once answered; a request that does not fit
// is refused with the wait until enough of the window leaves, and one
// larger than the whole window with a whole period.
func TestOutputTokensCountMaxTokensUntilAnswered(t *testing.T) {
	t0 := time.Date(2026, 12, 7, 9, 0, 0, 0, time.UTC)
	s := New(Config{OutputTokenLimits: []TokenLimit{{Tokens: 100, Period: time.Minute}}, Now: func() time.Time { return t0 }})
	ask := func(at time.Duration, maxTokens int) (int, time.Duration, func(int)) {
		t.Helper()
		status, _, wait, used := s.decide(call{api: anthropic, key: "k", model: "claude", prompt: "p", maxTokens: maxTokens}, t0.Add(at))
		return status, wait, used
	}
	_, _, first := ask(0, 40)
	_, _, second := ask(time.Second, 40)
	if status, wait, _ := ask(2*time.Second, 40); status != http.StatusTooManyRequests || wait != 58*time.Second {
		t.Fatalf("a third of 40 with 80 of 100 held: %d, wait %v; want 429 until the first leaves in 58s", status, wait)
	}
	first(10)
	second(12)
	if status, _, _ := ask(3*time.Second, 40); status != http.StatusOK {
		t.Fatalf("a third of 40 with the first two answered (22 of 100 used): %d, want 200", status)
	}
	if status, wait, _ := ask(4*time.Second, 101); status != http.StatusTooManyRequests || wait != time.Minute {
		t.Fatalf("max_tokens above the whole window: %d, wait %v; want 429 and a whole period", status, wait)
	}
	if status, _, _ := ask(61*time.Second, 60); status != http.StatusOK {
		t.Fatalf("after the first two left the window: %d, want 200", status)
	}
}

// TestAllTokensCountPromptAndCap: a window of all tokens charges a request
// its prompt and its max_tokens when it arrives, as OpenAI counts TPM, and
// its prompt and output once answered.
func TestAllTokensCountPromptAndCap(t *testing.T) {
	t0 := time.Date(2026, 12, 7, 9, 0, 0, 0, time.UTC)
	s := New(Config{TokenLimits: []TokenLimit{{Tokens: 100, Period: time.Minute}}, Now: func() time.Time { return t0 }})
	prompt := "a prompt of twenty-eight chars" // 7 tokens at four characters a token
	ask := func(at time.Duration) (int, func(int)) {
		status, _, _, used := s.decide(call{api: openai, key: "k", model: "gpt", prompt: prompt, maxTokens: 40}, t0.Add(at))
		return status, used
	}
	first, usedFirst := ask(0) // 47 of 100
	second, usedSecond := ask(time.Second)
	third, _ := ask(2 * time.Second)
	if first != http.StatusOK || second != http.StatusOK || third != http.StatusTooManyRequests {
		t.Fatalf("three calls of 7+40 against 100: %d %d %d, want 200 200 429", first, second, third)
	}
	usedFirst(5) // answered with 5 tokens: 12 held, and the second's 47
	if status, _ := ask(3 * time.Second); status != http.StatusTooManyRequests {
		t.Fatalf("12+47 held and 47 more asked: %d, want 429", status)
	}
	usedSecond(5) // 12 and 12 held
	if status, _ := ask(4 * time.Second); status != http.StatusOK {
		t.Fatalf("both answered (24 held) and 47 more asked: %d, want 200", status)
	}
}

// TestInputTokensCountThePrompt: a window of input tokens charges a
// request its prompt when it arrives, as Anthropic counts ITPM and Gemini
// counts its TPM; the answer changes nothing.
func TestInputTokensCountThePrompt(t *testing.T) {
	t0 := time.Date(2026, 12, 7, 9, 0, 0, 0, time.UTC)
	s := New(Config{InputTokenLimits: []TokenLimit{{Tokens: 20, Period: time.Minute}}, Now: func() time.Time { return t0 }})
	prompt := "a prompt of twenty-eight chars" // 7 tokens
	ask := func(at time.Duration) int {
		status, _, _, used := s.decide(call{api: gemini, key: "k", model: "gemini", prompt: prompt, maxTokens: 1000}, t0.Add(at))
		used(1)
		return status
	}
	if a, b, c := ask(0), ask(time.Second), ask(2*time.Second); a != http.StatusOK || b != http.StatusOK || c != http.StatusTooManyRequests {
		t.Fatalf("three prompts of 7 against 20: %d %d %d, want 200 200 429 (the cap of 1000 is no input)", a, b, c)
	}
	if status := ask(61 * time.Second); status != http.StatusOK {
		t.Fatalf("after the first two left the window: %d, want 200", status)
	}
}

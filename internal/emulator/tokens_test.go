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

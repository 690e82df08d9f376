package dispatch

import (
	"strings"
	"testing"
	"time"

	"github.com/llmquota/llmquota/internal/ratewindow"
)

// TestItemTooLargeForAWindowFails: an item whose token cost alone is more
// than the provider's tokens window (or a namespace's own) holds can never
// be sent. It fails at once with a result that says why, and is never
// sent; the items behind it, its batch's and another batch's, go on. Held
// for it instead, every batch on the provider waited for ever.
func TestItemTooLargeForAWindowFails(t *testing.T) {
	for _, tc := range []struct {
		name   string
		cfg    func(*Config)
		window string
	}{
		{"the provider's tokens window", func(c *Config) {
			c.Limits.Tokens = &ratewindow.Window{Name: "tokensPerMinute", Limit: 500, Period: time.Minute}
		}, "tokensPerMinute"},
		{"a namespace's own tokens window", func(c *Config) {
			c.Shares = Shares{DefaultLimits: &ratewindow.Config{Tokens: &ratewindow.Window{Name: "tokensPerMinute", Limit: 500, Period: time.Minute}}}
		}, NamespaceLimitWindow + "tokensPerMinute"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			client := &stubClient{}
			cfg := Config{Name: "p", Client: client, Limits: ratewindow.Config{MaxConcurrency: 2}}
			tc.cfg(&cfg)
			d := start(t, cfg)
			got := newCollector(6)
			huge := Item{ID: "huge", Prompt: strings.Repeat("x", 4000)} // about 1,000 tokens
			d.Submit(Batch{Key: "ns/a", Namespace: "ns", Size: 1, Items: append([]Item{huge}, items("a", 2)...), Params: Params{MaxTokens: 64}, OnResult: got.add})
			d.Submit(Batch{Key: "ns/b", Namespace: "ns", Size: 1, Items: items("b", 3), Params: Params{MaxTokens: 64}, OnResult: got.add})
			for _, r := range got.wait(t, 10*time.Second) {
				switch {
				case r.ID == "huge" && (r.Succeeded || r.ErrorClass != ErrorTooLarge || !strings.Contains(r.ErrorMessage, tc.window)):
					t.Errorf("the huge item: %+v", r)
				case r.ID != "huge" && !r.Succeeded:
					t.Errorf("%s: %+v", r.ID, r)
				}
			}
			for _, p := range client.prompts() {
				if p == huge.Prompt {
					t.Fatal("the huge item was sent")
				}
			}
		})
	}
}

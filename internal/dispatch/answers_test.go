package dispatch

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr"
	clocktesting "k8s.io/utils/clock/testing"

	"github.com/llmquota/llmquota/internal/cost"
	"github.com/llmquota/llmquota/internal/emulator"
	"github.com/llmquota/llmquota/internal/provider"
	"github.com/llmquota/llmquota/internal/ratewindow"
)

// capturing records the requests it is sent and answers at once.
type capturing struct {
	mu   sync.Mutex
	reqs []provider.Request
}

func (c *capturing) Generate(_ context.Context, r provider.Request) (*provider.Response, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.reqs = append(c.reqs, r)
	return &provider.Response{Text: "ok", InputTokens: 1, OutputTokens: 1, FinishReason: "stop"}, nil
}

// TestTheCapSentIsTheCapReserved: a batch without maxTokens sends the
// 4096 its budget reserves, not the API's own default (which may be
// larger, or none), and the thinking budget goes with it.
func TestTheCapSentIsTheCapReserved(t *testing.T) {
	fc := clocktesting.NewFakeClock(time.Date(2026, 12, 6, 9, 0, 0, 0, time.UTC))
	c := &capturing{}
	d, _ := New(Config{Name: "p", Client: c, Limits: ratewindow.Config{MaxConcurrency: 2}}, nil, fc, logr.Discard(), nil)
	budget := int32(256)
	col := newCollector(2)
	d.Submit(Batch{Key: "ns/a", Namespace: "ns", Size: 1, Items: items("a", 1), OnResult: col.add, Params: Params{ThinkingBudget: &budget}})
	d.Submit(Batch{Key: "ns/b", Namespace: "ns", Size: 1, Items: items("b", 1), OnResult: col.add, Params: Params{MaxTokens: 64}})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go d.Run(ctx)
	col.wait(t, 10*time.Second)
	c.mu.Lock()
	defer c.mu.Unlock()
	caps := map[string]int32{}
	for _, r := range c.reqs {
		caps[r.Prompt[:len("prompt a")]] = r.MaxTokens
		if r.Prompt[7] == 'a' && (r.ThinkingBudget == nil || *r.ThinkingBudget != 256) {
			t.Fatalf("the thinking budget was not sent: %+v", r)
		}
	}
	if caps["prompt a"] != defaultWorstOutput || caps["prompt b"] != 64 {
		t.Fatalf("caps sent %v, want %d without maxTokens and 64 with it", caps, defaultWorstOutput)
	}
}

// TestResultsSayHowTheAnswerEnded: over real HTTP to the emulator's
// Gemini 2.5, each result carries the model that answered, its finish
// and its cost, thinking included; an answer cut at the cap is a success
// with finish length, or a failure Truncated when the batch says so.
func TestResultsSayHowTheAnswerEnded(t *testing.T) {
	_, client := emulated(t, emulator.Config{})
	prices := cost.Prices{InputPerMillion: "1", OutputPerMillion: "10"}
	d := start(t, Config{Name: "p", Client: client, DefaultModel: "gemini-2.5-flash", Prices: prices, Limits: ratewindow.Config{MaxConcurrency: 4}})
	full, cut, strict := newCollector(1), newCollector(1), newCollector(1)
	d.Submit(Batch{Key: "ns/full", Namespace: "ns", Size: 1, Items: items("full", 1), OnResult: full.add})
	d.Submit(Batch{Key: "ns/cut", Namespace: "ns", Size: 1, Items: items("cut", 1), OnResult: cut.add, Params: Params{MaxTokens: 10}})
	d.Submit(Batch{Key: "ns/strict", Namespace: "ns", Size: 1, Items: items("strict", 1), OnResult: strict.add,
		Params: Params{MaxTokens: 10, TruncatedFails: true}})
	meter, _ := cost.NewMeter(prices)

	f := full.wait(t, 10*time.Second)[0]
	if !f.Succeeded || f.Model != "gemini-2.5-flash" || f.Finish != provider.FinishStop || f.TokensOut < 4*8 ||
		cost.Format(f.Cost) != cost.Format(meter.Price(f.TokensIn, f.TokensOut)) {
		t.Fatalf("full answer: %+v (cost %s): want the model, stop, thinking in the output tokens and its cost", f, cost.Format(f.Cost))
	}
	if c := cut.wait(t, 10*time.Second)[0]; !c.Succeeded || c.Finish != provider.FinishLength || c.TokensOut != 10 {
		t.Fatalf("cut answer: %+v, want a success with finish length and 10 tokens", c)
	}
	if s := strict.wait(t, 10*time.Second)[0]; s.Succeeded || s.ErrorClass != ErrorTruncated || s.Finish != provider.FinishLength {
		t.Fatalf("cut answer with treatTruncatedAs Failed: %+v", s)
	}
}

package dispatch

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr"
	clocktesting "k8s.io/utils/clock/testing"

	"github.com/llmquota/llmquota/internal/provider"
	"github.com/llmquota/llmquota/internal/ratewindow"
)

// comeBackLater answers each prompt's first refusals attempts with a 429
// that says to come back in a second, then answers; it records when each
// call arrived, to check none arrived inside a hold it gave.
type comeBackLater struct {
	clock    *clocktesting.FakeClock
	refusals int // per prompt; -1 refuses for ever

	mu       sync.Mutex
	attempts map[string]int
	holdEnd  time.Time
	inHold   int
}

func (c *comeBackLater) Generate(_ context.Context, r provider.Request) (*provider.Response, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	now := c.clock.Now()
	if now.Before(c.holdEnd) {
		c.inHold++
	}
	c.attempts[r.Prompt]++
	if c.refusals < 0 || c.attempts[r.Prompt] <= c.refusals {
		c.holdEnd = now.Add(time.Second)
		return nil, &provider.Error{Class: provider.ClassRateLimited, Message: "come back later", RetryAt: c.holdEnd}
	}
	return &provider.Response{Text: "ok", InputTokens: 1, OutputTokens: 1}, nil
}

// runThroughHolds steps the fake clock a second at a time until the
// collector has n results.
func runThroughHolds(t *testing.T, fc *clocktesting.FakeClock, col *collector, n int) []Result {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		got := col.count()
		if got >= n {
			return col.wait(t, time.Second)
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d results of %d", got, n)
		}
		fc.Step(time.Second)
		time.Sleep(2 * time.Millisecond)
	}
}

// TestComeBackLaterSpendsNoRetry: a 429 that says when to come back holds
// the provider and costs the item no retry: with maxRetries 1 and five
// such answers per item, every item still succeeds, and nothing is sent
// inside a hold.
func TestComeBackLaterSpendsNoRetry(t *testing.T) {
	fc := clocktesting.NewFakeClock(time.Date(2026, 12, 6, 9, 0, 0, 0, time.UTC))
	client := &comeBackLater{clock: fc, refusals: 5, attempts: map[string]int{}}
	d, _ := New(Config{Name: "p", Client: client, MaxRetries: 1, Limits: ratewindow.Config{MaxConcurrency: 1}}, nil, fc, logr.Discard(), nil)
	col := newCollector(4)
	d.Submit(Batch{Key: "ns/b", Namespace: "ns", Size: 4, Items: items("x", 4), OnResult: col.add})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go d.Run(ctx)
	for _, r := range runThroughHolds(t, fc, col, 4) {
		if !r.Succeeded || r.Attempts != 6 {
			t.Errorf("item %s: succeeded %v after %d attempts (%s), want success at the sixth", r.ID, r.Succeeded, r.Attempts, r.ErrorClass)
		}
	}
	if client.inHold != 0 {
		t.Fatalf("%d calls arrived inside a hold the provider asked for", client.inHold)
	}
}

// TestRateLimitedWaitIsBounded: past maxRateLimitedWait, a provider that
// keeps saying "later" spends the item's retries, so the item fails
// RateLimited instead of waiting for ever.
func TestRateLimitedWaitIsBounded(t *testing.T) {
	fc := clocktesting.NewFakeClock(time.Date(2026, 12, 6, 9, 0, 0, 0, time.UTC))
	client := &comeBackLater{clock: fc, refusals: -1, attempts: map[string]int{}}
	d, _ := New(Config{Name: "p", Client: client, MaxRetries: 2, MaxRateLimitedWait: 10 * time.Second,
		Limits: ratewindow.Config{MaxConcurrency: 1}}, nil, fc, logr.Discard(), nil)
	col := newCollector(1)
	d.Submit(Batch{Key: "ns/b", Namespace: "ns", Size: 1, Items: items("x", 1), OnResult: col.add})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go d.Run(ctx)
	r := runThroughHolds(t, fc, col, 1)[0]
	if r.Succeeded || r.ErrorClass != string(provider.ClassRateLimited) {
		t.Fatalf("result %+v, want failed RateLimited", r)
	}
	// About ten seconds of one-second waits, then the two retries.
	if r.Attempts < 10 || r.Attempts > 14 {
		t.Fatalf("%d attempts, want the waits of ten seconds and then maxRetries", r.Attempts)
	}
}

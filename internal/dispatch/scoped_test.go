package dispatch

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr"
	clocktesting "k8s.io/utils/clock/testing"

	"github.com/llmquota/llmquota/internal/emulator"
	"github.com/llmquota/llmquota/internal/provider"
	"github.com/llmquota/llmquota/internal/ratewindow"
)

func perMinute(n int64) *ratewindow.Config {
	return &ratewindow.Config{Windows: []ratewindow.Window{{Name: "minute", Limit: n, Period: time.Minute}}}
}

// sentFor counts the calls a stub client got for a batch's items (items
// prompts are "prompt <prefix> <i>").
func sentFor(s *stubClient, prefix string) int {
	n := 0
	for _, p := range s.prompts() {
		if strings.HasPrefix(p, "prompt "+prefix+" ") {
			n++
		}
	}
	return n
}

// TestNamespaceLimitsHoldOnlyTheirNamespace: a namespace with 5 calls a
// minute of its own sends 5 and waits, named in its batch's progress with
// when its window frees, while another namespace sends all it has under
// the provider's limits; a minute later it sends 5 more.
func TestNamespaceLimitsHoldOnlyTheirNamespace(t *testing.T) {
	t0 := time.Date(2026, 12, 7, 9, 0, 0, 0, time.UTC)
	fc := clocktesting.NewFakeClock(t0)
	stub := &stubClient{}
	d, err := New(Config{Name: "p", Client: stub, Limits: minuteLimit(100, 10),
		Shares: Shares{Limits: map[string]*ratewindow.Config{"team-a": perMinute(5)}}}, nil, fc, logr.Discard(), nil)
	if err != nil {
		t.Fatal(err)
	}
	a, b := newCollector(10), newCollector(20)
	d.Submit(Batch{Key: "team-a/x", Namespace: "team-a", Size: 20, Items: items("a", 20), OnResult: a.add})
	d.Submit(Batch{Key: "team-b/y", Namespace: "team-b", Size: 20, Items: items("b", 20), OnResult: b.add})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go d.Run(ctx)

	b.wait(t, 10*time.Second)
	a.settled(t, 5)
	p, _ := d.Progress("team-a/x")
	if p.Limit.Reason != ratewindow.ReasonWindow || p.Limit.Window != NamespaceLimitWindow+"minute" || !p.Limit.RetryAt.Equal(t0.Add(time.Minute)) {
		t.Fatalf("team-a is held by %+v, want its own minute window until %v", p.Limit, t0.Add(time.Minute))
	}
	if n := sentFor(stub, "a"); n != 5 {
		t.Fatalf("team-a sent %d calls in its minute of 5", n)
	}
	if q, _ := d.Progress("team-b/y"); !q.Limit.Allowed {
		t.Fatalf("team-b, done, shows a hold: %+v", q.Limit)
	}

	fc.Step(time.Minute)
	d.poke()
	a.settled(t, 10)
	if n := sentFor(stub, "a"); n != 10 {
		t.Fatalf("team-a sent %d calls after its window freed, want 10", n)
	}
}

// gatedClient holds every call until release is closed, counting the
// calls in flight by prompt prefix.
type gatedClient struct {
	release  chan struct{}
	mu       sync.Mutex
	inFlight map[string]int
}

func (g *gatedClient) Generate(ctx context.Context, r provider.Request) (*provider.Response, error) {
	prefix := strings.Fields(r.Prompt)[1]
	g.mu.Lock()
	g.inFlight[prefix]++
	g.mu.Unlock()
	select {
	case <-g.release:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	return &provider.Response{Text: "ok", InputTokens: 1, OutputTokens: 1}, nil
}

func (g *gatedClient) flying(prefix string) int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.inFlight[prefix]
}

// TestNamespaceConcurrencyLimit: a namespace allowed one call at a time
// has one in flight while another namespace has all of its in flight.
func TestNamespaceConcurrencyLimit(t *testing.T) {
	client := &gatedClient{release: make(chan struct{}), inFlight: map[string]int{}}
	d := start(t, Config{Name: "p", Client: client, Limits: ratewindow.Config{MaxConcurrency: 10},
		Shares: Shares{Limits: map[string]*ratewindow.Config{"team-a": {MaxConcurrency: 1}}}})
	a, b := newCollector(3), newCollector(3)
	d.Submit(Batch{Key: "team-a/x", Namespace: "team-a", Size: 3, Items: items("a", 3), OnResult: a.add})
	d.Submit(Batch{Key: "team-b/y", Namespace: "team-b", Size: 3, Items: items("b", 3), OnResult: b.add})
	deadline := time.Now().Add(10 * time.Second)
	for {
		p, _ := d.Progress("team-a/x")
		if client.flying("b") == 3 && p.Limit.Reason == ratewindow.ReasonConcurrency {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("team-b has %d calls in flight, team-a is held by %+v; want 3 and its concurrency", client.flying("b"), p.Limit)
		}
		time.Sleep(5 * time.Millisecond)
	}
	if n := client.flying("a"); n != 1 {
		t.Fatalf("team-a has %d calls in flight under a concurrency of 1", n)
	}
	close(client.release)
	a.wait(t, 10*time.Second)
	b.wait(t, 10*time.Second)
}

// TestNamespaceLimitsRefuseGatewayCallsAtOnce: a gateway call over its
// namespace's own window is refused at once with when that window frees
// (it does not wait in the lane, where it would hold others back); a call
// from another namespace is granted.
func TestNamespaceLimitsRefuseGatewayCallsAtOnce(t *testing.T) {
	t0 := time.Date(2026, 12, 7, 9, 0, 0, 0, time.UTC)
	d, err := New(Config{Name: "p", Client: &stubClient{}, Limits: minuteLimit(100, 10),
		Shares: Shares{DefaultLimits: perMinute(2)}}, nil, clocktesting.NewFakeClock(t0), logr.Discard(), nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for i := range 2 {
		if g, dec, _ := d.Acquire(ctx, Ask{Namespace: "team-a", MaxTokens: 16, MaxWait: time.Hour}); g == nil {
			t.Fatalf("call %d refused: %+v", i, dec)
		} else {
			g.Done(&provider.Response{InputTokens: 1, OutputTokens: 1}, nil)
		}
	}
	g, dec, _ := d.Acquire(ctx, Ask{Namespace: "team-a", MaxTokens: 16, MaxWait: time.Hour})
	if g != nil || dec.Reason != ratewindow.ReasonWindow || dec.Window != NamespaceLimitWindow+"minute" || !dec.RetryAt.Equal(t0.Add(time.Minute)) {
		t.Fatalf("third call of team-a: grant %v, %+v; want refused by its own minute until %v", g != nil, dec, t0.Add(time.Minute))
	}
	if g, dec, _ := d.Acquire(ctx, Ask{Namespace: "team-b", MaxTokens: 16}); g == nil {
		t.Fatalf("team-b refused: %+v", dec)
	}
}

// TestModelLimitsHoldOnlyTheirModel: a model with 3 calls a minute of its
// own, under the provider's 100, sends 3 and waits, named in its batch's
// progress, while a batch on the default model sends all it has; a
// gateway call to the full model is refused at once, one to the default
// model is granted.
func TestModelLimitsHoldOnlyTheirModel(t *testing.T) {
	t0 := time.Date(2026, 12, 7, 9, 0, 0, 0, time.UTC)
	fc := clocktesting.NewFakeClock(t0)
	stub := &stubClient{}
	d, err := New(Config{Name: "p", Client: stub, DefaultModel: "flash", Limits: minuteLimit(100, 10),
		ModelLimits: map[string]*ratewindow.Config{"pro": perMinute(3)}}, nil, fc, logr.Discard(), nil)
	if err != nil {
		t.Fatal(err)
	}
	pro, flash := newCollector(3), newCollector(6)
	d.Submit(Batch{Key: "ns/pro", Namespace: "ns", Size: 6, Items: items("p", 6), Params: Params{Model: "pro"}, OnResult: pro.add})
	d.Submit(Batch{Key: "ns/flash", Namespace: "ns", Size: 6, Items: items("f", 6), OnResult: flash.add})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go d.Run(ctx)

	flash.wait(t, 10*time.Second)
	pro.settled(t, 3)
	stepped(t, d)
	p, _ := d.Progress("ns/pro")
	frees := t0.Add(time.Minute + guard(time.Minute)) // a model's limits are the provider's: guarded
	if p.Limit.Window != ModelLimitWindow+"minute" || !p.Limit.RetryAt.Equal(frees) || p.Queued != 3 {
		t.Fatalf("the pro batch: %+v, %d queued; want held by its model's minute until %v with 3 queued", p.Limit, p.Queued, frees)
	}
	if n := sentFor(stub, "p"); n != 3 {
		t.Fatalf("%d calls to pro in its minute of 3", n)
	}
	if g, dec, _ := d.Acquire(ctx, Ask{Namespace: "ns", Model: "pro", MaxTokens: 16, MaxWait: time.Hour}); g != nil || dec.Window != ModelLimitWindow+"minute" {
		t.Fatalf("a gateway call to pro: granted %v, %+v; want refused by pro's minute", g != nil, dec)
	}
	if g, dec, _ := d.Acquire(ctx, Ask{Namespace: "ns", MaxTokens: 16}); g == nil {
		t.Fatalf("a gateway call to the default model refused: %+v", dec)
	}
}

// TestOutputTokensPerMinuteHoldCalls: a provider that limits output tokens
// apart (Anthropic's OTPM) is charged each call's output cap: with 100
// output tokens a minute and a cap of 40, two calls go in a minute and the
// third waits for the window, which says so; input does not count there.
func TestOutputTokensPerMinuteHoldCalls(t *testing.T) {
	t0 := time.Date(2026, 12, 7, 9, 0, 0, 0, time.UTC)
	fc := clocktesting.NewFakeClock(t0)
	stub := &stubClient{}
	lim := minuteLimit(100, 10)
	lim.TokenWindows = []ratewindow.TokenWindow{{Window: ratewindow.Window{Name: "output", Limit: 100, Period: time.Minute}, Kind: ratewindow.TokensOutput}}
	d, err := New(Config{Name: "p", Client: stub, DefaultModel: "m", Limits: lim}, nil, fc, logr.Discard(), nil)
	if err != nil {
		t.Fatal(err)
	}
	results := newCollector(4)
	long := strings.Repeat("a long prompt ", 100) // 350 input tokens by the estimate: no input window, no hold
	its := items("o", 4)
	for i := range its {
		its[i].Prompt += long
	}
	d.Submit(Batch{Key: "ns/out", Namespace: "ns", Size: 4, Items: its, Params: Params{MaxTokens: 40}, OnResult: results.add})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go d.Run(ctx)

	results.settled(t, 2)
	stepped(t, d)
	p, _ := d.Progress("ns/out")
	frees := t0.Add(time.Minute + guard(time.Minute)) // a token window is guarded as a request window is
	if p.Limit.Reason != ratewindow.ReasonTokens || p.Limit.Window != "output" || !p.Limit.RetryAt.Equal(frees) || sentFor(stub, "o") != 2 {
		t.Fatalf("after 2 calls: %+v, %d sent; want held by the output window until %v", p.Limit, sentFor(stub, "o"), frees)
	}
	fc.Step(time.Minute + guard(time.Minute))
	results.wait(t, 10*time.Second)
	if n := sentFor(stub, "o"); n != 4 {
		t.Fatalf("%d sent after the window freed, want 4", n)
	}
}

// A window of output tokens alone charges the whole cap a call is sent
// with, as Anthropic counts OTPM from max_tokens when the call starts: with
// a cap of 1000 and 2500 output tokens a minute, two calls a minute, where
// charging typicalOutput (256) would let nine start and the provider
// refuse most of them.
func TestOutputWindowChargesTheWholeCap(t *testing.T) {
	t0 := time.Date(2026, 12, 7, 9, 0, 0, 0, time.UTC)
	fc := clocktesting.NewFakeClock(t0)
	stub := &stubClient{}
	lim := minuteLimit(100, 10)
	lim.TokenWindows = []ratewindow.TokenWindow{{Window: ratewindow.Window{Name: "output", Limit: 2500, Period: time.Minute}, Kind: ratewindow.TokensOutput}}
	d, err := New(Config{Name: "p", Client: stub, DefaultModel: "m", Limits: lim}, nil, fc, logr.Discard(), nil)
	if err != nil {
		t.Fatal(err)
	}
	results := newCollector(5)
	d.Submit(Batch{Key: "ns/cap", Namespace: "ns", Size: 5, Items: items("c", 5), Params: Params{MaxTokens: 1000}, OnResult: results.add})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go d.Run(ctx)

	results.settled(t, 2)
	stepped(t, d)
	p, _ := d.Progress("ns/cap")
	if p.Limit.Reason != ratewindow.ReasonTokens || p.Limit.Window != "output" || sentFor(stub, "c") != 2 {
		t.Fatalf("%d sent, limit %+v; want 2 sent and the output window holding the third", sentFor(stub, "c"), p.Limit)
	}
	fc.Step(time.Minute + guard(time.Minute))
	results.settled(t, 4)
	stepped(t, d)
	if n := sentFor(stub, "c"); n != 4 {
		t.Fatalf("%d sent in two minutes, want 4", n)
	}
}

// TestOutputWindowHoldsAtTheServer: a provider that counts output tokens
// from max_tokens when a call arrives (the emulator, as Anthropic counts
// OTPM), with calls of a 1,000-token cap against 2,500 a period and room
// for eight in flight: the server refuses none for its quota. Charged at
// most 256 at admission, as before, eight start at once and the server
// refuses the third.
func TestOutputWindowHoldsAtTheServer(t *testing.T) {
	const period = 2 * time.Second
	emu, client := emulatedAs(t, emulator.Config{OutputTokenLimits: []emulator.TokenLimit{{Tokens: 2500, Period: period}}, Latency: 300 * time.Millisecond}, provider.Anthropic)
	lim := ratewindow.Config{MaxConcurrency: 8,
		TokenWindows: []ratewindow.TokenWindow{{Window: ratewindow.Window{Name: "output", Limit: 2500, Period: period}, Kind: ratewindow.TokensOutput}}}
	d := start(t, Config{Name: "p", Client: client, DefaultModel: "claude-test", Limits: lim})
	col := newCollector(8)
	d.Submit(Batch{Key: "ns/out", Namespace: "ns", Size: 8, Items: items("o", 8), Params: Params{MaxTokens: 1000}, OnResult: col.add})
	col.wait(t, time.Minute)
	if tally := emulator.Count(emu.Log()); tally.QuotaRefusals != 0 || tally.Arrivals != 8 {
		t.Fatalf("the server saw %+v; want 8 arrivals and no quota refusal", tally)
	}
}

// TestTokensWindowHoldsAtTheServer: a provider that counts a call's prompt
// and max_tokens against its tokens per minute when the call arrives (the
// emulator, as OpenAI counts TPM), with 1,000-token caps against 3,000 a
// period: charged the whole cap (CapCountedAtStart), the server refuses
// none for its quota; charged the typical 256, eight start at once and the
// server refuses the third.
func TestTokensWindowHoldsAtTheServer(t *testing.T) {
	for _, counted := range []bool{true, false} {
		const period = 2 * time.Second
		emu, client := emulatedAs(t, emulator.Config{TokenLimits: []emulator.TokenLimit{{Tokens: 3000, Period: period}}, Latency: 300 * time.Millisecond}, provider.OpenAI)
		lim := ratewindow.Config{MaxConcurrency: 8, Tokens: &ratewindow.Window{Name: "tokens", Limit: 3000, Period: period}}
		d := start(t, Config{Name: "p", Client: client, DefaultModel: "gpt-test", Limits: lim, CapCountedAtStart: counted})
		col := newCollector(6)
		d.Submit(Batch{Key: "ns/tpm", Namespace: "ns", Size: 6, Items: items("t", 6), Params: Params{MaxTokens: 1000}, OnResult: col.add})
		col.wait(t, time.Minute)
		refused := emulator.Count(emu.Log()).QuotaRefusals
		if counted && refused != 0 {
			t.Fatalf("charged the whole cap: the server refused %d calls for its quota, want 0", refused)
		}
		if !counted && refused == 0 {
			t.Fatal("charged 256 a call: the server refused none, so this test cannot tell the charges apart")
		}
	}
}

// TestInputWindowHoldsAtTheServer: a provider that counts the prompts'
// tokens against a window (the emulator, as Gemini counts its TPM and
// Anthropic its ITPM), with prompts of about 100 tokens against 250 a
// period and room for eight in flight: the dispatcher's estimate (a token
// per four characters, plus one) is never under the server's count, and
// the server refuses none for its quota.
func TestInputWindowHoldsAtTheServer(t *testing.T) {
	// A window of 5 s has a guard of 100 ms against the delay between our
	// admission and the server's stamp, which a loaded machine stretches.
	const period = 5 * time.Second
	emu, client := emulatedAs(t, emulator.Config{InputTokenLimits: []emulator.TokenLimit{{Tokens: 250, Period: period}}, Latency: 100 * time.Millisecond}, provider.Gemini)
	lim := ratewindow.Config{MaxConcurrency: 8,
		TokenWindows: []ratewindow.TokenWindow{{Window: ratewindow.Window{Name: "input", Limit: 250, Period: period}, Kind: ratewindow.TokensInput}}}
	d := start(t, Config{Name: "p", Client: client, DefaultModel: "gemini-test", Limits: lim})
	its := items("i", 4)
	for i := range its {
		its[i].Prompt += strings.Repeat(" forty characters of prompt text, padded", 10)
	}
	col := newCollector(4)
	d.Submit(Batch{Key: "ns/in", Namespace: "ns", Size: 4, Items: its, OnResult: col.add})
	col.wait(t, time.Minute)
	if tally := emulator.Count(emu.Log()); tally.QuotaRefusals != 0 || tally.Arrivals != 4 {
		t.Fatalf("the server saw %+v; want 4 arrivals and no quota refusal", tally)
	}
}

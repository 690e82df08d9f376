package dispatch

import (
	"context"
	"fmt"
	"runtime"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"k8s.io/utils/clock"
	clocktesting "k8s.io/utils/clock/testing"

	"github.com/llmquota/llmquota/internal/emulator"
	"github.com/llmquota/llmquota/internal/provider"
	"github.com/llmquota/llmquota/internal/ratewindow"
)

// collector gathers results in arrival order.
type collector struct {
	mu      sync.Mutex
	results []Result
	done    chan struct{}
	want    int
}

func newCollector(want int) *collector { return &collector{done: make(chan struct{}), want: want} }

func (c *collector) add(r Result) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.results = append(c.results, r)
	if len(c.results) == c.want {
		close(c.done)
	}
}

func (c *collector) wait(t *testing.T, d time.Duration) []Result {
	t.Helper()
	select {
	case <-c.done:
	case <-time.After(d):
		c.mu.Lock()
		defer c.mu.Unlock()
		t.Fatalf("only %d of %d results after %v", len(c.results), c.want, d)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]Result(nil), c.results...)
}

// count is how many results arrived.
func (c *collector) count() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.results)
}

// settled waits until n results arrived: their group is then finished and
// the next one's pacing computed from the clock as it was.
func (c *collector) settled(t *testing.T, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		got := c.count()
		if got >= n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("only %d of %d results", got, n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func items(prefix string, n int) []Item {
	out := make([]Item, n)
	for i := range out {
		out[i] = Item{ID: fmt.Sprintf("%s-%03d", prefix, i), Prompt: fmt.Sprintf("prompt %s %d", prefix, i)}
	}
	return out
}

// emulated returns a Gemini client of an emulator serving over loopback.
func emulated(tb testing.TB, cfg emulator.Config) (*emulator.Server, provider.Client) {
	tb.Helper()
	return emulatedAs(tb, cfg, provider.Gemini)
}

// emulatedAs is emulated with a client of the dialect typ.
func emulatedAs(tb testing.TB, cfg emulator.Config, typ provider.Type) (*emulator.Server, provider.Client) {
	tb.Helper()
	emu := emulator.New(cfg)
	srv := emulator.NewTestServer(emu)
	tb.Cleanup(srv.Close)
	endpoint := srv.URL
	if typ == provider.OpenAI {
		endpoint += "/v1" // OpenAI's base URL names its version
	}
	c, err := provider.New(provider.Config{Type: typ, Endpoint: endpoint, APIKey: "k"})
	if err != nil {
		tb.Fatal(err)
	}
	return emu, c
}

func start(t *testing.T, cfg Config) *Dispatcher { return startWith(t, cfg, nil) }

// startWith runs a dispatcher that finds other providers through lookup.
func startWith(t *testing.T, cfg Config, lookup Lookup) *Dispatcher {
	t.Helper()
	d, err := New(cfg, nil, clock.RealClock{}, logr.Discard(), lookup)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { d.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	return d
}

// cloudFallback runs a provider "cloud" on an emulator and returns a
// Lookup that finds it.
func cloudFallback(t *testing.T) Lookup {
	_, c := emulated(t, emulator.Config{})
	fb := start(t, Config{Name: "cloud", Client: c, DefaultModel: "big"})
	return func(name string) *Dispatcher {
		if name == "cloud" {
			return fb
		}
		return nil
	}
}

// TestRunsUnderQuotaOverHTTP: every item gets a result, and the server saw
// no window exceeded, while the quota was the bottleneck.
func TestRunsUnderQuotaOverHTTP(t *testing.T) {
	limits := []emulator.Limit{{Requests: 8, Period: time.Second}}
	emu, client := emulated(t, emulator.Config{Limits: limits})
	d := start(t, Config{Name: "p", Client: client, DefaultModel: "m", MaxRetries: 3,
		Limits: ratewindow.Config{Windows: []ratewindow.Window{{Name: "second", Limit: 8, Period: time.Second}}, MaxConcurrency: 4}})
	col := newCollector(30)
	d.Submit(Batch{Key: "ns/b", Namespace: "ns", Size: 5, Items: items("a", 30), OnResult: col.add})
	for _, r := range col.wait(t, 30*time.Second) {
		if !r.Succeeded || r.Provider != "p" {
			t.Fatalf("result %+v", r)
		}
	}
	log := emu.Log()
	if refused := len(log) - 30; refused > 2 {
		t.Fatalf("server refused %d requests: the client-side windows do not match the server's", refused)
	}
	if err := emulator.CheckWindows(log, limits); err != nil {
		t.Fatal(err)
	}
}

// TestFaultsRetriedAndBounded: under injected 429s (30%, each with
// Retry-After), 5xx, resets and malformed bodies every item ends with a
// result, the attempts that failed for other reasons stay within
// maxRetries+1, no item fails RateLimited (a 429 that says when to come
// back spends no retry), and nothing is sent during a Retry-After hold.
func TestFaultsRetriedAndBounded(t *testing.T) {
	emu, client := emulated(t, emulator.Config{Seed: 3, RetryAfter: time.Second,
		Faults: emulator.FaultRates{RateLimit: 0.3, ServerError: 0.1, Reset: 0.05, Malformed: 0.05}})
	d := start(t, Config{Name: "p", Client: client, DefaultModel: "m", MaxRetries: 3,
		Limits: ratewindow.Config{MaxConcurrency: 1, InitialBackoff: 10 * time.Millisecond, MaxBackoff: 50 * time.Millisecond}})
	col := newCollector(40)
	d.Submit(Batch{Key: "ns/b", Namespace: "ns", Size: 40, Items: items("a", 40), OnResult: col.add})
	res := col.wait(t, 60*time.Second)
	log := emu.Log()
	told := 0 // 429s, each with a Retry-After: they spend no retry
	for _, rec := range log {
		if rec.Status == 429 {
			told++
		}
	}
	failed, attempts, retried := 0, 0, 0
	for _, r := range res {
		if r.Attempts < 1 || r.Attempts > 4+told {
			t.Fatalf("item %s took %d attempts, want 1..4 plus the 429s", r.ID, r.Attempts)
		}
		if r.ErrorClass == string(provider.ClassRateLimited) {
			t.Fatalf("item %s failed RateLimited although every 429 said when to come back", r.ID)
		}
		attempts += r.Attempts
		if r.Attempts > 1 {
			retried++
		}
		if !r.Succeeded {
			failed++
			if r.ErrorClass == "" || r.ErrorMessage == "" {
				t.Fatalf("failed item without a reason: %+v", r)
			}
		}
	}
	// The faults fired, each kind, and were retried: every attempt is one
	// arrival at the server, no more and no less.
	fired := map[emulator.Fault]int{}
	for _, rec := range log {
		fired[rec.Fault]++
	}
	for _, f := range []emulator.Fault{emulator.FaultRateLimit, emulator.FaultServerError, emulator.FaultReset, emulator.FaultMalformed} {
		if fired[f] == 0 {
			t.Errorf("no %q fault fired in %d requests: the test does not exercise it", f, len(log))
		}
	}
	if retried == 0 || attempts != len(log) {
		t.Fatalf("%d items retried, %d attempts reported for %d arrivals at the server", retried, attempts, len(log))
	}
	for i, rec := range log {
		if rec.Status != 429 {
			continue
		}
		for _, next := range log[i+1:] {
			if next.Time.Before(rec.Time.Add(time.Second)) {
				t.Fatalf("request at %v sent during the Retry-After hold that began at %v", next.Time, rec.Time)
			}
			break
		}
	}
	t.Logf("%d requests for 40 items, %d failed after retries", len(log), failed)
}

// TestFairAcrossNamespaces: a namespace with 10 items is not starved by one
// with 100 sharing the provider.
func TestFairAcrossNamespaces(t *testing.T) {
	_, client := emulated(t, emulator.Config{})
	d := start(t, Config{Name: "p", Client: client, DefaultModel: "m", Limits: ratewindow.Config{MaxConcurrency: 1}})
	col := newCollector(110)
	d.Submit(Batch{Key: "big/b", Namespace: "big", Size: 100, Items: items("big", 100), OnResult: col.add})
	d.Submit(Batch{Key: "small/b", Namespace: "small", Size: 10, Items: items("small", 10), OnResult: col.add})
	res := col.wait(t, 60*time.Second)
	lastSmall := 0
	for i, r := range res {
		if r.ID[:5] == "small" {
			lastSmall = i
		}
	}
	if lastSmall > 25 {
		t.Fatalf("the small namespace's last item finished at position %d of 110: starved", lastSmall)
	}
}

// TestFairWhileQuotaRefuses: asking while every slot is taken must not
// cost a batch its turn (a bug the envtest fairness spec caught: with one
// slot the loop asked twice per call and the cursor skipped the small
// batch every time).
func TestFairWhileQuotaRefuses(t *testing.T) {
	_, client := emulated(t, emulator.Config{Latency: 20 * time.Millisecond})
	d := start(t, Config{Name: "p", Client: client, DefaultModel: "m", Limits: ratewindow.Config{MaxConcurrency: 1}})
	col := newCollector(66)
	d.Submit(Batch{Key: "b/big", Namespace: "b", Size: 60, Items: items("big", 60), OnResult: col.add})
	d.Submit(Batch{Key: "a/small", Namespace: "a", Size: 6, Items: items("small", 6), OnResult: col.add})
	lastSmall := 0
	for i, r := range col.wait(t, 30*time.Second) {
		if r.ID[:5] == "small" {
			lastSmall = i
		}
	}
	if lastSmall > 13 {
		t.Fatalf("the small batch's last item finished at position %d: its turns were skipped", lastSmall)
	}
}

// TestPriorityFirst: a higher-priority batch is served before a lower one.
func TestPriorityFirst(t *testing.T) {
	fc := clocktesting.NewFakeClock(time.Date(2026, 11, 26, 9, 0, 0, 0, time.UTC))
	stub := &stubClient{}
	d, _ := New(Config{Name: "p", Client: stub, Limits: ratewindow.Config{MaxConcurrency: 1}}, nil, fc, logr.Discard(), nil)
	col := newCollector(6)
	d.Submit(Batch{Key: "a/low", Namespace: "a", Priority: 0, Size: 3, Items: items("low", 3), OnResult: col.add})
	d.Submit(Batch{Key: "b/high", Namespace: "b", Priority: 10, Size: 3, Items: items("high", 3), OnResult: col.add})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go d.Run(ctx)
	res := col.wait(t, 10*time.Second)
	for i, r := range res[:3] {
		if r.ID[:4] != "high" {
			t.Fatalf("result %d is %s: the low-priority batch went first", i, r.ID)
		}
	}
}

// stepped waits (real time) until the loop made a whole step after the
// call: whatever it would do with the state as it is now, it has done. A
// check that nothing happened then proves the loop had its chance, where a
// sleep only hopes so.
func stepped(t *testing.T, d *Dispatcher) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for range 2 { // the first may be a step that began before the call
		n := d.steps.Load()
		d.poke()
		for d.steps.Load() == n {
			if time.Now().After(deadline) {
				t.Fatal("the dispatcher's loop made no step")
			}
			time.Sleep(time.Millisecond)
		}
	}
}

// waitForCalls waits (real time) until the stub has answered want calls.
func waitForCalls(t *testing.T, stub *stubClient, want int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for stub.count() != want {
		if time.Now().After(deadline) {
			t.Fatalf("%d calls, want %d", stub.count(), want)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestBatchSizeAndDelay: on a fake clock, a batch sends Size items, waits
// for them and Delay, then the next Size.
func TestBatchSizeAndDelay(t *testing.T) {
	fc := clocktesting.NewFakeClock(time.Date(2026, 11, 26, 9, 0, 0, 0, time.UTC))
	stub := &stubClient{}
	d, _ := New(Config{Name: "p", Client: stub, Limits: ratewindow.Config{MaxConcurrency: 10}}, nil, fc, logr.Discard(), nil)
	col := newCollector(7)
	d.Submit(Batch{Key: "ns/b", Namespace: "ns", Size: 3, Delay: 2 * time.Second, Items: items("x", 7), OnResult: col.add})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go d.Run(ctx)

	waitCalls := func(want int) { t.Helper(); waitForCalls(t, stub, want) }
	waitCalls(3)
	col.settled(t, 3)
	fc.Step(time.Second) // inside the delay: nothing new
	stepped(t, d)
	if p, _ := d.Progress("ns/b"); stub.count() != 3 || p.Queued != 4 {
		t.Fatalf("%d calls and %d queued 1s into a 2s batch delay, want 3 and 4", stub.count(), p.Queued)
	}
	fc.Step(time.Second)
	waitCalls(6)
	col.settled(t, 6)
	fc.Step(2 * time.Second)
	waitCalls(7)
	col.wait(t, 10*time.Second)
	if p, _ := d.Progress("ns/b"); p.GroupsDone != 3 {
		t.Fatalf("groups done %d, want 3", p.GroupsDone)
	}
}

// TestQueueWait: on a fake clock, OnSend sees the wait a full window
// imposes, and none for the batch's own pacing (batchDelay is not a wait).
func TestQueueWait(t *testing.T) {
	fc := clocktesting.NewFakeClock(time.Date(2026, 11, 27, 9, 0, 0, 0, time.UTC))
	stub := &stubClient{}
	var mu sync.Mutex
	var waits []time.Duration
	onSend := func(w time.Duration) { mu.Lock(); waits = append(waits, w); mu.Unlock() }
	limits := ratewindow.Config{Windows: []ratewindow.Window{{Name: "minute", Limit: 2, Period: time.Minute}}, MaxConcurrency: 10}
	d, _ := New(Config{Name: "p", Client: stub, Limits: limits, OnSend: onSend}, nil, fc, logr.Discard(), nil)
	col := newCollector(5)
	// Groups of 2 with a 10s delay: {0,1} go at once; {2,3} may go at
	// 09:00:10 but the minute window holds them until the clock passes
	// 09:01:00 (stepped to 09:01:01); {4} likewise a minute later.
	d.Submit(Batch{Key: "ns/b", Namespace: "ns", Size: 2, Delay: 10 * time.Second, Items: items("x", 5), OnResult: col.add})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go d.Run(ctx)
	// Each group's pacing starts when its last result arrives; the steps
	// after that need no pause: a timer the dispatcher sets late fires on
	// the next step, and what it measures is from the group's opening.
	col.settled(t, 2)
	fc.Step(10 * time.Second) // the delay passes: the window is full until 09:01:00
	fc.Step(51 * time.Second) // past 09:01:00 and the window's safety margin
	col.settled(t, 4)
	fc.Step(10 * time.Second)
	fc.Step(51 * time.Second)
	col.wait(t, 10*time.Second)
	mu.Lock()
	defer mu.Unlock()
	want := []time.Duration{0, 0, 51 * time.Second, 51 * time.Second, 51 * time.Second}
	if !slices.Equal(waits, want) {
		t.Fatalf("waits %v, want %v: the delay counted as waiting, or the window's hold did not", waits, want)
	}
}

// TestFallbackForLongPrompts sends prompts over the length limit to the fallback.
func TestFallbackForLongPrompts(t *testing.T) {
	_, primaryClient := emulated(t, emulator.Config{})
	primary := startWith(t, Config{Name: "local", Client: primaryClient, DefaultModel: "small", MaxPromptLength: 20, Fallback: "cloud"}, cloudFallback(t))
	col := newCollector(2)
	primary.Submit(Batch{Key: "ns/b", Namespace: "ns", Size: 2, Params: Params{Model: "small"}, OnResult: col.add,
		Items: []Item{{ID: "short", Prompt: "hi"}, {ID: "long", Prompt: "a prompt well over twenty characters"}}})
	for _, r := range col.wait(t, 10*time.Second) {
		want := map[string]string{"short": "local", "long": "cloud"}[r.ID]
		if r.Provider != want || !r.Succeeded {
			t.Fatalf("item %s served by %s (%+v), want %s", r.ID, r.Provider, r, want)
		}
	}
}

func TestETA(t *testing.T) {
	now := time.Date(2026, 11, 26, 9, 0, 0, 0, time.UTC)
	q := ratewindow.Stats{Windows: []ratewindow.WindowStats{{Name: "minute", Used: 8, Limit: 10, Period: time.Minute}}, Next: ratewindow.Decision{Allowed: true}}
	cases := map[string]struct {
		n           int
		interval    time.Duration
		size        int
		delay, want time.Duration
	}{
		"fits the free slots, spaced by the interval": {n: 2, interval: 3 * time.Second, want: 3 * time.Second},
		"needs one more period":                       {n: 12, want: time.Minute},
		"needs three more periods":                    {n: 25, want: 3 * time.Minute},
		"plus the delay between groups":               {n: 25, size: 5, delay: 2 * time.Second, want: 3*time.Minute + 4*2*time.Second},
		"nothing left":                                {n: 0, want: 0},
	}
	for name, c := range cases {
		if got := ETA(now, c.n, q, c.interval, c.size, c.delay).Sub(now); got != c.want {
			t.Errorf("%s: %v, want %v", name, got, c.want)
		}
	}
}

// stubClient answers at once; for fake-clock tests of scheduling only.
type stubClient struct {
	mu   sync.Mutex
	n    int
	sent []string // the prompts, in order
}

func (s *stubClient) Generate(_ context.Context, r provider.Request) (*provider.Response, error) {
	s.mu.Lock()
	s.n++
	s.sent = append(s.sent, r.Prompt)
	s.mu.Unlock()
	return &provider.Response{Text: "ok " + r.Prompt, InputTokens: 1, OutputTokens: 1}, nil
}

func (s *stubClient) prompts() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.sent...)
}

func (s *stubClient) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.n
}

// TestMinIntervalHoldsAtTheServer: the server stamps a request when its
// bytes arrive, a varying delay after we admitted it, so an interval exact
// on our side can be short on the server's. The interval counts from when
// the previous request was written to the connection, and the guard
// covers the rest, so every gap at the server is at least minInterval,
// with a busy goroutine on every core making the delay between admission
// and write as long as a loaded node makes it. The emulator stamps with
// the kernel's receive time (emulator.NewTestServer): the busy goroutines
// hold up its handlers too, and a handler's clock would make a gap short
// that no provider, on machines of its own, would see.
func TestMinIntervalHoldsAtTheServer(t *testing.T) {
	const interval = 50 * time.Millisecond
	busy, stop := runtime.GOMAXPROCS(0), make(chan struct{})
	var spinning sync.WaitGroup
	for range busy {
		spinning.Add(1)
		go func() {
			defer spinning.Done()
			for n := 0; ; n++ {
				if n%1_000_000 == 0 {
					select {
					case <-stop:
						return
					default:
					}
				}
			}
		}()
	}
	defer func() { close(stop); spinning.Wait() }()
	emu, client := emulated(t, emulator.Config{})
	d := start(t, Config{Name: "p", Client: client, DefaultModel: "m",
		Limits: ratewindow.Config{MinInterval: interval, MaxConcurrency: 4}})
	col := newCollector(61)
	d.Submit(Batch{Key: "ns/b", Namespace: "ns", Size: 61, Items: items("a", 61), OnResult: col.add})
	col.wait(t, 60*time.Second)
	if err := emulator.CheckInterval(emu.Log(), interval); err != nil {
		t.Fatal(err)
	}
}

// TestAdjustAppliesPriorityAndSuspend: a priority raised after submission
// reorders the batches, and a suspended batch sends nothing until resumed
// (issue 13, item 1).
func TestAdjustAppliesPriorityAndSuspend(t *testing.T) {
	fc := clocktesting.NewFakeClock(time.Date(2026, 11, 27, 9, 0, 0, 0, time.UTC))
	d, _ := New(Config{Name: "p", Client: &stubClient{}, Limits: ratewindow.Config{MaxConcurrency: 1}}, nil, fc, logr.Discard(), nil)
	order := newCollector(9)
	first, urgent, later := newCollector(3), newCollector(3), newCollector(3)
	both := func(c *collector) func(Result) { return func(r Result) { c.add(r); order.add(r) } }
	d.Submit(Batch{Key: "a/first", Namespace: "a", Size: 3, Items: items("first", 3), OnResult: both(first)})
	d.Submit(Batch{Key: "b/urgent", Namespace: "b", Size: 3, Items: items("urgent", 3), OnResult: both(urgent)})
	d.Submit(Batch{Key: "c/later", Namespace: "c", Size: 3, Items: items("later", 3), OnResult: both(later)})
	d.Adjust("b/urgent", false, 10)
	d.Adjust("c/later", true, 20) // suspended: nothing of it until resumed, whatever its priority
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go d.Run(ctx)
	first.wait(t, 10*time.Second)
	urgent.wait(t, 10*time.Second)
	d.Adjust("c/later", false, 20)
	res := order.wait(t, 10*time.Second)
	for i, r := range res {
		want := []string{"urgent", "first", "later"}[i/3]
		if r.ID[:len(want)] != want {
			t.Fatalf("result %d is %s, want one of %s: order %v", i, r.ID, want, ids(res))
		}
	}
}

func ids(rs []Result) []string {
	out := make([]string, len(rs))
	for i, r := range rs {
		out[i] = r.ID
	}
	return out
}

// TestSentItemsAreReleased: Submit takes the batch's items over (no copy:
// a thousand admitted batches hold their items once), and each sent item's
// slot is cleared, so a prompt is not kept alive by the queue once sent.
func TestSentItemsAreReleased(t *testing.T) {
	_, client := emulated(t, emulator.Config{})
	d := start(t, Config{Name: "p", Client: client, DefaultModel: "m", Limits: ratewindow.Config{MaxConcurrency: 2}})
	its := items("a", 10)
	col := newCollector(10)
	d.Submit(Batch{Key: "ns/b", Namespace: "ns", Size: 10, Items: its, OnResult: col.add})
	col.wait(t, 30*time.Second)
	for i, it := range its {
		if it != (Item{}) {
			t.Fatalf("item %d still held after it was sent: %+v", i, it)
		}
	}
}

// sends asks next for n sends at now, sending each pick's item as step
// does (without calling anyone), and returns the keys in send order.
func sends(d *Dispatcher, now time.Time, n int) []string {
	var keys []string
	for range n {
		b, _ := d.next(now)
		if b == nil {
			break
		}
		d.fair.charge(b.Namespace, inputEstimate(len(b.queue[0].Prompt)))
		b.take()
		b.inFlight++
		keys = append(keys, b.Key)
	}
	return keys
}

// TestFrontsBeforeFillIns: a namespace's younger batch gets a slot only
// while no namespace's front (its oldest batch with items left) can send,
// so batches of one namespace finish one after another; when every front
// waits for its group's answers, younger batches fill the slots.
func TestFrontsBeforeFillIns(t *testing.T) {
	now := time.Date(2026, 11, 28, 9, 0, 0, 0, time.UTC)
	d, _ := New(Config{Name: "p", Client: &stubClient{}}, nil, clocktesting.NewFakeClock(now), logr.Discard(), nil)
	d.Submit(Batch{Key: "a/first", Namespace: "a", Size: 2, Items: items("a1", 4)})
	d.Submit(Batch{Key: "a/second", Namespace: "a", Size: 2, Items: items("a2", 4)})
	d.Submit(Batch{Key: "b/only", Namespace: "b", Size: 4, Items: items("b", 8)})
	got := sends(d, now, 8)
	// a/first sends its group of 2 and waits; b/only, a front, takes the
	// turns a/second would have had; once b/only waits too, a/second fills in.
	want := []string{"a/first", "b/only", "a/first", "b/only", "b/only", "b/only", "a/second", "a/second"}
	if !slices.Equal(got, want) {
		t.Fatalf("send order %v, want %v", got, want)
	}
	if b, _ := d.next(now); b != nil {
		t.Fatalf("%s sent with every group waiting for its answers", b.Key)
	}
}

// TestFrontIsPerPriorityAndSkipsSuspended: a suspended batch is no front
// (its namespace's next batch is), and a namespace's front is its oldest
// batch of its highest priority.
func TestFrontIsPerPriorityAndSkipsSuspended(t *testing.T) {
	now := time.Date(2026, 11, 28, 9, 0, 0, 0, time.UTC)
	d, _ := New(Config{Name: "p", Client: &stubClient{}}, nil, clocktesting.NewFakeClock(now), logr.Discard(), nil)
	d.Submit(Batch{Key: "a/paused", Namespace: "a", Size: 1, Items: items("p", 2)})
	d.Submit(Batch{Key: "a/low", Namespace: "a", Size: 1, Items: items("l", 2)})
	d.Submit(Batch{Key: "a/high", Namespace: "a", Priority: 5, Size: 1, Items: items("h", 2)})
	d.Submit(Batch{Key: "b/low", Namespace: "b", Size: 3, Items: items("b", 3)})
	d.Adjust("a/paused", true, 0)
	got := sends(d, now, 5)
	// a/high goes first and waits; at priority 0, a's front is still
	// a/high (waiting), so b/low's fronts come before a/low fills in.
	want := []string{"a/high", "b/low", "b/low", "b/low", "a/low"}
	if !slices.Equal(got, want) {
		t.Fatalf("send order %v, want %v", got, want)
	}
}

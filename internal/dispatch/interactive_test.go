package dispatch

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-logr/logr"
	clocktesting "k8s.io/utils/clock/testing"

	"github.com/llmquota/llmquota/internal/cost"
	"github.com/llmquota/llmquota/internal/provider"
	"github.com/llmquota/llmquota/internal/ratewindow"
)

func minuteLimit(n int64, concurrency int) ratewindow.Config {
	return ratewindow.Config{Windows: []ratewindow.Window{{Name: "minute", Limit: n, Period: time.Minute}}, MaxConcurrency: concurrency}
}

// waitLane waits (real time) until one Ask waits in the lane.
func waitLane(t *testing.T, d *Dispatcher) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for d.Interactive().Waiting != 1 {
		if time.Now().After(deadline) {
			t.Fatalf("%d Asks waiting, want 1", d.Interactive().Waiting)
		}
		time.Sleep(time.Millisecond)
	}
}

// TestInteractiveAdmitsExactlyTheWindow: 2,000 concurrent calls against 100
// a minute, at one instant: exactly 100 are granted, and every refusal says
// the window frees when the first admission leaves it (its period plus the
// guard), not a guess.
func TestInteractiveAdmitsExactlyTheWindow(t *testing.T) {
	t0 := time.Date(2026, 12, 6, 9, 0, 0, 0, time.UTC)
	var decided [2]atomic.Int64 // refused, granted, as OnInteractive saw them
	onInteractive := func(granted bool) {
		if granted {
			decided[1].Add(1)
		} else {
			decided[0].Add(1)
		}
	}
	d, err := New(Config{Name: "p", Client: &stubClient{}, Limits: minuteLimit(100, 0), OnInteractive: onInteractive},
		nil, clocktesting.NewFakeClock(t0), logr.Discard(), nil)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	granted, refusedAt := 0, map[int64]int{} // by RetryAt in Unix nanoseconds
	for range 2000 {
		wg.Go(func() {
			g, dec, err := d.Acquire(context.Background(), Ask{Namespace: "app", InputChars: 40, MaxTokens: 64})
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err != nil:
				t.Error(err)
			case g != nil:
				granted++
			case dec.Reason != ratewindow.ReasonWindow || dec.Window != "minute":
				t.Errorf("refused by %v %q, want the minute window", dec.Reason, dec.Window)
			default:
				refusedAt[dec.RetryAt.UnixNano()]++
			}
		})
	}
	wg.Wait()
	frees := t0.Add(time.Minute + guard(time.Minute))
	if granted != 100 || refusedAt[frees.UnixNano()] != 1900 || len(refusedAt) != 1 {
		t.Fatalf("granted %d, refusals by retry time %v; want 100 granted and 1,900 refused until %v", granted, refusedAt, frees)
	}
	if s := d.Interactive(); s.Granted != 100 || s.Refused != 1900 || s.Waiting != 0 {
		t.Fatalf("lane stats %+v", s)
	}
	if decided[1].Load() != 100 || decided[0].Load() != 1900 {
		t.Fatalf("OnInteractive saw %d granted and %d refused", decided[1].Load(), decided[0].Load())
	}
}

// TestInteractiveGoesBeforeBatches: with the minute window full of batch
// calls, a waiting interactive call gets the next free slot although the
// batch has items ready. Had the batch taken it, the call's wait (90 s)
// would end before the window frees again, and it would be refused.
func TestInteractiveGoesBeforeBatches(t *testing.T) {
	fc := clocktesting.NewFakeClock(time.Date(2026, 12, 6, 9, 0, 0, 0, time.UTC))
	stub := &stubClient{}
	d, _ := New(Config{Name: "p", Client: stub, Limits: minuteLimit(1, 10)}, nil, fc, logr.Discard(), nil)
	col := newCollector(3)
	d.Submit(Batch{Key: "ns/b", Namespace: "ns", Size: 3, Items: items("x", 3), OnResult: col.add})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go d.Run(ctx)
	waitForCalls(t, stub, 1)
	col.settled(t, 1)

	type answer struct {
		g   *Grant
		dec ratewindow.Decision
	}
	got := make(chan answer, 1)
	go func() {
		g, dec, _ := d.Acquire(ctx, Ask{Namespace: "app", InputChars: 10, MaxTokens: 16, MaxWait: 90 * time.Second})
		got <- answer{g, dec}
	}()
	waitLane(t, d)
	fc.Step(61 * time.Second) // the batch's call leaves the window
	var a answer
	select {
	case a = <-got:
	case <-time.After(10 * time.Second):
		t.Fatal("the interactive call was neither granted nor refused: the lane is not served")
	}
	if a.g == nil {
		t.Fatalf("the interactive call was refused (%v until %v): the batch took the freed slot", a.dec.Reason, a.dec.RetryAt)
	}
	a.g.Done(&provider.Response{Text: "ok", InputTokens: 3, OutputTokens: 4}, nil)
	if n := stub.count(); n != 1 {
		t.Fatalf("the batch made %d calls, want 1: it took the interactive call's slot", n)
	}
	fc.Step(61 * time.Second) // and the batch goes on once no call waits
	waitForCalls(t, stub, 2)
}

// TestInteractiveWaitsForAConcurrencySlot: a call waits for a slot until its
// deadline and is refused then; a slot given back serves the next call.
func TestInteractiveWaitsForAConcurrencySlot(t *testing.T) {
	fc := clocktesting.NewFakeClock(time.Date(2026, 12, 6, 9, 0, 0, 0, time.UTC))
	d, _ := New(Config{Name: "p", Client: &stubClient{}, Limits: ratewindow.Config{MaxConcurrency: 1}}, nil, fc, logr.Discard(), nil)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go d.Run(ctx)
	first, _, _ := d.Acquire(ctx, Ask{MaxTokens: 16})
	if first == nil {
		t.Fatal("the first call was refused")
	}
	got := make(chan ratewindow.Decision, 1)
	go func() {
		g, dec, _ := d.Acquire(ctx, Ask{MaxTokens: 16, MaxWait: 5 * time.Second})
		if g != nil {
			t.Error("granted while the only slot was held")
		}
		got <- dec
	}()
	waitLane(t, d)
	fc.Step(5 * time.Second)
	if dec := <-got; dec.Reason != ratewindow.ReasonConcurrency {
		t.Fatalf("refused by %v, want Concurrency", dec.Reason)
	}
	first.Done(nil, &provider.Error{Class: provider.ClassBadRequest, Message: "refused"})
	if g, dec, _ := d.Acquire(ctx, Ask{MaxTokens: 16}); g == nil {
		t.Fatalf("the slot was not given back: %v", dec.Reason)
	}
}

// TestInteractiveCallerGivesUp: a caller that leaves while waiting takes
// its Ask out of the lane, and nothing stays reserved.
func TestInteractiveCallerGivesUp(t *testing.T) {
	fc := clocktesting.NewFakeClock(time.Date(2026, 12, 6, 9, 0, 0, 0, time.UTC))
	d, _ := New(Config{Name: "p", Client: &stubClient{}, Limits: minuteLimit(1, 0)}, nil, fc, logr.Discard(), nil)
	g, _, _ := d.Acquire(context.Background(), Ask{MaxTokens: 16})
	g.Cancel()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { _, _, err := d.Acquire(ctx, Ask{MaxTokens: 16, MaxWait: 2 * time.Minute}); done <- err }()
	waitLane(t, d)
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("err %v, want context.Canceled", err)
	}
	if s := d.Interactive(); s.Waiting != 0 {
		t.Fatalf("%d Asks still waiting after the caller left", s.Waiting)
	}
	if st := d.limiter.Stats(fc.Now()); st.InFlight != 0 {
		t.Fatalf("%d slots held after a cancelled grant and a caller that left", st.InFlight)
	}
}

// TestStoppedDispatcherRefusesWaiters: a dispatcher that stops answers the
// calls in its lane instead of leaving them waiting.
func TestStoppedDispatcherRefusesWaiters(t *testing.T) {
	fc := clocktesting.NewFakeClock(time.Date(2026, 12, 6, 9, 0, 0, 0, time.UTC))
	d, _ := New(Config{Name: "p", Client: &stubClient{}, Limits: minuteLimit(1, 0)}, nil, fc, logr.Discard(), nil)
	ctx, cancel := context.WithCancel(context.Background())
	stopped := make(chan struct{})
	go func() { d.Run(ctx); close(stopped) }()
	if g, _, _ := d.Acquire(ctx, Ask{MaxTokens: 16}); g == nil {
		t.Fatal("the first call was refused")
	}
	got := make(chan *Grant, 1)
	go func() {
		g, _, _ := d.Acquire(context.Background(), Ask{MaxTokens: 16, MaxWait: 2 * time.Minute})
		got <- g
	}()
	waitLane(t, d)
	cancel()
	<-stopped
	if g := <-got; g != nil {
		t.Fatal("granted by a stopped dispatcher")
	}
}

// TestInteractiveReservesPersistedQuota: with quota persisted (as the
// manager runs it), an interactive call waits for the loop to reserve and
// persist a block, then gets its grant; the block is written before any of
// it is spent.
func TestInteractiveReservesPersistedQuota(t *testing.T) {
	fc := clocktesting.NewFakeClock(time.Date(2026, 12, 6, 9, 0, 0, 0, time.UTC))
	var mu sync.Mutex
	persisted := 0
	persist := func(context.Context, []byte) error { mu.Lock(); persisted++; mu.Unlock(); return nil }
	d, _ := New(Config{Name: "p", Client: &stubClient{}, Limits: minuteLimit(10, 0), ReserveBlock: 2, Persist: persist}, nil, fc, logr.Discard(), nil)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go d.Run(ctx)
	for i := range 3 {
		done := make(chan *Grant, 1)
		go func() { g, _, _ := d.Acquire(ctx, Ask{MaxTokens: 16, MaxWait: time.Minute}); done <- g }()
		select {
		case g := <-done:
			if g == nil {
				t.Fatalf("call %d refused", i)
			}
			g.Done(&provider.Response{InputTokens: 1, OutputTokens: 1}, nil)
		case <-time.After(10 * time.Second):
			t.Fatalf("call %d neither granted nor refused: the lane never reserved", i)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if persisted != 2 { // blocks of 2: calls 1-2, then 3
		t.Fatalf("%d reservations persisted for 3 calls in blocks of 2, want 2", persisted)
	}
}

// TestBatchesLeaveTheReservedShare: with half of a window of 4 reserved,
// a batch with items to spare sends 2; interactive calls then get the other
// 2 at once.
func TestBatchesLeaveTheReservedShare(t *testing.T) {
	fc := clocktesting.NewFakeClock(time.Date(2026, 12, 6, 9, 0, 0, 0, time.UTC))
	stub := &stubClient{}
	d, _ := New(Config{Name: "p", Client: stub, Limits: minuteLimit(4, 10), InteractiveReserve: 50}, nil, fc, logr.Discard(), nil)
	col := newCollector(2)
	d.Submit(Batch{Key: "ns/b", Namespace: "ns", Size: 10, Items: items("x", 10), OnResult: col.add})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go d.Run(ctx)
	col.wait(t, 10*time.Second)
	if p, _ := d.Progress("ns/b"); p.Limit.Reason != ratewindow.ReasonWindow || stub.count() != 2 {
		t.Fatalf("the batch sent %d and is held by %v; want 2, held by the window's share", stub.count(), p.Limit.Reason)
	}
	for i := range 2 {
		if g, dec, _ := d.Acquire(ctx, Ask{MaxTokens: 16}); g == nil {
			t.Fatalf("interactive call %d refused (%v): the reserved share was not left", i, dec.Reason)
		}
	}
	if g, _, _ := d.Acquire(ctx, Ask{MaxTokens: 16}); g != nil {
		t.Fatal("a fifth call in a window of 4")
	}
}

// TestInteractiveSaturationFillsTheWindow: a caller that always asks again
// when the window frees (at the RetryAt it was given) over ten minutes of
// 100 a minute is granted at least 95% of the 1,000 the limit allows, and
// never more than 100 in any minute.
func TestInteractiveSaturationFillsTheWindow(t *testing.T) {
	t0 := time.Date(2026, 12, 6, 9, 0, 0, 0, time.UTC)
	fc := clocktesting.NewFakeClock(t0)
	d, _ := New(Config{Name: "p", Client: &stubClient{}, Limits: minuteLimit(100, 0)}, nil, fc, logr.Discard(), nil)
	var granted []time.Time
	for fc.Now().Before(t0.Add(10 * time.Minute)) {
		g, dec, err := d.Acquire(context.Background(), Ask{MaxTokens: 16})
		switch {
		case err != nil:
			t.Fatal(err)
		case g != nil:
			granted = append(granted, fc.Now())
			g.Done(&provider.Response{InputTokens: 1, OutputTokens: 1}, nil)
		case dec.RetryAt.IsZero():
			t.Fatalf("refused by %v without a time to come back", dec.Reason)
		default:
			fc.SetTime(dec.RetryAt)
		}
	}
	if n := len(granted); n < 950 || n > 1000 {
		t.Fatalf("%d granted in ten minutes of 100 a minute, want 950 to 1,000", n)
	}
	lo := 0
	for hi, at := range granted {
		for !granted[lo].After(at.Add(-time.Minute)) {
			lo++
		}
		if hi-lo+1 > 100 {
			t.Fatalf("%d granted in the minute ending %v", hi-lo+1, at)
		}
	}
	t.Logf("%d granted in ten minutes of 100 a minute (%.1f%%)", len(granted), float64(len(granted))/10)
}

// TestUsageNamesTheTenantAndLane: each answered call's tokens and cost
// reach OnUsage with the namespace it was made for, a batch's and a
// gateway caller's alike.
func TestUsageNamesTheTenantAndLane(t *testing.T) {
	fc := clocktesting.NewFakeClock(time.Date(2026, 12, 6, 9, 0, 0, 0, time.UTC))
	var mu sync.Mutex
	var got []Usage
	d, err := New(Config{Name: "p", Client: &stubClient{}, Limits: minuteLimit(10, 10),
		Prices:  cost.Prices{InputPerMillion: "1.00", OutputPerMillion: "2.00"},
		OnUsage: func(u Usage) { mu.Lock(); got = append(got, u); mu.Unlock() }}, nil, fc, logr.Discard(), nil)
	if err != nil {
		t.Fatal(err)
	}
	col := newCollector(1)
	d.Submit(Batch{Key: "team-a/b", Namespace: "team-a", Size: 1, Items: items("x", 1), OnResult: col.add})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go d.Run(ctx)
	col.settled(t, 1)
	g, _, err := d.Acquire(ctx, Ask{Namespace: "team-b", InputChars: 10, MaxTokens: 16, MaxWait: time.Second})
	if err != nil || g == nil {
		t.Fatalf("Acquire: %v %v", g, err)
	}
	g.Done(&provider.Response{Text: "ok", InputTokens: 300, OutputTokens: 400}, nil)
	g.Done(&provider.Response{Text: "again", InputTokens: 1, OutputTokens: 1}, nil) // a grant ends once

	mu.Lock()
	defer mu.Unlock()
	want := []struct {
		ns, lane string
		in, out  int64
		usd      string
	}{{"team-a", LaneBatch, 1, 1, "0.000003"}, {"team-b", LaneInteractive, 300, 400, "0.0011"}}
	if len(got) != len(want) {
		t.Fatalf("got %d usages, want %d: %+v", len(got), len(want), got)
	}
	for i, w := range want {
		u := got[i]
		if u.Namespace != w.ns || u.Lane != w.lane || u.InputTokens != w.in || u.OutputTokens != w.out || cost.Format(u.Cost) != w.usd {
			t.Errorf("usage %d = %+v (cost %s), want %+v", i, u, cost.Format(u.Cost), w)
		}
	}
}

// TestGrantIntervalCountsFromTheWrite: for a provider with a minimum
// interval, a grant's holder says when its request was written, and the
// next call waits for that and an interval after it, however long the
// holder took between grant and write (its load, its dial); a grant that
// ends unwritten counts its end as the write.
func TestGrantIntervalCountsFromTheWrite(t *testing.T) {
	fc := clocktesting.NewFakeClock(time.Date(2026, 12, 7, 9, 0, 0, 0, time.UTC))
	d, err := New(Config{Name: "p", Client: &stubClient{}, Limits: ratewindow.Config{MinInterval: 50 * time.Millisecond}}, nil, fc, logr.Discard(), nil)
	if err != nil {
		t.Fatal(err)
	}
	interval := d.cfg.Limits.MinInterval // with its guard
	ctx := context.Background()
	first, _, _ := d.Acquire(ctx, Ask{MaxTokens: 16})
	if first == nil || !first.ReportsWrite() {
		t.Fatalf("first grant %v: want one that reports its write", first)
	}
	fc.Step(time.Second) // long past an interval from the grant: the holder is slow to write
	if g, dec, _ := d.Acquire(ctx, Ask{MaxTokens: 16}); g != nil || dec.Reason != ratewindow.ReasonMinInterval {
		t.Fatalf("granted %v (%v) before the first call was written", g != nil, dec.Reason)
	}
	first.Wrote()
	written := fc.Now()
	if g, dec, _ := d.Acquire(ctx, Ask{MaxTokens: 16}); g != nil || !dec.RetryAt.Equal(written.Add(interval)) {
		t.Fatalf("granted %v, retry at %v; want a refusal until %v, an interval after the write", g != nil, dec.RetryAt, written.Add(interval))
	}
	fc.Step(interval)
	second, dec, _ := d.Acquire(ctx, Ask{MaxTokens: 16})
	if second == nil {
		t.Fatalf("refused an interval after the write: %v", dec.Reason)
	}
	fc.Step(time.Second)
	second.Cancel() // never written: its end stands for the write
	ended := fc.Now()
	if g, dec, _ := d.Acquire(ctx, Ask{MaxTokens: 16}); g != nil || !dec.RetryAt.Equal(ended.Add(interval)) {
		t.Fatalf("granted %v, retry at %v; want a refusal until %v, an interval after the unwritten grant ended", g != nil, dec.RetryAt, ended.Add(interval))
	}

	plain, _ := New(Config{Name: "q", Client: &stubClient{}, Limits: minuteLimit(10, 0)}, nil, fc, logr.Discard(), nil)
	if g, _, _ := plain.Acquire(ctx, Ask{MaxTokens: 16}); g == nil || g.ReportsWrite() {
		t.Fatal("a provider without a minimum interval asks for no write report")
	}
}

// TestCallThatWillNotWaitIsNotQueued: while a call waits at the lane's
// head for the window, a call that will not wait is refused at once with
// what the head waits for, not queued behind it (a gateway's acquire for
// spares does not wait, and must answer in one round trip).
func TestCallThatWillNotWaitIsNotQueued(t *testing.T) {
	t0 := time.Date(2026, 12, 7, 9, 0, 0, 0, time.UTC)
	d, err := New(Config{Name: "p", Client: &stubClient{}, Limits: minuteLimit(1, 0)}, nil, clocktesting.NewFakeClock(t0), logr.Discard(), nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if g, _, err := d.Acquire(ctx, Ask{Namespace: "app", InputChars: 1, MaxTokens: 1}); g == nil || err != nil {
		t.Fatalf("first call: %v %v", g, err)
	}
	waited := make(chan error, 1)
	go func() {
		_, _, err := d.Acquire(ctx, Ask{Namespace: "app", InputChars: 1, MaxTokens: 1, MaxWait: 2 * time.Minute})
		waited <- err
	}()
	waitLane(t, d)
	g, dec, err := d.Acquire(context.Background(), Ask{Namespace: "app", InputChars: 1, MaxTokens: 1})
	frees := t0.Add(time.Minute + guard(time.Minute))
	if g != nil || err != nil || dec.Reason != ratewindow.ReasonWindow || !dec.RetryAt.Equal(frees) {
		t.Fatalf("a call that will not wait: %v %+v %v; want refused at once until %v", g, dec, err, frees)
	}
	if s := d.Interactive(); s.Waiting != 1 || s.Refused != 1 {
		t.Fatalf("lane %+v, want the first still waiting and one refusal", s)
	}
	cancel()
	if err := <-waited; !errors.Is(err, context.Canceled) {
		t.Fatalf("the waiting call ended with %v", err)
	}
}

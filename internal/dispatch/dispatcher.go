package dispatch

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-logr/logr"
	"k8s.io/utils/clock"

	"github.com/llmquota/llmquota/internal/aimd"
	"github.com/llmquota/llmquota/internal/cost"
	"github.com/llmquota/llmquota/internal/ratewindow"
)

// Dispatcher runs one provider's calls. Create it with New, start Run in a
// goroutine, and hand it batches with Submit.
type Dispatcher struct {
	cfg     Config
	limiter *ratewindow.Limiter
	clock   clock.Clock
	log     logr.Logger
	lookup  Lookup
	wake    chan struct{}
	// steps counts the loop's steps, so a test can tell that the loop
	// looked at the state as it is (a negative check after an event, not
	// after a sleep).
	steps atomic.Uint64
	// persisting makes each write of the quota state the newest one:
	// snapshot and write happen under it (persistQuota).
	persisting sync.Mutex

	mu      sync.Mutex
	batches map[string]*batch
	spaces  map[string]*space  // the namespaces of batches, for next
	turn    uint64             // next's calls so far: marks what a space holds as current
	fair    fairness           // whose turn it is among namespaces
	tenants map[string]*tenant // namespaces' budgets and own limits, for those that have one
	models  map[string]*scoped // models' own limits, for those that have them
	teams   map[string]*team   // what each namespace used this month (Stats)
	// tell holds OnChange calls to make outside the lock (tellChanges).
	tell    []func()
	limited ratewindow.Decision
	// writesHeld holds batch calls back until results are written
	// (HoldForWrites).
	writesHeld bool
	// ready, while open, holds every admission (HoldUntil); nil once it
	// closed.
	ready <-chan struct{}
	// spareUse is SpareUse, from the config.
	spareUse time.Duration
	meter    *cost.Meter
	authErr  string // the last auth failure, until a success
	inFlight int
	draining bool           // Drain was called: no new call starts
	calls    sync.WaitGroup // calls started and not yet reported
	seq      uint64         // batches submitted so far
	// shown is what the batches were last told holds them back (OnChange,
	// Progress); see holdnews.go.
	shown shownHold
	// lane holds the interactive calls waiting for quota, oldest first;
	// lanes counts its decisions (see Acquire).
	lane  []*waiter
	lanes InteractiveStats
	// laneUse counts each lane's last minute (laneIndex); grantsOut are
	// the interactive grants not yet ended.
	laneUse   [2]minuteCounter
	grantsOut int
	// standbyOut are the standby grants among grantsOut (Lend).
	standbyOut int
	// learner learns the provider's real limits (nil when off).
	learner *aimd.Learner
	// scratch is next's working space, kept between calls.
	scratch struct {
		candidates, order []*batch
	}
}

// space is a namespace with submitted batches: next's notes on it, found
// through each batch's pointer rather than a map keyed by the name (next
// runs for every call over every batch).
type space struct {
	batches int    // submitted batches of the namespace
	turn    uint64 // the next call front and head were found for
	// active is the last next call that found work in the namespace;
	// wasActive says whether the one before this turn did (see fairness).
	active    uint64
	wasActive bool
	// front is the oldest batch with items left, of its highest priority;
	// head the oldest ready one.
	front, head *batch
}

// batch is a submitted Batch and its progress.
type batch struct {
	Batch
	queue      []Item
	suspended  bool
	inFlight   int
	groupLeft  int // items of the current group without a final result
	groupUnsen int // items of the current group still queued
	groupsDone int
	gateAt     time.Time
	openedAt   time.Time // when the current group's items could first be sent
	retries    int
	removed    bool
	seq        uint64 // submission order, for FIFO within a namespace
	space      *space
	feed       <-chan Item
}

// New returns a dispatcher for cfg. snapshot, when not empty, is the
// quota state persisted by an earlier manager; what it reserved counts as
// spent now.
func New(cfg Config, snapshot []byte, c clock.Clock, log logr.Logger, lookup Lookup) (*Dispatcher, error) {
	cfg = normalized(cfg)
	var lim *ratewindow.Limiter
	var err error
	if len(snapshot) > 0 {
		lim, err = ratewindow.Restore(cfg.Limits, snapshot, c.Now())
		if errors.Is(err, ratewindow.ErrCorrupt) {
			log.Error(err, "Persisted quota state unreadable; starting with empty windows")
			lim, err = ratewindow.New(cfg.Limits)
		}
	} else {
		lim, err = ratewindow.New(cfg.Limits)
	}
	if err != nil {
		return nil, fmt.Errorf("quota of provider %s: %w", cfg.Name, err)
	}
	meter, err := cost.NewMeter(cfg.Prices)
	if err != nil {
		return nil, fmt.Errorf("prices of provider %s: %w", cfg.Name, err)
	}
	d := &Dispatcher{
		cfg: cfg, limiter: lim, clock: c, log: log.WithValues("provider", cfg.Name), lookup: lookup,
		wake: make(chan struct{}, 1), batches: map[string]*batch{}, spaces: map[string]*space{}, tenants: map[string]*tenant{}, teams: map[string]*team{}, models: map[string]*scoped{},
		meter: meter, shown: shownHold{state: holdState{allowed: true}, dec: ratewindow.Decision{Allowed: true}}, fair: fairness{shares: cfg.Shares}, learner: newLearner(cfg, c.Now()),
		spareUse: spareUseOf(cfg),
	}
	if cfg.Endpoints != nil {
		cfg.Endpoints.watch(d.poke)
		cfg.Endpoints.configure(cfg.LearnLimits, cfg.Limits.MaxConcurrency)
	}
	return d, nil
}

// normalized fills in a config's defaults and guards its limits.
func normalized(cfg Config) Config {
	cfg.Limits = guardedLimits(cfg.Limits)
	cfg.Limits.RequireReservation = cfg.Persist != nil
	if cfg.ModelLimits != nil { // a model's limits are the provider's too
		models := make(map[string]*ratewindow.Config, len(cfg.ModelLimits))
		for name, l := range cfg.ModelLimits {
			if l != nil {
				g := guardedLimits(*l)
				l = &g
			}
			models[name] = l
		}
		cfg.ModelLimits = models
	}
	if cfg.ReserveBlock < 1 {
		cfg.ReserveBlock = 1
	}
	if cfg.CallTimeout == 0 {
		cfg.CallTimeout = 2 * time.Minute
	}
	return cfg
}

// Reconfigure applies an edited provider's settings in place: limits,
// retries, prices, budgets, default model, fallback, circuit threshold,
// prompt length and call timeout. What the dispatcher has learned stays: its
// quota windows and reservation, the calls in flight, the failure backoff,
// a Retry-After, the cost totals, the batches and their progress. The
// connection (client, endpoints, where the quota is persisted) is not
// changed here: a new endpoint or key needs a new dispatcher. On an error
// nothing changes.
func (d *Dispatcher) Reconfigure(cfg Config) error {
	cfg = normalized(cfg)
	cfg.Limits.RequireReservation = d.cfg.Persist != nil
	d.mu.Lock()
	defer d.mu.Unlock()
	if _, err := cost.NewMeter(cfg.Prices); err != nil { // checked before anything changes
		return fmt.Errorf("prices of provider %s: %w", d.cfg.Name, err)
	}
	if err := d.limiter.Reconfigure(cfg.Limits); err != nil {
		return fmt.Errorf("quota of provider %s: %w", d.cfg.Name, err)
	}
	_ = d.meter.Reprice(cfg.Prices)
	for _, t := range d.tenants {
		_ = t.meter.Reprice(cfg.Prices)
	}
	// Field by field: calls in flight read the connection fields unlocked.
	d.cfg.Limits, d.cfg.DefaultModel, d.cfg.MaxRetries, d.cfg.MaxPromptLength = cfg.Limits, cfg.DefaultModel, cfg.MaxRetries, cfg.MaxPromptLength
	d.cfg.Fallback, d.cfg.CircuitThreshold, d.cfg.Prices, d.cfg.CallTimeout = cfg.Fallback, cfg.CircuitThreshold, cfg.Prices, cfg.CallTimeout
	d.cfg.Budgets, d.cfg.InteractiveReserve, d.cfg.MaxRateLimitedWait = cfg.Budgets, cfg.InteractiveReserve, cfg.MaxRateLimitedWait
	d.cfg.StandbyCalls = cfg.StandbyCalls
	d.cfg.CapCountedAtStart, d.cfg.CrashRepay = cfg.CapCountedAtStart, cfg.CrashRepay
	d.cfg.Shares, d.fair.shares, d.cfg.ModelLimits = cfg.Shares, cfg.Shares, cfg.ModelLimits
	d.spareUse = spareUseOf(d.cfg)
	if d.cfg.Endpoints != nil {
		d.cfg.Endpoints.configure(cfg.LearnLimits, cfg.Limits.MaxConcurrency)
	}
	if cfg.LearnLimits != d.cfg.LearnLimits { // switched on or off: from the declared limits
		d.cfg.LearnLimits, d.learner = cfg.LearnLimits, newLearner(cfg, d.clock.Now())
		d.limiter.SetScale(1)
	}
	d.poke()
	return nil
}

// Drain stops starting calls and waits until those in flight have
// finished and reported their results, or until ctx ends. A dispatcher
// replaced because its connection changed (a new endpoint or key) drains
// first, so its calls in flight are neither cancelled nor sent again.
func (d *Dispatcher) Drain(ctx context.Context) {
	d.mu.Lock()
	d.draining = true
	d.mu.Unlock()
	d.poke()
	done := make(chan struct{})
	go func() { d.calls.Wait(); close(done) }()
	select {
	case <-ctx.Done():
	case <-done:
	}
}

// Name is the provider's name.
func (d *Dispatcher) Name() string { return d.cfg.Name }

func (d *Dispatcher) poke() {
	select {
	case d.wake <- struct{}{}:
	default:
	}
}

// Submit adds a batch, or replaces the parameters of one already running
// while keeping its progress.
func (d *Dispatcher) Submit(b Batch) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if b.Size < 1 {
		b.Size = 1
	}
	if old, ok := d.batches[b.Key]; ok && !old.removed {
		old.Priority, old.Delay, old.Params, old.OnResult, old.OnChange = b.Priority, b.Delay, b.Params, b.OnResult, b.OnChange
		return
	}
	d.seq++
	// The queue takes b.Items over (see Batch.Items): one copy of a
	// batch's items in memory, released item by item as they are sent.
	queue := b.Items
	b.Items = nil
	sp := d.spaces[b.Namespace]
	if sp == nil {
		sp = &space{}
		d.spaces[b.Namespace] = sp
	}
	sp.batches++
	nb := &batch{Batch: b, queue: queue, groupsDone: b.GroupsDone, seq: d.seq, space: sp, feed: b.Feed}
	nb.startGroup(time.Time{})
	nb.openedAt = d.clock.Now()
	d.batches[b.Key] = nb
	d.poke()
}

// Has reports whether a batch is submitted.
func (d *Dispatcher) Has(key string) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	_, ok := d.batches[key]
	return ok
}

// Remove stops a batch: nothing new starts; calls in flight finish and
// their results are dropped.
func (d *Dispatcher) Remove(key string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if b, ok := d.batches[key]; ok {
		b.removed = true
		delete(d.batches, key)
		if b.space.batches--; b.space.batches == 0 {
			delete(d.spaces, b.Namespace)
		}
	}
	d.poke()
}

// Adjust applies what may change on a running batch: suspend pauses
// (true) or resumes (false) it, priority reorders it among the provider's
// batches from its next call on.
func (d *Dispatcher) Adjust(key string, suspend bool, priority int32) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if b, ok := d.batches[key]; ok && (b.suspended != suspend || b.Priority != priority) {
		b.suspended, b.Priority = suspend, priority
		d.poke()
	}
}

// Wake makes a sleeping dispatcher look at its batches again (a Feed sent
// an item).
func (d *Dispatcher) Wake() { d.poke() }

// Steps is how many steps the dispatcher's loop made. A test waits for
// more after Wake to know the loop looked at the state as it is.
func (d *Dispatcher) Steps() uint64 { return d.steps.Load() }

// topUp takes items waiting in the feed until the queue holds want; a
// closed feed is done with.
func (b *batch) topUp(want int) {
	for b.feed != nil && len(b.queue) < want {
		select {
		case it, ok := <-b.feed:
			if !ok {
				b.feed = nil
				return
			}
			b.queue = append(b.queue, it)
		default:
			return
		}
	}
}

// more reports whether the batch has items left to send, queued or to come.
func (b *batch) more() bool { return len(b.queue) > 0 || b.feed != nil }

// pop drops the queue's first item, clearing its slot so that the sent
// item's prompt is not kept alive by the queue's backing array.
func (b *batch) pop() {
	b.queue[0] = Item{}
	b.queue = b.queue[1:]
}

// take removes the queue's first item from the current group: it is sent,
// or diverted to the fallback.
func (b *batch) take() {
	b.pop()
	b.groupUnsen--
}

// startGroup opens the next group of the batch at now+Delay (now zero: at once).
func (b *batch) startGroup(now time.Time) {
	b.topUp(b.Size)
	n := min(b.Size, len(b.queue))
	b.groupLeft, b.groupUnsen = n, n
	if !now.IsZero() {
		b.gateAt = now.Add(b.Delay)
		b.openedAt = b.gateAt
	}
}

// ready reports whether the batch may send its next item at now, and if
// not, when its gate opens (zero: not by time).
func (b *batch) ready(now time.Time) (bool, time.Time) {
	if b.feed != nil {
		b.topUp(b.Size)
		if b.groupLeft == 0 && len(b.queue) > 0 { // the group opened empty while the feed lagged
			b.startGroup(time.Time{})
			b.openedAt = now
		}
	}
	if b.suspended || b.groupUnsen == 0 || len(b.queue) == 0 {
		return false, time.Time{}
	}
	if now.Before(b.gateAt) {
		return false, b.gateAt
	}
	return true, time.Time{}
}

// next picks the batch to serve: the highest priority with a ready item,
// then the namespace whose fair share is furthest behind (fairness: tokens
// served per weight), FIFO within one. It returns the earliest gate time
// when nothing is ready. A namespace is charged only when the caller sends
// the item (fair.charge), so asking while the quota refuses does not skip
// its turn.
//
// FIFO within a namespace: its front, the oldest batch with items left (of
// its highest priority), is served whenever it can send. A younger batch of
// the namespace fills in only while no namespace's front can send (the
// front waits for its group's answers or its batchDelay), so the
// provider's slots are never left idle, yet a namespace's batches finish
// one after another instead of each trickling along beside its elder: a
// trickling batch runs longer than the results flush interval, so it
// writes its results twice and publishes mid-run progress it would not
// need (docs/benchmarks.md, "Fronts first").
func (d *Dispatcher) next(now time.Time) (b *batch, gate time.Time) {
	best := int32(-1 << 31)
	// The slices are the dispatcher's, reused, and namespaces are reached
	// by pointer: this runs for every call over every batch, and allocated
	// most of the manager's garbage.
	candidates := d.scratch.candidates[:0]
	d.turn++
	for _, c := range d.batches {
		ok, at := c.ready(now) // first: it takes what a feed sent
		held := false          // by its namespace's budget, or its namespace's or model's limits: not ready, and not active (it banks no share)
		if len(d.tenants) > 0 || len(d.models) > 0 {
			if dec := d.tenantHold(c, now); !dec.Allowed {
				held, ok, at = true, false, dec.RetryAt // zero: until one of its calls ends
			}
		}
		sp := c.space
		if sp.turn != d.turn {
			sp.turn, sp.front, sp.head = d.turn, nil, nil
			sp.wasActive = sp.active == d.turn-1
		}
		if f := sp.front; !held && !c.suspended && c.more() && (f == nil || c.Priority > f.Priority || (c.Priority == f.Priority && c.seq < f.seq)) {
			sp.front, sp.active = c, d.turn
		}
		if !ok {
			if !at.IsZero() && (gate.IsZero() || at.Before(gate)) {
				gate = at
			}
			continue
		}
		switch {
		case c.Priority > best:
			best, candidates = c.Priority, append(candidates[:0], c)
		case c.Priority == best:
			candidates = append(candidates, c)
		}
	}
	d.scratch.candidates = candidates
	d.fair.lift(d.spaces, d.turn)
	if len(candidates) == 0 {
		return nil, gate
	}
	order := d.scratch.order[:0]
	for _, c := range candidates {
		if c.space.front == c {
			order = append(order, c)
		}
	}
	if len(order) == 0 { // every front waits: each namespace's oldest ready batch fills in
		for _, c := range candidates {
			if h := c.space.head; h == nil || c.seq < h.seq {
				c.space.head = c
			}
		}
		for _, c := range candidates {
			if c.space.head == c {
				order = append(order, c)
			}
		}
	}
	d.scratch.order = order
	pick := order[0]
	for _, c := range order[1:] {
		if d.fair.before(c.Namespace, pick.Namespace) {
			pick = c
		}
	}
	return pick, time.Time{}
}

// guarded lengthens each window by its guard time.
// guardedLimits is c with every window, token window and interval the
// provider enforces lengthened by its guard: a token window whose charge
// the answer does not correct (input tokens, or output as long as its
// cap) has the same race with the server's arrival stamps as a request
// window.
func guardedLimits(c ratewindow.Config) ratewindow.Config {
	c.Windows = guarded(c.Windows)
	if c.Tokens != nil {
		t := guardedWindow(*c.Tokens)
		c.Tokens = &t
	}
	if c.TokenWindows != nil {
		tws := make([]ratewindow.TokenWindow, len(c.TokenWindows))
		for i, tw := range c.TokenWindows {
			tw.Window = guardedWindow(tw.Window)
			tws[i] = tw
		}
		c.TokenWindows = tws
	}
	c.MinInterval += guard(c.MinInterval)
	return c
}

func guarded(ws []ratewindow.Window) []ratewindow.Window {
	out := make([]ratewindow.Window, len(ws))
	for i, w := range ws {
		out[i] = guardedWindow(w)
	}
	return out
}

// guardedWindow is w, a period longer by its guard.
func guardedWindow(w ratewindow.Window) ratewindow.Window {
	w.Period += guard(w.Period)
	return w
}

// guard is how much longer than a window or minimum interval we wait (1/50
// of it, at least 20ms, at most 250ms): the server stamps a request when
// it arrives, later than we admit it and by a varying delay, so a window
// or interval exact on our side could still be short on the server's. The
// delay includes our own scheduling between admitting a call and writing
// it: on two loaded cores a CI run saw it vary by more than 5ms (the
// floor before), so that two requests admitted 55ms apart arrived 49.8ms
// apart. The floor only lengthens intervals and windows under one second.
func guard(d time.Duration) time.Duration {
	if d <= 0 {
		return 0
	}
	return min(250*time.Millisecond, max(20*time.Millisecond, d/50))
}

// CrashRepay is the provider's bound on the answers whose results may wait
// for their write (spec.crashRepay).
func (d *Dispatcher) CrashRepay() RepayBound {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.cfg.CrashRepay
}

// MaxConcurrency is the most calls the provider has in flight at once.
func (d *Dispatcher) MaxConcurrency() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.cfg.Limits.MaxConcurrency
}

// HoldForWrites holds batch calls back (hold) or lets them go: the
// batches' runtime holds them while the answers waiting for their results'
// write reach spec.crashRepay (CrashRepay). Gateway calls, which have no
// results to write, go on.
func (d *Dispatcher) HoldForWrites(hold bool) {
	d.mu.Lock()
	d.writesHeld = hold
	d.mu.Unlock()
	if !hold {
		d.poke()
	}
}

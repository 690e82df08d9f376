package ratewindow

import (
	"math"
	"math/rand/v2"
	"sync"
	"time"
)

// Limiter enforces a Config. It is safe for concurrent use. Times passed in
// should not go backwards; an admission stamped earlier than the previous
// one is recorded at the previous one's time, which only holds calls back
// longer, never shorter.
type Limiter struct {
	mu  sync.Mutex
	cfg Config

	admitted ring       // admission times, shared by every request window
	tokens   costRing   // the tokens window's entries
	more     []costRing // the entries of each of Config.TokenWindows
	// deferred are calls counted until a later time than their admission
	// (Defer), oldest first.
	deferred []deferred

	lastAdmit   int64 // time of the last admission; valid when hasAdmitted
	hasAdmitted bool
	// lastWrote is when the last call reached the connection (Wrote), and
	// unwritten counts the calls admitted to be sent (Writing) that have
	// not yet: the minimum interval counts from the write, not the
	// admission, so that load between the two cannot bring two arrivals
	// closer than the interval.
	lastWrote     int64
	unwritten     int
	inFlight      int
	failures      int
	backoffUntil  int64
	retryAfter    int64
	reservedCalls int64
	reservedToken Cost
	// scale is the part of the request windows' and concurrency's limits
	// to use, in per mille, when less than all of them (SetScale); 0 is
	// the declared limits.
	scale int64
}

// New returns a Limiter for cfg, or an error naming what is wrong with cfg.
func New(cfg Config) (*Limiter, error) {
	cfg, err := owned(cfg)
	if err != nil {
		return nil, err
	}
	return &Limiter{cfg: cfg, admitted: newRing(cfg.ringCapacity()), more: make([]costRing, len(cfg.TokenWindows))}, nil
}

// owned checks cfg and returns a copy the caller cannot change afterwards,
// with its defaults filled in.
func owned(cfg Config) (Config, error) {
	if err := cfg.validate(); err != nil {
		return Config{}, err
	}
	cfg.Windows = append([]Window(nil), cfg.Windows...)
	cfg.TokenWindows = append([]TokenWindow(nil), cfg.TokenWindows...)
	if cfg.Tokens != nil {
		t := *cfg.Tokens
		cfg.Tokens = &t
	}
	if cfg.Rand == nil {
		cfg.Rand = rand.Float64
	}
	return cfg, nil
}

// Reconfigure changes the limits in place, keeping what the limiter has
// learned: the admission history (the newest entries the new windows
// need), the tokens window's entries, the calls in flight, the failure
// backoff, a Retry-After and the reservation. A provider edited while it
// runs thus neither forgets what it sent nor cancels what is in flight.
func (l *Limiter) Reconfigure(cfg Config) error {
	cfg, err := owned(cfg)
	if err != nil {
		return err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	// Never fewer than the entries held: a window lowered now and raised
	// again later still counts what was sent before.
	if c := max(cfg.ringCapacity(), l.admitted.n); c != l.admitted.max {
		l.admitted = l.admitted.resized(c)
	}
	if cfg.Tokens == nil {
		l.tokens = costRing{}
	}
	// A token window keeps its entries while one of the same name and kind
	// stays.
	more := make([]costRing, len(cfg.TokenWindows))
	for i, tw := range cfg.TokenWindows {
		for j, old := range l.cfg.TokenWindows {
			if old.Name == tw.Name && old.Kind == tw.Kind {
				more[i] = l.more[j]
			}
		}
	}
	l.more = more
	if cfg.InitialBackoff == 0 {
		l.backoffUntil = 0 // backoff turned off: no hold left over
	}
	l.cfg = cfg
	return nil
}

// Decide says whether a call of the given token cost would be admitted at
// now, without admitting it.
func (l *Limiter) Decide(now time.Time, cost Cost) Decision {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.decide(now.UnixNano(), cost, 0)
}

// Admit admits a call of the given token cost at now if every constraint
// allows it, taking a concurrency slot that Release gives back.
func (l *Limiter) Admit(now time.Time, cost Cost) Decision {
	return l.AdmitKeeping(now, cost, 0)
}

// Check is what Admit would decide at now for a call of cost, without
// admitting it: a caller that needs two limiters to agree checks the one
// and admits the other before admitting the first.
func (l *Limiter) Check(now time.Time, cost Cost) Decision {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.decide(now.UnixNano(), cost, 0)
}

// AdmitKeeping admits like Admit, but only within what is left of each
// request window, of the tokens window and of the concurrency slots once
// keepPercent of each is set aside for calls admitted with Admit: batches
// leave headroom for interactive calls this way, and interactive calls may
// use everything. The part set aside is rounded down, so a limit of one
// still admits.
func (l *Limiter) AdmitKeeping(now time.Time, cost Cost, keepPercent int) Decision {
	l.mu.Lock()
	defer l.mu.Unlock()
	t := now.UnixNano()
	d := l.decide(t, cost, keepPercent)
	if !d.Allowed {
		return d
	}
	if l.hasAdmitted && t < l.lastAdmit {
		t = l.lastAdmit
	}
	l.admitted.push(t)
	if l.cfg.Tokens != nil {
		l.tokens.expire(t - int64(l.cfg.Tokens.Period))
	}
	for i, tw := range l.cfg.TokenWindows {
		l.more[i].expire(t - int64(tw.Period))
	}
	l.addTokens(t, cost)
	l.lastAdmit, l.hasAdmitted = t, true
	l.inFlight++
	l.reservedCalls = max(0, l.reservedCalls-1)
	l.reservedToken = Cost{Input: max(0, l.reservedToken.Input-cost.Input), Output: max(0, l.reservedToken.Output-cost.Output)}
	return d
}

// Writing says the call just admitted will be written by this process,
// which will say when with Wrote: with a minimum interval, nothing more is
// admitted until then, and the interval counts from the write.
func (l *Limiter) Writing() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.unwritten++
}

// Wrote says a call announced with Writing reached the connection at at
// (or ended without reaching it: then at is when that was known).
func (l *Limiter) Wrote(at time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.unwritten = max(0, l.unwritten-1)
	l.lastWrote = max(l.lastWrote, at.UnixNano())
}

// Occupy counts a call in flight that this Limiter did not admit (a
// previous leader's, adopted by the new one): it takes a concurrency slot,
// even past the limit, and nothing in the windows, which counted the call
// where it was admitted. Release frees the slot.
func (l *Limiter) Occupy() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.inFlight++
}

// Release ends an admitted call: it frees its concurrency slot and applies
// what the call taught (success, failure, Retry-After, extra tokens).
func (l *Limiter) Release(now time.Time, r Result) {
	l.mu.Lock()
	defer l.mu.Unlock()
	t := now.UnixNano()
	l.inFlight = max(0, l.inFlight-1)
	switch r.Outcome {
	case OutcomeSuccess:
		l.failures, l.backoffUntil = 0, 0
	case OutcomeFailure:
		l.failures++
		l.backoffUntil = max(l.backoffUntil, t+l.backoff(l.failures))
	}
	if !r.RetryAfter.IsZero() {
		l.retryAfter = max(l.retryAfter, r.RetryAfter.UnixNano())
	}
	l.addTokens(t, r.Extra)
}

// Unadmit ends a call admitted at at with cost that was never sent: its
// concurrency slot comes back, and so do its place in the request windows
// and its token charge, as if it had not been admitted. Only a call
// certainly never sent may be unadmitted (a spare grant given back unused);
// one whose entries are gone or were stamped later is left counted. A
// deferred call (Defer) is unadmitted at the time it was deferred to.
func (l *Limiter) Unadmit(at time.Time, cost Cost) {
	l.mu.Lock()
	defer l.mu.Unlock()
	t := at.UnixNano()
	l.inFlight = max(0, l.inFlight-1)
	if !l.admitted.remove(t) && l.undefer(t) {
		return // a deferred call: its tokens went with it
	}
	l.reduceTokens(t, cost)
}

// reduceTokens takes cost, charged at t, out of the token windows (called
// under l.mu).
func (l *Limiter) reduceTokens(t int64, cost Cost) {
	if l.cfg.Tokens != nil && cost.Total() > 0 {
		l.tokens.reduce(t, cost.Total())
	}
	for i, tw := range l.cfg.TokenWindows {
		if c := cost.of(tw.Kind); c > 0 {
			l.more[i].reduce(t, c)
		}
	}
}

// addTokens records cost in every token window at t, each its own kind of
// it.
func (l *Limiter) addTokens(t int64, cost Cost) {
	if l.cfg.Tokens != nil {
		addCost(&l.tokens, t, cost.Total())
	}
	for i, tw := range l.cfg.TokenWindows {
		addCost(&l.more[i], t, cost.of(tw.Kind))
	}
}

// addCost records cost in a token window's entries at t, or at the newest
// entry's time if that is later, keeping the entries sorted.
func addCost(r *costRing, t, cost int64) {
	if cost <= 0 {
		return
	}
	if r.n > 0 {
		last, _ := r.at(r.n - 1)
		t = max(t, last)
	}
	r.push(t, cost)
}

// backoff returns the hold after k consecutive failures:
// min(initial * 2^(k-1), max), shortened by up to Jitter.
func (l *Limiter) backoff(k int) int64 {
	initial, ceiling := int64(l.cfg.InitialBackoff), int64(l.cfg.MaxBackoff)
	if initial == 0 {
		return 0
	}
	hold := ceiling
	if shift := k - 1; shift < 62 && initial <= ceiling>>shift {
		hold = initial << shift
	}
	if l.cfg.Jitter > 0 {
		hold -= int64(float64(hold) * l.cfg.Jitter * l.cfg.Rand())
	}
	return hold
}

// blocker remembers the constraint that holds a call back longest.
type blocker struct {
	now, at int64
	reason  Reason
	window  string
}

func (b *blocker) consider(until int64, r Reason, window string) {
	if until > b.now && until > b.at {
		b.at, b.reason, b.window = until, r, window
	}
}

// SetScale uses part of the declared request windows and concurrency,
// scale in (0, 1] (what internal/aimd learned the provider really takes);
// each limit is at least 1. The tokens window keeps its declared limit: a
// prompt that fits it must never become too large for it.
func (l *Limiter) SetScale(scale float64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.scale = min(1000, max(1, int64(math.Round(scale*1000))))
	if l.scale == 1000 {
		l.scale = 0
	}
}

// scaled is a request window's or the concurrency's limit under the scale.
func (l *Limiter) scaled(limit int64) int64 {
	if l.scale == 0 {
		return limit
	}
	return max(1, limit*l.scale/1000)
}

// SentIn counts the calls admitted after from and before to, and the
// shortest request window's limit under the scale: what the provider was
// asked to take in a window that ended at to, and what the limits allowed
// (0 without request windows).
func (l *Limiter) SentIn(from, to time.Time) (sent, allowed int64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for i, w := range l.cfg.Windows {
		if i == 0 || l.scaled(w.Limit) < allowed {
			allowed = l.scaled(w.Limit)
		}
	}
	n := l.admitted.n
	return int64(l.admitted.countSince(n, from.UnixNano()) - l.admitted.countSince(n, to.UnixNano()-1)), allowed
}

// kept is what is left of limit once keepPercent of it is set aside.
func kept(limit int64, keepPercent int) int64 {
	return limit - limit*int64(keepPercent)/100
}

func (l *Limiter) decide(now int64, cost Cost, keepPercent int) Decision {
	b := blocker{now: now, at: math.MinInt64}
	for i := range l.cfg.Windows {
		w := &l.cfg.Windows[i]
		if limit := kept(l.scaled(w.Limit), keepPercent); int64(l.admitted.n+len(l.deferred)) >= limit {
			b.consider(l.kthNewest(int(limit))+int64(w.Period), ReasonWindow, w.Name)
		}
	}
	tokenWindow := func(w Window, r *costRing, cost int64, of func(Cost) int64) bool {
		limit := kept(w.Limit, keepPercent)
		if cost > limit {
			return false
		}
		until, ok := int64(0), false
		if len(l.deferred) == 0 {
			until, ok = tokensFreeAt(r, w.Period, now, cost, limit)
		} else {
			until, ok = l.tokensFreeAtDeferred(r, w.Period, now, cost, limit, of)
		}
		if !ok {
			b.consider(until, ReasonTokens, w.Name)
		}
		return true
	}
	if tw := l.cfg.Tokens; tw != nil && !tokenWindow(*tw, &l.tokens, cost.Total(), Cost.Total) {
		return Decision{Reason: ReasonTooLarge, Window: tw.Name}
	}
	for i, tw := range l.cfg.TokenWindows {
		if !tokenWindow(tw.Window, &l.more[i], cost.of(tw.Kind), tw.Kind.of) {
			return Decision{Reason: ReasonTooLarge, Window: tw.Name}
		}
	}
	if l.hasAdmitted && l.cfg.MinInterval > 0 {
		b.consider(max(l.lastAdmit, l.lastWrote)+int64(l.cfg.MinInterval), ReasonMinInterval, "")
		if l.unwritten > 0 { // the interval starts once it is written (Wrote), at the latest an interval from now
			b.consider(now+int64(l.cfg.MinInterval), ReasonMinInterval, "")
		}
	}
	b.consider(l.backoffUntil, ReasonBackoff, "")
	b.consider(l.retryAfter, ReasonRetryAfter, "")
	switch {
	case b.reason != ReasonNone:
		return Decision{RetryAt: time.Unix(0, b.at), Reason: b.reason, Window: b.window}
	case l.cfg.MaxConcurrency > 0 && int64(l.inFlight) >= kept(l.scaled(int64(l.cfg.MaxConcurrency)), keepPercent):
		return Decision{Reason: ReasonConcurrency}
	case l.cfg.RequireReservation && l.reservedCalls <= 0:
		return Decision{Reason: ReasonReservation}
	}
	return Decision{Allowed: true}
}

// tokensFreeAt reports whether cost fits a token window's entries r, held
// to limit, at now, and if not, the earliest time enough of its entries
// have expired.
func tokensFreeAt(r *costRing, period time.Duration, now, cost, limit int64) (int64, bool) {
	cutoff := now - int64(period)
	used, first := r.unexpired(cutoff)
	if used+cost <= limit {
		return 0, true
	}
	for i := first; i < r.n; i++ {
		t, c := r.at(i)
		used -= c
		if used+cost <= limit {
			return t + int64(period), false
		}
	}
	return math.MaxInt64, false // unreachable: cost <= Limit frees once all expire
}

// unexpired sums the entries after cutoff and finds the first of them:
// those at or before it have expired but may not have been dropped yet.
func (c *costRing) unexpired(cutoff int64) (used int64, first int) {
	used = c.sum
	for ; first < c.n; first++ {
		t, cost := c.at(first)
		if t > cutoff {
			break
		}
		used -= cost
	}
	return used, first
}

// ConsecutiveFailures returns the failures since the last success, without
// the allocations of Stats (the dispatcher asks on every step).
func (l *Limiter) ConsecutiveFailures() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.failures
}

// Reserve sets aside calls and tokens that the caller is about to persist as
// spent (see Snapshot). Admissions draw from the reservation first; with
// Config.RequireReservation, none happen without one.
func (l *Limiter) Reserve(calls int64, tokens Cost) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.reservedCalls += max(0, calls)
	l.reservedToken.Input += max(0, tokens.Input)
	l.reservedToken.Output += max(0, tokens.Output)
}

// Unreserve gives back what is left of the reservation and returns it.
func (l *Limiter) Unreserve() (calls int64, tokens Cost) {
	l.mu.Lock()
	defer l.mu.Unlock()
	calls, tokens = l.reservedCalls, l.reservedToken
	l.reservedCalls, l.reservedToken = 0, Cost{}
	return calls, tokens
}

// Reserved returns what is left of the reservation.
func (l *Limiter) Reserved() (calls int64, tokens Cost) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.reservedCalls, l.reservedToken
}

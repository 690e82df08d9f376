package dispatch

import (
	"time"

	"github.com/llmquota/llmquota/internal/ratewindow"
)

// Spare grants let a gateway replica admit its next calls without asking
// the leader for each (docs/gateway.md, "Spare grants"). A spare is a
// Grant like any other, counted in every window, slot, token and budget
// from the moment it is given; what makes it safe to hold is that it is
// used soon: a window's guard (see guard) absorbs the delay between
// admission and arrival at the provider, and a spare may take half of it.
const (
	// SpareKeepPercent of each window and of the concurrency slots is
	// never given as spares: the last calls of a nearly full window are
	// admitted one by one, to callers that wait for them, so spares held
	// by one replica cannot leave another's callers without.
	SpareKeepPercent = 10
	// maxSpareUse bounds how long a spare may be held: half the longest
	// guard.
	maxSpareUse = 125 * time.Millisecond
	// minSparePeriod is the shortest window spares are given under: its
	// guard (a fiftieth, 200 ms) leaves 100 ms for the call's hop to the
	// provider once a spare took its half.
	minSparePeriod = 10 * time.Second
)

// Spares returns the spare grants given with g (Ask.Prefetch). Each is
// ended by Done or Cancel like g; one not used within SpareUse must be
// cancelled unused.
func (g *Grant) Spares() []*Grant { return g.spares }

// SpareUse is how long after its grant a spare may still be sent: half the
// guard of the provider's shortest window (its model limits included), at
// most maxSpareUse; zero when the provider gives no spares (a minimum
// interval, which counts each call from the previous one's write; a
// window shorter than minSparePeriod; a pool, whose server the leader
// picks for each call by the servers' load at that moment). It is worked
// out from the config when the dispatcher is made or reconfigured.
func (d *Dispatcher) SpareUse() time.Duration {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.spareUse
}

// spareUseOf is SpareUse for a normalized config.
func spareUseOf(cfg Config) time.Duration {
	if cfg.Endpoints != nil {
		return 0
	}
	use := maxSpareUse
	configs := []*ratewindow.Config{&cfg.Limits}
	for _, m := range cfg.ModelLimits {
		configs = append(configs, m)
	}
	for _, c := range configs {
		if c == nil {
			continue
		}
		if c.MinInterval > 0 {
			return 0
		}
		for _, p := range periods(c) {
			if p < minSparePeriod {
				return 0
			}
			use = min(use, guard(p)/2)
		}
	}
	return use
}

// periods lists the periods of c's request and token windows.
func periods(c *ratewindow.Config) []time.Duration {
	var out []time.Duration
	for _, w := range c.Windows {
		out = append(out, w.Period)
	}
	if c.Tokens != nil {
		out = append(out, c.Tokens.Period)
	}
	for _, tw := range c.TokenWindows {
		out = append(out, tw.Period)
	}
	return out
}

// prefetch gives up to ask.Prefetch spares for calls like ask, as long as
// each is admissible at once and leaves SpareKeepPercent of every limit
// (called under d.mu, after ask's own grant).
func (d *Dispatcher) prefetch(now time.Time, ask Ask, model string, est, nsCost ratewindow.Cost) []*Grant {
	if ask.Prefetch <= 0 || d.spareUse == 0 {
		return nil
	}
	var spares []*Grant
	for len(spares) < ask.Prefetch {
		g, _ := d.spareGrant(now, ask, model, est, nsCost)
		if g == nil {
			break
		}
		spares = append(spares, g)
	}
	return spares
}

// spareGrant admits one spare for calls like ask, if it is admissible at
// once and leaves SpareKeepPercent of every limit: its budget, its scopes,
// the provider's windows and slots, its endpoint. Nil, with what refused
// it when the provider's limits did, when it is not (called under d.mu).
func (d *Dispatcher) spareGrant(now time.Time, ask Ask, model string, est, nsCost ratewindow.Cost) (*Grant, ratewindow.Decision) {
	if !d.endpointRoom() {
		return nil, ratewindow.Decision{Reason: ratewindow.ReasonConcurrency}
	}
	res, hold := d.budgetFor(now, ask.Namespace, ask.InputChars, ask.MaxTokens)
	if hold != nil {
		return nil, hold.decision()
	}
	if dec, full := d.scopeCheck(now, ask.Namespace, model, nsCost); full != nil {
		d.unbudget(now, res)
		return nil, dec
	}
	if dec := d.limiter.AdmitKeeping(now, est, SpareKeepPercent); !dec.Allowed {
		d.unbudget(now, res)
		return nil, dec
	}
	g := d.granted(now, ask, model, est, nsCost, res)
	if g == nil {
		return nil, ratewindow.Decision{Reason: ratewindow.ReasonNoEndpoint}
	}
	g.spare = true
	d.grantsOut++
	return g, ratewindow.Decision{Allowed: true}
}

// scopeUnadmit takes a spare given back unused out of its scopes' windows
// (called under d.mu).
func (d *Dispatcher) scopeUnadmit(at time.Time, namespace, model string, tokens ratewindow.Cost) {
	if t := d.tenants[namespace]; t != nil && t.scope.limiter != nil {
		t.scope.limiter.Unadmit(at, tokens)
	}
	if m := d.models[model]; m != nil && m.limiter != nil {
		m.limiter.Unadmit(at, tokens)
	}
}

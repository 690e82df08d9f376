package dispatch

import (
	"context"
	"math/big"
	"slices"
	"time"

	"github.com/llmquota/llmquota/internal/cost"
	"github.com/llmquota/llmquota/internal/provider"
	"github.com/llmquota/llmquota/internal/ratewindow"
)

// defaultWorstOutput is the output cap sent with, and reserved for, a call
// of a batch that sets no maxTokens (outputCap).
const defaultWorstOutput = 4096

// reservation is a call's worst-case cost set aside under every budget
// that applies to it: the provider's, its namespace's, or both.
type reservation struct {
	worst  *big.Rat
	meters []*cost.Meter
	// at is when it was admitted: its cost belongs to that UTC day and month.
	at time.Time
}

// budgetHold is why a call waits for a budget: the provider's
// (namespace "") or its namespace's.
type budgetHold struct {
	cost.Hold
	namespace string
}

// decision is the hold as a batch or a gateway call shows it: the
// provider's budget ("daily"), or a namespace's ("namespace/daily").
func (h *budgetHold) decision() ratewindow.Decision {
	dec := ratewindow.Decision{Reason: ratewindow.ReasonBudget, Window: h.Period, RetryAt: h.Until}
	if h.namespace != "" {
		dec.Window = NamespaceBudgetWindow + h.Period
	}
	return dec
}

// commitment is spend to persist before calls beyond it are sent, for the
// provider (namespace "") or a namespace.
type commitment struct {
	namespace string
	period    cost.Period
}

// tenant is a namespace's budgets at work: its spend, and what its
// budget held its calls with last (until its RetryAt).
type tenant struct {
	meter      *cost.Meter
	budgetHeld ratewindow.Decision
	// scope counts the namespace's own limits, if it has any (scoped.go).
	scope scoped
}

// NamespaceBudgetWindow prefixes the Window of a Decision held by a
// namespace's budget: "namespace/daily" or "namespace/monthly".
const NamespaceBudgetWindow = "namespace/"

// budget checks the item's worst-case cost against the budgets (called
// under d.mu). A nil hold means the call may go, with its cost reserved
// (nil without budgets); settle or unbudget ends the reservation.
func (d *Dispatcher) budget(now time.Time, b *batch, it Item) (*reservation, *budgetHold) {
	return d.budgetFor(now, b.Namespace, len(it.Prompt)+len(b.Params.System), int64(outputCap(b.Params)))
}

// budgetFor reserves the worst-case cost of a call from namespace of
// inputChars (estimated conservatively) and an output cap, under the
// provider's budgets and the namespace's (called under d.mu).
func (d *Dispatcher) budgetFor(now time.Time, namespace string, inputChars int, maxOutput int64) (*reservation, *budgetHold) {
	mine := d.cfg.Shares.budgetsOf(namespace)
	if !d.cfg.Budgets.Set() && !mine.Set() {
		return nil, nil
	}
	r := &reservation{worst: d.meter.Price(cost.WorstInputTokens(inputChars), maxOutput), at: now}
	if d.cfg.Budgets.Set() {
		if h := d.meter.Admit(now, r.worst, d.cfg.Budgets); h != nil {
			return nil, &budgetHold{Hold: *h}
		}
		r.meters = append(r.meters, d.meter)
	}
	if mine.Set() {
		t := d.tenant(namespace)
		if h := t.meter.Admit(now, r.worst, mine); h != nil {
			d.unbudget(now, r)
			return nil, &budgetHold{Hold: *h, namespace: namespace}
		}
		r.meters = append(r.meters, t.meter)
	}
	return r, nil
}

// tenant returns a namespace's budget state, made on first use.
func (d *Dispatcher) tenant(namespace string) *tenant {
	t := d.tenants[namespace]
	if t == nil {
		m, _ := cost.NewMeter(d.cfg.Prices) // the prices were checked by New and Reconfigure
		t = &tenant{meter: m}
		d.tenants[namespace] = t
	}
	return t
}

// holdTenant keeps a namespace's batch calls back until its budget resets
// (next skips them), and tells its batches (called under d.mu).
func (d *Dispatcher) holdTenant(h *budgetHold) {
	t := d.tenant(h.namespace)
	if dec := h.decision(); t.budgetHeld != dec {
		t.budgetHeld = dec
		d.tellBatches(func(b *batch) bool { return b.Namespace == h.namespace })
	}
}

// tellBatches tells the batches of, those with items left, that what
// holds them changed (called under d.mu; tellChanges calls them).
func (d *Dispatcher) tellBatches(of func(*batch) bool) {
	for _, b := range d.batches {
		if b.OnChange != nil && b.more() && of(b) {
			d.tell = append(d.tell, b.OnChange)
		}
	}
}

// tenantHold is what holds a batch's calls at now: its namespace's
// budget, its namespace's or its model's own limits, or Allowed.
func (d *Dispatcher) tenantHold(b *batch, now time.Time) ratewindow.Decision {
	if t := d.tenants[b.Namespace]; t != nil && now.Before(t.budgetHeld.RetryAt) {
		return t.budgetHeld
	}
	if dec, held := d.scopeHold(b, now); held {
		return dec
	}
	return ratewindow.Decision{Allowed: true}
}

// unbudget gives back the reservation of a call that was not sent (called
// under d.mu).
func (d *Dispatcher) unbudget(now time.Time, r *reservation) {
	if r == nil {
		return
	}
	for _, m := range r.meters {
		m.Settle(now, r.at, r.worst, 0, 0, false)
	}
}

// toCommit is the spend a commit hold asks to persist (called under d.mu).
func (d *Dispatcher) toCommit(h *budgetHold) commitment {
	if h.namespace == "" {
		return commitment{period: d.meter.ToCommit()}
	}
	return commitment{namespace: h.namespace, period: d.tenant(h.namespace).meter.ToCommit()}
}

// commitCost persists the spend committed ahead under budgets before any
// of it is spent, so a restart cannot overspend; on failure nothing is
// committed and the loop asks again after a second.
func (d *Dispatcher) commitCost(ctx context.Context, c commitment) {
	persist := d.cfg.PersistCost
	if c.namespace != "" {
		persist = nil
		if p := d.cfg.PersistNamespaceCost; p != nil {
			persist = func(ctx context.Context, period cost.Period) error { return p(ctx, c.namespace, period) }
		}
	}
	if persist != nil {
		if err := persist(ctx, c.period); err != nil {
			if ctx.Err() == nil {
				d.log.Error(err, "Persisting the committed spend; retrying", "namespace", c.namespace)
				select {
				case <-ctx.Done():
				case <-d.clock.After(time.Second):
				}
			}
			return
		}
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if c.namespace == "" {
		d.meter.Commit(c.period)
	} else {
		d.tenant(c.namespace).meter.Commit(c.period)
	}
}

// book settles a sent call's spend, against its budget reservations (r)
// or straight into the provider's meter; corrects its namespace's fair
// share from what it was charged at admission to what it used; and tells
// OnUsage who used what. It returns the answer's cost (nil for a failed
// call). The caller holds d.mu.
func (d *Dispatcher) book(now time.Time, who Usage, charged int64, r *reservation, resp *provider.Response, pe *provider.Error) *big.Rat {
	d.settleBudget(now, r, resp, pe)
	if pe == nil && (r == nil || !slices.Contains(r.meters, d.meter)) {
		d.meter.Add(now, resp.InputTokens, resp.OutputTokens)
	}
	used := int64(0)
	if pe == nil {
		used = resp.InputTokens + resp.OutputTokens
	}
	d.fair.charge(who.Namespace, used-charged)
	if pe != nil {
		return nil
	}
	who.InputTokens, who.OutputTokens = resp.InputTokens, resp.OutputTokens
	d.laneUse[laneIndex(who.Lane)].answered(now, used)
	who.Cost = d.meter.Price(resp.InputTokens, resp.OutputTokens)
	d.useTeam(now, who.Namespace, who.InputTokens, who.OutputTokens, who.Cost)
	if d.cfg.OnUsage != nil {
		d.cfg.OnUsage(who)
	}
	return who.Cost
}

// settleBudget ends a call's reservations (called under d.mu) and charges
// what it cost: its tokens when it answered; its worst case when the
// outcome is unknown (a timeout, a cut connection, a call cancelled in
// flight), since the provider may have run and billed it; nothing when the
// provider refused it.
func (d *Dispatcher) settleBudget(now time.Time, r *reservation, resp *provider.Response, pe *provider.Error) {
	if r == nil {
		return
	}
	for _, m := range r.meters {
		switch {
		case pe == nil:
			m.Settle(now, r.at, r.worst, resp.InputTokens, resp.OutputTokens, true)
		case pe.Class == provider.ClassTimeout || pe.Class == provider.ClassConnection || pe.Class == provider.ClassCanceled:
			m.Charge(now, r.at, r.worst)
		default:
			m.Settle(now, r.at, r.worst, 0, 0, false)
		}
	}
}

// SeedNamespaceCost restores the namespaces' committed spend after a
// restart. What was spent is not persisted call by call, so each is taken
// to have spent all it committed: safe, and it forgoes at most one
// commitment (a twentieth of its budget) per restart.
func (d *Dispatcher) SeedNamespaceCost(committed map[string]cost.Period) {
	d.mu.Lock()
	defer d.mu.Unlock()
	for ns, p := range committed {
		d.tenant(ns).meter.Seed(d.clock.Now(), p, p)
	}
}

// budgetsOf is a namespace's budgets.
func (s Shares) budgetsOf(namespace string) cost.Budgets {
	if b, ok := s.Budgets[namespace]; ok {
		return b
	}
	return s.DefaultBudgets
}

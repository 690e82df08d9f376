package dispatch

import (
	"context"
	"math/big"
	"time"

	"github.com/llmquota/llmquota/internal/cost"
	"github.com/llmquota/llmquota/internal/provider"
)

// defaultWorstOutput is the output a call is charged for in a budget when
// its batch sets no maxTokens: the provider's own cap is unknown here.
const defaultWorstOutput = 4096

// budget checks the item's worst-case cost against the provider's budgets
// (called under d.mu). A nil hold means the call may go, with worst
// reserved (nil without budgets); settle or unbudget ends the reservation.
func (d *Dispatcher) budget(now time.Time, b *batch, it Item) (worst *big.Rat, hold *cost.Hold) {
	out := int64(b.Params.MaxTokens)
	if out <= 0 {
		out = defaultWorstOutput
	}
	return d.budgetFor(now, len(it.Prompt)+len(b.Params.System), out)
}

// budgetFor reserves the worst-case cost of a call of inputChars (estimated
// conservatively) and an output cap under the budgets (called under d.mu).
func (d *Dispatcher) budgetFor(now time.Time, inputChars int, maxOutput int64) (worst *big.Rat, hold *cost.Hold) {
	if !d.cfg.Budgets.Set() {
		return nil, nil
	}
	worst = d.meter.Price(cost.WorstInputTokens(inputChars), maxOutput)
	if hold = d.meter.Admit(now, worst, d.cfg.Budgets); hold != nil {
		return nil, hold
	}
	return worst, nil
}

// unbudget gives back the reservation of a call that was not sent (called
// under d.mu).
func (d *Dispatcher) unbudget(now time.Time, worst *big.Rat) {
	if worst != nil {
		d.meter.Settle(now, worst, 0, 0, false)
	}
}

// commitCost persists the spend committed ahead under budgets before any
// of it is spent, so a restart cannot overspend; on failure nothing is
// committed and the loop asks again after a second.
func (d *Dispatcher) commitCost(ctx context.Context, p cost.Period) {
	if d.cfg.PersistCost == nil {
		d.mu.Lock()
		d.meter.Commit(p)
		d.mu.Unlock()
		return
	}
	if err := d.cfg.PersistCost(ctx, p); err != nil {
		if ctx.Err() == nil {
			d.log.Error(err, "Persisting the committed spend; retrying")
			select {
			case <-ctx.Done():
			case <-d.clock.After(time.Second):
			}
		}
		return
	}
	d.mu.Lock()
	d.meter.Commit(p)
	d.mu.Unlock()
}

// settleBudget ends a call's reservation (called under d.mu) and charges
// what it cost: its tokens when it answered; its worst case when the
// outcome is unknown (a timeout, a cut connection, a call cancelled in
// flight), since the provider may have run and billed it; nothing when the
// provider refused it.
// book settles a sent call's spend, against its budget reservation when
// one was made (worst) or straight into the meter; corrects its
// namespace's fair share from what it was charged at admission to what it
// used; and tells OnUsage who used what. The caller holds d.mu.
func (d *Dispatcher) book(now time.Time, who Usage, charged int64, worst *big.Rat, resp *provider.Response, pe *provider.Error) {
	if worst != nil {
		d.settleBudget(now, worst, resp, pe)
	} else if pe == nil {
		d.meter.Add(now, resp.InputTokens, resp.OutputTokens)
	}
	used := int64(0)
	if pe == nil {
		used = resp.InputTokens + resp.OutputTokens
	}
	d.fair.charge(who.Namespace, used-charged)
	if pe == nil && d.cfg.OnUsage != nil {
		who.InputTokens, who.OutputTokens = resp.InputTokens, resp.OutputTokens
		who.Cost = d.meter.Price(resp.InputTokens, resp.OutputTokens)
		d.cfg.OnUsage(who)
	}
}

func (d *Dispatcher) settleBudget(now time.Time, worst *big.Rat, resp *provider.Response, pe *provider.Error) {
	switch {
	case pe == nil:
		d.meter.Settle(now, worst, resp.InputTokens, resp.OutputTokens, true)
	case pe.Class == provider.ClassTimeout || pe.Class == provider.ClassConnection || pe.Class == provider.ClassCanceled:
		d.meter.Settle(now, worst, 0, 0, false)
		d.meter.Charge(now, worst)
	default:
		d.meter.Settle(now, worst, 0, 0, false)
	}
}

package dispatch

import (
	"math"

	"github.com/llmquota/llmquota/internal/cost"
	"github.com/llmquota/llmquota/internal/ratewindow"
)

// Shares divides a provider among the namespaces that compete for it.
type Shares struct {
	// Weights are namespaces' weights; a namespace not listed has
	// DefaultWeight. Weights are at least 1.
	Weights map[string]int32
	// DefaultWeight is the weight of a namespace not in Weights; 0 means 1.
	DefaultWeight int32
	// Budgets are namespaces' hard spending limits; a namespace not listed
	// has DefaultBudgets (none when unset).
	Budgets        map[string]cost.Budgets
	DefaultBudgets cost.Budgets
	// Limits are namespaces' own windows, tokens and concurrency, under
	// the provider's; a namespace not listed has DefaultLimits (none when
	// nil). Each namespace counts its own.
	Limits        map[string]*ratewindow.Config
	DefaultLimits *ratewindow.Config
}

// fairness keeps the virtual token counters of weighted fair sharing
// (VTC: Sheng et al., "Fairness in Serving Large Language Models", OSDI
// 2024, which the Gateway API Inference Extension and llm-d propose for
// the same question): each namespace's tokens served, divided by its
// weight, batch calls and gateway calls alike. The next batch call goes
// to the ready namespace with the lowest counter, so over time each
// namespace's share of tokens follows its weight. Only ready namespaces
// compete, so a share nobody uses goes to the others at once (work
// conserving); and a namespace that becomes active is lifted to the
// lowest counter among those that stayed active, so idle time banks no
// credit and its owner gets its share back from its next call on.
type fairness struct {
	shares Shares
	// served is tokens per weight, by namespace. A namespace at or below
	// the lift point while inactive is forgotten: it would be lifted to it
	// on return anyway.
	served map[string]float64
}

func (f *fairness) weight(ns string) float64 {
	if w, ok := f.shares.Weights[ns]; ok && w > 0 {
		return float64(w)
	}
	return float64(max(1, f.shares.DefaultWeight))
}

// inputEstimate is what a call is charged at admission: its input, about
// four characters a token. Its output is charged once the answer says
// what it was (book), so a call is never charged for a cap it did not use.
func inputEstimate(inputChars int) int64 { return int64(inputChars)/4 + 1 }

// charge counts tokens served to a namespace: the input estimate at
// admission, the difference once the answer's usage is known (negative
// for a call that used none).
func (f *fairness) charge(ns string, tokens int64) {
	if f.served == nil {
		f.served = map[string]float64{}
	}
	f.served[ns] += float64(tokens) / f.weight(ns)
}

// before orders namespaces for the next call: the lower counter first,
// then the name, so that the order is the same on every replay.
func (f *fairness) before(a, b string) bool {
	sa, sb := f.served[a], f.served[b]
	if sa != sb {
		return sa < sb
	}
	return a < b
}

// lift raises every namespace that has just become active (work found
// this turn, none the turn before: space.active and space.wasActive) to
// the lowest counter among those that stayed active, and forgets inactive
// namespaces at or below it, which would be lifted to it on return.
func (f *fairness) lift(spaces map[string]*space, turn uint64) {
	low := math.Inf(1)
	for ns, sp := range spaces {
		if sp.active == turn && sp.wasActive && f.served[ns] < low {
			low = f.served[ns]
		}
	}
	if math.IsInf(low, 1) {
		return
	}
	for ns, sp := range spaces {
		if sp.active == turn && !sp.wasActive && f.served[ns] < low {
			f.charge(ns, 0) // makes the map
			f.served[ns] = low
		}
	}
	for ns, v := range f.served {
		if sp, ok := spaces[ns]; (!ok || sp.active != turn) && v <= low {
			delete(f.served, ns)
		}
	}
}

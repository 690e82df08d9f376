package dispatch

import (
	"fmt"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr"
	clocktesting "k8s.io/utils/clock/testing"
)

// fairRun drives a saturated provider's scheduling the way step does, one
// call at a time at rate calls a second, answering each at once: next
// picks, the namespace is charged its input at admission and the rest of
// its usage at the answer. Namespace a's prompts are ten times b's, c's
// three times, so counting requests would give a ten times b's tokens.
// Every tenth call a also makes a gateway call of 60 tokens, which its
// share must pay for too.
type fairRun struct {
	d      *Dispatcher
	now    time.Time
	tokens map[string]int64
	// admit and answer charge a namespace; the control run counts
	// requests instead, to show the check fails for it.
	admit  func(ns string, charged int64)
	answer func(ns string, used, charged int64)
}

const fairRate = 100 // calls a second

func newFairRun(t *testing.T, weights map[string]int32) *fairRun {
	now := time.Date(2026, 12, 6, 9, 0, 0, 0, time.UTC)
	d, err := New(Config{Name: "p", Client: &stubClient{}, Shares: Shares{Weights: weights}}, nil, clocktesting.NewFakeClock(now), logr.Discard(), nil)
	if err != nil {
		t.Fatal(err)
	}
	r := &fairRun{d: d, now: now, tokens: map[string]int64{}}
	r.admit = func(ns string, charged int64) { d.fair.charge(ns, charged) }
	r.answer = func(ns string, used, charged int64) { d.fair.charge(ns, used-charged) }
	return r
}

func (r *fairRun) submit(ns string, promptChars int) {
	its := make([]Item, 30000)
	for i := range its {
		its[i] = Item{ID: fmt.Sprint(i), Prompt: strings.Repeat("x", promptChars)}
	}
	r.d.Submit(Batch{Key: ns + "/b", Namespace: ns, Size: len(its), Items: its})
}

// run makes n calls and returns the tokens each namespace used in them.
func (r *fairRun) run(n int) map[string]int64 {
	got := map[string]int64{}
	use := func(ns string, used, charged int64) {
		r.answer(ns, used, charged)
		got[ns] += used
		r.tokens[ns] += used
	}
	for i := range n {
		r.now = r.now.Add(time.Second / fairRate)
		if i%10 == 0 { // a's gateway call
			charged := inputEstimate(160)
			r.admit("a", charged)
			use("a", 60, charged)
			continue
		}
		b, _ := r.d.next(r.now)
		it := b.queue[0]
		charged := inputEstimate(len(it.Prompt))
		r.admit(b.Namespace, charged)
		b.take()
		use(b.Namespace, int64(len(it.Prompt))/4+20, charged)
	}
	return got
}

// sharesOff returns how far each namespace's share of tokens is from its
// weight's, relative to it, at worst.
func sharesOff(tokens map[string]int64, weights map[string]float64) (worst float64, report string) {
	var total int64
	var wsum float64
	for ns := range weights {
		total += tokens[ns]
		wsum += weights[ns]
	}
	for ns, w := range weights {
		share, want := float64(tokens[ns])/float64(total), w/wsum
		off := math.Abs(share-want) / want
		worst = max(worst, off)
		report += fmt.Sprintf(" %s %.3f (want %.3f)", ns, share, want)
	}
	return worst, report
}

// TestWeightedFairShareCountsTokens: three namespaces of weights 1:1:2
// saturate one provider for a minute, with prompts of different lengths
// and gateway calls beside the batches: each namespace's share of the
// tokens is within 10% of its weight's. A namespace that starts then has
// its share within one second. Counting requests instead fails the check.
func TestWeightedFairShareCountsTokens(t *testing.T) {
	weights := map[string]int32{"c": 2}
	r := newFairRun(t, weights)
	r.submit("a", 400)
	r.submit("b", 40)
	r.submit("c", 120)
	r.run(60 * fairRate)
	off, report := sharesOff(r.tokens, map[string]float64{"a": 1, "b": 1, "c": 2})
	t.Logf("a minute at %d calls/s, tokens by namespace:%s; worst %.1f%% off", fairRate, report, off*100)
	if off > 0.10 {
		t.Fatalf("shares of tokens off their weights by %.1f%%:%s", off*100, report)
	}

	r.submit("d", 80)
	second := r.run(fairRate)
	off, report = sharesOff(second, map[string]float64{"a": 1, "b": 1, "c": 2, "d": 1})
	t.Logf("the second after d started:%s; worst %.1f%% off", report, off*100)
	if off > 0.10 {
		t.Fatalf("in the second after d started, shares off by %.1f%%:%s", off*100, report)
	}

	t.Run("counting requests instead fails the check", func(t *testing.T) {
		c := newFairRun(t, weights)
		c.admit = func(ns string, _ int64) { c.d.fair.charge(ns, 1) }
		c.answer = func(string, int64, int64) {}
		c.submit("a", 400)
		c.submit("b", 40)
		c.submit("c", 120)
		c.run(60 * fairRate)
		if off, report := sharesOff(c.tokens, map[string]float64{"a": 1, "b": 1, "c": 2}); off <= 0.10 {
			t.Fatalf("request counting passed the token check (%.1f%% off):%s", off*100, report)
		}
	})
}

// TestIdleTimeBanksNoCredit: a namespace that was away is lifted to the
// lowest counter of those that stayed, so on return it shares from then
// on instead of taking every call until it caught up.
func TestIdleTimeBanksNoCredit(t *testing.T) {
	r := newFairRun(t, nil)
	r.submit("a", 40)
	r.run(10 * fairRate) // a alone for ten seconds
	r.submit("b", 40)
	second := r.run(fairRate)
	if off, report := sharesOff(second, map[string]float64{"a": 1, "b": 1}); off > 0.10 {
		t.Fatalf("after b arrived:%s", report)
	}
	if len(r.d.fair.served) > len(r.d.spaces)+1 {
		t.Fatalf("fairness keeps %d counters for %d namespaces", len(r.d.fair.served), len(r.d.spaces))
	}
}

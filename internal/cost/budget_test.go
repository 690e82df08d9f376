package cost

import (
	"math/big"
	"math/rand/v2"
	"testing"
	"time"
)

func mustMeter(t *testing.T, p Prices) *Meter {
	t.Helper()
	m, err := NewMeter(p)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// admit asks until the call is admitted or held, committing as asked, as
// the dispatcher does (persisting between ToCommit and Commit).
func admit(m *Meter, now time.Time, worst *big.Rat, b Budgets, persist func(Period)) *Hold {
	for {
		h := m.Admit(now, worst, b)
		if h == nil || !h.Commit {
			return h
		}
		p := m.ToCommit()
		if persist != nil {
			persist(p)
		}
		m.Commit(p)
	}
}

func TestBudgetsHoldUntilTheReset(t *testing.T) {
	m := mustMeter(t, Prices{PerRequest: "0.25"})
	b := Budgets{Daily: "1.00", Monthly: "1.50"}
	worst := m.Price(0, 0)
	day := time.Date(2026, 11, 30, 22, 0, 0, 0, time.UTC)
	for i := range 4 {
		if h := admit(m, day, worst, b, nil); h != nil {
			t.Fatalf("call %d of 4 fitting the daily 1.00: held %+v", i, h)
		}
	}
	h := admit(m, day, worst, b, nil)
	if h == nil || h.Period != "daily" || !h.Until.Equal(time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)) {
		t.Fatalf("the fifth call with four in flight: %+v, want held by the daily budget until midnight", h)
	}
	for range 4 {
		m.Settle(day, day, worst, 0, 0, true)
	}
	if got := m.Totals(day, Thresholds{}); got.Today != "1.00" {
		t.Fatalf("spent %s, want 1.00", got.Today)
	}
	// A manager restarted the same day with 1.00 of the month's 1.50 spent
	// and nothing of the day's: the month leaves room for two more.
	m2 := mustMeter(t, Prices{PerRequest: "0.25"})
	m2.Seed(day, Period{Day: "2026-11-30", Today: "0", Month: "2026-11", ThisMonth: "1.00"}, Period{})
	tomorrow := time.Date(2026, 11, 30, 23, 30, 0, 0, time.UTC)
	for i := range 2 {
		if h := admit(m2, tomorrow, worst, b, nil); h != nil {
			t.Fatalf("call %d of the month's last two: %+v", i, h)
		}
	}
	if h := admit(m2, tomorrow, worst, b, nil); h == nil || h.Period != "monthly" || !h.Until.Equal(time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)) {
		t.Fatalf("past the monthly budget: %+v, want held until the first of December", h)
	}
}

func TestNoBudgetNeverHolds(t *testing.T) {
	m := mustMeter(t, Prices{PerRequest: "1000"})
	for range 100 {
		if h := m.Admit(time.Now(), m.Price(0, 0), Budgets{}); h != nil {
			t.Fatalf("held without a budget: %+v", h)
		}
	}
}

func TestCommitIsRoundedUp(t *testing.T) {
	if got := ceilFormat(big.NewRat(1, 3)); got != "0.333334" {
		t.Fatalf("ceil of 1/3 = %s, want 0.333334", got)
	}
	if got := ceilFormat(big.NewRat(5, 4)); got != "1.25" {
		t.Fatalf("ceil of 1.25 = %s", got)
	}
}

// TestBudgetsHoldAcrossCrashes: random calls, random real costs up to the
// worst case, and crashes that lose every total not persisted; a restart
// seeds from what was persisted. A call's cost belongs to the day and
// month it was sent in. Whatever happens, the spend of a day never passes
// its budget, and a crash loses at most one commitment of it.
func TestBudgetsHoldAcrossCrashes(t *testing.T) {
	prices := Prices{InputPerMillion: "3", OutputPerMillion: "15", PerRequest: "0.0001"}
	b := Budgets{Daily: "0.50", Monthly: "0.80"}
	dailyLimit, _ := new(big.Rat).SetString(b.Daily)
	monthlyLimit, _ := new(big.Rat).SetString(b.Monthly)
	for seed := range uint64(50) {
		r := rand.New(rand.NewPCG(seed, 7))
		now := time.Date(2026, 11, 30, 20, 0, 0, 0, time.UTC) // across a day's and a month's end
		byDay, byMonth := map[string]*big.Rat{}, map[string]*big.Rat{}
		land := func(at time.Time, c *big.Rat) { // a call's cost counts in the day and month it was sent
			for key, m := range map[string]map[string]*big.Rat{at.Format(time.DateOnly): byDay, at.Format("2006-01"): byMonth} {
				if m[key] == nil {
					m[key] = new(big.Rat)
				}
				m[key].Add(m[key], c)
			}
		}
		// The provider's status.cost: the totals, written now and then, and
		// the commitments, written before calls beyond them.
		var totals, committed Period
		m := mustMeter(t, prices)
		type call struct {
			worst   *big.Rat
			in, out int64
			sent    time.Time
		}
		var flying []call
		for step := range 800 {
			now = now.Add(time.Duration(r.IntN(60)) * time.Second)
			switch op := r.IntN(10); {
			case op < 6: // a call
				in, maxOut := int64(r.IntN(4000)), int64(r.IntN(2000))
				worst := m.Price(in, maxOut)
				h := admit(m, now, worst, b, func(p Period) { committed = p })
				if h == nil {
					flying = append(flying, call{worst, in, int64(r.IntN(int(maxOut) + 1)), now})
				}
			case op < 9 && len(flying) > 0: // one settles
				c := flying[0]
				flying = flying[1:]
				m.Settle(now, c.sent, c.worst, c.in, c.out, true)
				land(c.sent, m.Price(c.in, c.out))
				if r.IntN(3) == 0 { // the status is written now and then
					tot := m.Totals(now, Thresholds{})
					totals = Period{Day: tot.Day, Today: tot.Today, Month: tot.Month, ThisMonth: tot.ThisMonth}
				}
			case op == 9 && r.IntN(8) == 0: // crash: calls in flight still land at the provider
				for _, c := range flying {
					land(c.sent, m.Price(c.in, c.out))
				}
				flying = nil
				m = mustMeter(t, prices)
				m.Seed(now, totals, committed)
			}
			for day, spent := range byDay {
				if spent.Cmp(dailyLimit) > 0 {
					t.Fatalf("seed %d step %d: %s spent %s, over the daily budget %s", seed, step, day, spent.FloatString(6), b.Daily)
				}
			}
			for month, spent := range byMonth {
				if spent.Cmp(monthlyLimit) > 0 {
					t.Fatalf("seed %d step %d: %s spent %s, over the monthly budget %s", seed, step, month, spent.FloatString(6), b.Monthly)
				}
			}
		}
		// Not vacuous: the budget, not the lack of calls, bounded the spend.
		if first := byDay["2026-11-30"]; first == nil || first.Cmp(big.NewRat(25, 100)) < 0 {
			t.Fatalf("seed %d: the first day spent %v of its 0.50: the budget was never approached", seed, first)
		}
	}
}

// Package cost prices calls exactly (decimal arithmetic, no floats) and
// keeps running totals per UTC day and month, with threshold checks for the
// CostAlert condition. It imports nothing from Kubernetes.
package cost

import (
	"fmt"
	"math/big"
	"time"
)

// Prices are USD decimal strings; empty means free.
type Prices struct {
	InputPerMillion, OutputPerMillion, PerRequest string
}

// Thresholds are USD decimal strings; empty means no alert.
type Thresholds struct {
	Daily, Monthly string
}

// Meter keeps the cost of calls per UTC day and month. It is not safe for
// concurrent use; the dispatcher guards it.
type Meter struct {
	in, out, per *big.Rat
	day, month   string
	today, mtd   *big.Rat
	// reservedDay and reservedMonth are the worst-case cost of the calls
	// admitted this day and month and still in flight (Admit to Settle). A
	// call's cost belongs to the day and month it was admitted in (see
	// Settle), so a new day starts with nothing reserved.
	reservedDay, reservedMonth *big.Rat
	// committedDay and committedMonth are the spend persisted as possibly
	// made (Commit); nextDay and nextMonth what Admit asked to commit.
	committedDay, committedMonth, nextDay, nextMonth *big.Rat
}

// NewMeter parses prices; an error names the bad one.
func NewMeter(p Prices) (*Meter, error) {
	m := &Meter{today: new(big.Rat), mtd: new(big.Rat), reservedDay: new(big.Rat), reservedMonth: new(big.Rat),
		committedDay: new(big.Rat), committedMonth: new(big.Rat), nextDay: new(big.Rat), nextMonth: new(big.Rat)}
	if err := m.Reprice(p); err != nil {
		return nil, err
	}
	return m, nil
}

// Reprice sets new prices for the calls from now on, keeping the totals
// so far; on an error (naming the bad price) nothing changes.
func (m *Meter) Reprice(p Prices) error {
	in, err := parse("inputPerMillionTokens", p.InputPerMillion)
	if err != nil {
		return err
	}
	out, err := parse("outputPerMillionTokens", p.OutputPerMillion)
	if err != nil {
		return err
	}
	per, err := parse("perRequest", p.PerRequest)
	if err != nil {
		return err
	}
	m.in, m.out, m.per = in, out, per
	return nil
}

func parse(name, s string) (*big.Rat, error) {
	r := new(big.Rat)
	if s == "" {
		return r, nil
	}
	if _, ok := r.SetString(s); !ok || r.Sign() < 0 {
		return nil, fmt.Errorf("%s %q is not a non-negative decimal", name, s)
	}
	return r, nil
}

var million = big.NewRat(1_000_000, 1)

// Price returns the cost of one call.
func (m *Meter) Price(inTokens, outTokens int64) *big.Rat {
	c := new(big.Rat).Set(m.per)
	c.Add(c, new(big.Rat).Quo(new(big.Rat).Mul(m.in, big.NewRat(inTokens, 1)), million))
	c.Add(c, new(big.Rat).Quo(new(big.Rat).Mul(m.out, big.NewRat(outTokens, 1)), million))
	return c
}

// Add records a call made at now; a new UTC day or month starts its total afresh.
func (m *Meter) Add(now time.Time, inTokens, outTokens int64) {
	m.roll(now)
	c := m.Price(inTokens, outTokens)
	m.today.Add(m.today, c)
	m.mtd.Add(m.mtd, c)
}

func (m *Meter) roll(now time.Time) {
	day, month := now.UTC().Format(time.DateOnly), now.UTC().Format("2006-01")
	if day != m.day {
		m.day, m.today, m.committedDay, m.reservedDay = day, new(big.Rat), new(big.Rat), new(big.Rat)
	}
	if month != m.month {
		m.month, m.mtd, m.committedMonth, m.reservedMonth = month, new(big.Rat), new(big.Rat), new(big.Rat)
	}
}

// Seed restores totals persisted earlier; a figure for a period that has
// passed is ignored. committed, the spend committed under budgets (see
// Admit), counts as spent where higher: the calls of a manager that
// stopped without writing its totals may have cost up to that much.
func (m *Meter) Seed(now time.Time, totals, committed Period) {
	m.roll(now)
	if totals.Day == m.day {
		m.today = maxOf(m.today, totals.Today)
	}
	if totals.Month == m.month {
		m.mtd = maxOf(m.mtd, totals.ThisMonth)
	}
	if committed.Day == m.day {
		m.today = maxOf(m.today, committed.Today)
		m.committedDay = maxOf(new(big.Rat), committed.Today)
	}
	if committed.Month == m.month {
		m.mtd = maxOf(m.mtd, committed.ThisMonth)
		m.committedMonth = maxOf(new(big.Rat), committed.ThisMonth)
	}
	// Today is part of this month: a day restored from its commitment (a
	// daily budget's, with its margin) lifts a month persisted without one.
	if m.mtd.Cmp(m.today) < 0 {
		m.mtd = new(big.Rat).Set(m.today)
	}
}

// Period is a day's and a month's amounts, as persisted: USD decimal
// strings for the UTC day (YYYY-MM-DD) and month (YYYY-MM) they are for.
type Period struct {
	Day, Today, Month, ThisMonth string
}

// maxOf is the largest of r and the decimal strings that parse.
func maxOf(r *big.Rat, decimals ...string) *big.Rat {
	out := new(big.Rat).Set(r)
	for _, s := range decimals {
		if v, ok := new(big.Rat).SetString(s); ok && v.Cmp(out) > 0 {
			out = v
		}
	}
	return out
}

// Totals are the running costs at a moment, as decimal strings.
type Totals struct {
	Day, Today, Month, ThisMonth string
	// DailyExceeded and MonthlyExceeded say a threshold is passed.
	DailyExceeded, MonthlyExceeded bool
	// Committed is the spend committed under budgets (see Commit), zero
	// until a budget commits.
	Committed Period
}

// Totals returns the totals at now against thresholds.
func (m *Meter) Totals(now time.Time, t Thresholds) Totals {
	m.roll(now)
	return Totals{
		Day: m.day, Today: Format(m.today), Month: m.month, ThisMonth: Format(m.mtd),
		DailyExceeded:   exceeds(m.today, t.Daily),
		MonthlyExceeded: exceeds(m.mtd, t.Monthly),
		Committed:       Period{Day: m.day, Today: Format(m.committedDay), Month: m.month, ThisMonth: Format(m.committedMonth)},
	}
}

func exceeds(total *big.Rat, threshold string) bool {
	if threshold == "" {
		return false
	}
	limit, ok := new(big.Rat).SetString(threshold)
	return ok && total.Cmp(limit) > 0
}

// Format renders USD with 6 decimals, trailing zeros trimmed to at least 2
// (cost is shown to the micro-dollar; status keeps it exact enough to sum).
func Format(r *big.Rat) string {
	s := r.FloatString(6)
	for len(s) > 0 && s[len(s)-1] == '0' && s[len(s)-3] != '.' {
		s = s[:len(s)-1]
	}
	return s
}

package cost

import (
	"math/big"
	"time"
)

// Budgets are hard spending limits, USD decimal strings per UTC day and
// month; empty means none.
type Budgets struct {
	Daily, Monthly string
}

// Set reports whether any budget applies.
func (b Budgets) Set() bool { return b.Daily != "" || b.Monthly != "" }

// Hold says why a call may not be sent now.
type Hold struct {
	// Period is "daily" or "monthly": the budget that has no room.
	Period string
	// Until is when that period resets (the next UTC midnight, or the
	// first of the next UTC month).
	Until time.Time
	// Commit is set instead when the budget has room but the spend
	// persisted so far does not cover the call: persist CommitDay and
	// CommitMonth (see Meter.Commit) and ask again.
	Commit bool
}

// commitShare is the part of a budget committed ahead at once: a crash
// loses at most this much of the budget, and the committed spend is written
// about 1/commitShare times per period.
const commitShare = 20

// WorstInputTokens bounds the input tokens of a prompt for budgets, for
// every tokenizer family the providers use: a token is never less than a
// byte in byte-level BPE (OpenAI's tiktoken, Anthropic's, Llama 3's) nor in
// SentencePiece with byte fallback (Gemini's, older Llamas'), so the bytes
// bound the tokens, plus a margin for the chat template of the prompt and
// the system text. English runs about 4 bytes a token: the bound reserves
// about four times what such a call costs, and the answer's usage settles
// it; only calls in flight hold the difference.
func WorstInputTokens(promptBytes int) int64 { return int64(promptBytes) + 16 }

// Admit checks a call of worst-case cost worst against the budgets at now:
// the spent total, plus what calls in flight may still cost, plus worst
// must fit every budget, and the persisted commitment. A nil Hold means
// the call may go: it is reserved, and Settle ends the reservation.
//
// A call's cost belongs to the UTC day and month it is admitted in (sent),
// wherever its answer lands: so what a day's commitment covers is exactly
// that day's calls, and a crash just after midnight, with calls of the day
// before still in flight, cannot charge them to a day whose commitment
// never counted them.
func (m *Meter) Admit(now time.Time, worst *big.Rat, b Budgets) *Hold {
	m.roll(now)
	if !b.Set() {
		return nil
	}
	needDay := new(big.Rat).Add(new(big.Rat).Add(m.today, m.reservedDay), worst)
	needMonth := new(big.Rat).Add(new(big.Rat).Add(m.mtd, m.reservedMonth), worst)
	utc := now.UTC()
	if over(needDay, b.Daily) {
		return &Hold{Period: "daily", Until: time.Date(utc.Year(), utc.Month(), utc.Day()+1, 0, 0, 0, 0, time.UTC)}
	}
	if over(needMonth, b.Monthly) {
		return &Hold{Period: "monthly", Until: time.Date(utc.Year(), utc.Month()+1, 1, 0, 0, 0, 0, time.UTC)}
	}
	if (b.Daily != "" && needDay.Cmp(m.committedDay) > 0) || (b.Monthly != "" && needMonth.Cmp(m.committedMonth) > 0) {
		m.nextDay, m.nextMonth = ahead(needDay, b.Daily), ahead(needMonth, b.Monthly)
		return &Hold{Commit: true}
	}
	m.reservedDay.Add(m.reservedDay, worst)
	m.reservedMonth.Add(m.reservedMonth, worst)
	return nil
}

// Settle ends the reservation of a call admitted at admitted with worst,
// and records what it really cost (nothing for a call that failed before
// any token), in the day and month it was admitted in: a call of a day
// that has passed counts in neither today's total nor its reservation.
func (m *Meter) Settle(now, admitted time.Time, worst *big.Rat, inTokens, outTokens int64, billed bool) {
	c := new(big.Rat)
	if billed {
		c = m.Price(inTokens, outTokens)
	}
	m.book(now, admitted, worst, c)
}

// Charge ends the reservation of a call admitted at admitted with worst and
// records its worst case as spent: a call whose outcome is unknown.
func (m *Meter) Charge(now, admitted time.Time, worst *big.Rat) {
	m.book(now, admitted, worst, worst)
}

// book moves a call's reservation to its cost, in the periods it was
// admitted in that are still current.
func (m *Meter) book(now, admitted time.Time, worst, c *big.Rat) {
	m.roll(now)
	utc := admitted.UTC()
	release := func(reserved, total *big.Rat) {
		reserved.Sub(reserved, worst)
		if reserved.Sign() < 0 {
			reserved.SetInt64(0)
		}
		total.Add(total, c)
	}
	if utc.Format(time.DateOnly) == m.day {
		release(m.reservedDay, m.today)
	}
	if utc.Format("2006-01") == m.month {
		release(m.reservedMonth, m.mtd)
	}
}

// ToCommit returns the spend to persist for the last Admit that asked for
// a commit, rounded up to the micro-dollar.
func (m *Meter) ToCommit() Period {
	return Period{Day: m.day, Today: ceilFormat(m.nextDay), Month: m.month, ThisMonth: ceilFormat(m.nextMonth)}
}

// Commit records that p (from ToCommit) was persisted.
func (m *Meter) Commit(p Period) {
	if r, ok := new(big.Rat).SetString(p.Today); ok && p.Day == m.day {
		m.committedDay = r
	}
	if r, ok := new(big.Rat).SetString(p.ThisMonth); ok && p.Month == m.month {
		m.committedMonth = r
	}
}

// ahead is what to commit for a need under budget: a share of the budget
// more than needed, never more than the budget.
func ahead(need *big.Rat, budget string) *big.Rat {
	limit, ok := new(big.Rat).SetString(budget)
	if budget == "" || !ok {
		return new(big.Rat).Set(need)
	}
	next := new(big.Rat).Add(need, new(big.Rat).Quo(limit, big.NewRat(commitShare, 1)))
	if next.Cmp(limit) > 0 {
		next.Set(limit)
	}
	return next
}

func over(total *big.Rat, budget string) bool {
	if budget == "" {
		return false
	}
	limit, ok := new(big.Rat).SetString(budget)
	return ok && total.Cmp(limit) > 0
}

// ceilFormat renders r with 6 decimals, rounded up, so a persisted
// commitment is never below what it stands for.
func ceilFormat(r *big.Rat) string {
	scaled := new(big.Rat).Mul(r, big.NewRat(1_000_000, 1))
	q, rem := new(big.Int).QuoRem(scaled.Num(), scaled.Denom(), new(big.Int))
	if rem.Sign() > 0 {
		q.Add(q, big.NewInt(1))
	}
	return Format(new(big.Rat).SetFrac(q, big.NewInt(1_000_000)))
}

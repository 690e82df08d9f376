package dispatch

import (
	"math/big"
	"slices"
	"strings"
	"time"

	"github.com/llmquota/llmquota/internal/cost"
)

// TopTeams is how many namespaces the provider's status lists by name; the
// rest are summed as OtherTeams, so the status stays small however many
// namespaces use the provider.
const TopTeams = 10

// OtherTeams names the sum of the namespaces past the top ones. It is no
// valid namespace name, so it cannot be taken for one.
const OtherTeams = "(others)"

// TeamUsage is what one namespace used of the provider, batches and
// gateway calls alike: cost today and this month (UTC, USD decimal
// strings), and this month's tokens.
type TeamUsage struct {
	Namespace           string
	Day, Today          string
	Month, ThisMonth    string
	TokensIn, TokensOut int64
}

// team is a namespace's running usage.
type team struct {
	day, month string
	today, mtd *big.Rat
	in, out    int64
}

func (t *team) roll(now time.Time) {
	day, month := now.UTC().Format(time.DateOnly), now.UTC().Format("2006-01")
	if t.day != day {
		t.day, t.today = day, new(big.Rat)
	}
	if t.month != month {
		t.month, t.mtd, t.in, t.out = month, new(big.Rat), 0, 0
	}
}

// useTeam adds an answered call's usage to its namespace (under d.mu).
func (d *Dispatcher) useTeam(now time.Time, namespace string, in, out int64, c *big.Rat) {
	t := d.teams[namespace]
	if t == nil {
		t = &team{}
		d.teams[namespace] = t
	}
	t.roll(now)
	t.today.Add(t.today, c)
	t.mtd.Add(t.mtd, c)
	t.in += in
	t.out += out
}

// teamUsage lists the namespaces' usage at now: the TopTeams that spent
// most this month (then by name), then the rest summed as OtherTeams
// (under d.mu). A namespace that used nothing this month is left out.
func (d *Dispatcher) teamUsage(now time.Time) []TeamUsage {
	type row struct {
		ns string
		t  *team
	}
	var rows []row
	others := &team{}
	others.roll(now)
	seen := false // any usage summed into others
	add := func(t *team) {
		others.today.Add(others.today, t.today)
		others.mtd.Add(others.mtd, t.mtd)
		others.in, others.out, seen = others.in+t.in, others.out+t.out, true
	}
	for ns, t := range d.teams {
		t.roll(now)
		switch {
		case t.mtd.Sign() == 0 && t.in+t.out == 0:
		case ns == OtherTeams: // seeded from the status: stays a sum
			add(t)
		default:
			rows = append(rows, row{ns, t})
		}
	}
	slices.SortFunc(rows, func(a, b row) int {
		if c := b.t.mtd.Cmp(a.t.mtd); c != 0 {
			return c
		}
		return strings.Compare(a.ns, b.ns)
	})
	var out []TeamUsage
	for i, r := range rows {
		if i >= TopTeams {
			add(r.t)
			continue
		}
		out = append(out, r.t.usage(r.ns))
	}
	if seen {
		out = append(out, others.usage(OtherTeams))
	}
	return out
}

func (t *team) usage(ns string) TeamUsage {
	return TeamUsage{Namespace: ns, Day: t.day, Today: cost.Format(t.today), Month: t.month, ThisMonth: cost.Format(t.mtd),
		TokensIn: t.in, TokensOut: t.out}
}

// SeedTeams restores the namespaces' usage from the provider's status
// after a restart; figures of a day or month that has passed are ignored.
func (d *Dispatcher) SeedTeams(usage []TeamUsage) {
	d.mu.Lock()
	defer d.mu.Unlock()
	now := d.clock.Now()
	for _, u := range usage {
		t := &team{}
		t.roll(now)
		if u.Month != t.month {
			continue
		}
		if v, ok := new(big.Rat).SetString(u.ThisMonth); ok {
			t.mtd = v
		}
		if v, ok := new(big.Rat).SetString(u.Today); ok && u.Day == t.day {
			t.today = v
		}
		t.in, t.out = u.TokensIn, u.TokensOut
		d.teams[u.Namespace] = t
	}
}

package dispatch

import (
	"fmt"
	"math/big"
	"testing"
	"time"

	"github.com/go-logr/logr"
	clocktesting "k8s.io/utils/clock/testing"
)

// TestTeamUsageTopAndOthers: the namespaces that spent most this month are
// listed by name, the rest summed as OtherTeams; a new day starts today
// afresh and a new month everything; a restart seeded from the list goes
// on from it.
func TestTeamUsageTopAndOthers(t *testing.T) {
	fc := clocktesting.NewFakeClock(time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC))
	d, _ := New(Config{Name: "p", Client: &stubClient{}}, nil, fc, logr.Discard(), nil)
	for i := range TopTeams + 3 { // team-00 spends 1 cent, team-01 2, ...
		d.useTeam(fc.Now(), fmt.Sprintf("team-%02d", i), 100, 10, big.NewRat(int64(i+1), 100))
	}
	list := d.teamUsage(fc.Now())
	if len(list) != TopTeams+1 || list[0].Namespace != "team-12" || list[0].ThisMonth != "0.13" || list[TopTeams-1].Namespace != "team-03" {
		t.Fatalf("top: %+v", list)
	}
	others := list[TopTeams]
	if others.Namespace != OtherTeams || others.ThisMonth != "0.06" || others.TokensIn != 300 || others.TokensOut != 30 {
		t.Fatalf("others: %+v, want the three cheapest summed (0.01+0.02+0.03)", others)
	}

	fc.SetTime(time.Date(2026, 11, 30, 23, 59, 0, 0, time.UTC))
	restarted, _ := New(Config{Name: "p", Client: &stubClient{}}, nil, fc, logr.Discard(), nil)
	restarted.SeedTeams(list)
	if again := restarted.teamUsage(fc.Now()); fmt.Sprint(again) != fmt.Sprint(list) {
		t.Fatalf("after a restart:\n%+v\nwant\n%+v", again, list)
	}
	fc.SetTime(time.Date(2026, 12, 1, 0, 1, 0, 0, time.UTC)) // a new month
	if again := restarted.teamUsage(fc.Now()); len(again) != 0 {
		t.Fatalf("a new month still lists %+v", again)
	}
}

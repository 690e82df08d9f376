package cost

import (
	"math/big"
	"testing"
	"time"
)

func TestPriceIsExact(t *testing.T) {
	m, err := NewMeter(Prices{InputPerMillion: "0.30", OutputPerMillion: "2.50", PerRequest: "0.001"})
	if err != nil {
		t.Fatal(err)
	}
	// 0.001 + 12*0.30/1e6 + 3*2.50/1e6 = 0.0010111
	if got := m.Price(12, 3); got.Cmp(big.NewRat(10111, 10_000_000)) != 0 {
		t.Fatalf("price %s, want 0.0010111", got.FloatString(10))
	}
}

func TestTotalsRollOverAndAlert(t *testing.T) {
	m, _ := NewMeter(Prices{PerRequest: "1.25"})
	th := Thresholds{Daily: "5.00", Monthly: "6"}
	day1 := time.Date(2026, 11, 30, 23, 0, 0, 0, time.UTC)
	for range 4 {
		m.Add(day1, 0, 0)
	}
	got := m.Totals(day1, th)
	if got.Today != "5.00" || got.DailyExceeded || got.ThisMonth != "5.00" {
		t.Fatalf("day 1: %+v (5.00 is at, not above, the threshold)", got)
	}
	m.Add(day1, 0, 0)
	if got := m.Totals(day1, th); got.Today != "6.25" || !got.DailyExceeded || !got.MonthlyExceeded {
		t.Fatalf("after the fifth call: %+v", got)
	}
	// Next day is also a new month: both totals start afresh.
	if got := m.Totals(day1.Add(2*time.Hour), th); got.Today != "0.00" || got.ThisMonth != "0.00" || got.Day != "2026-12-01" || got.DailyExceeded {
		t.Fatalf("next day: %+v", got)
	}
}

func TestSeedIgnoresPastPeriods(t *testing.T) {
	m, _ := NewMeter(Prices{})
	now := time.Date(2026, 11, 26, 9, 0, 0, 0, time.UTC)
	m.Seed(now, Period{Day: "2026-11-25", Today: "3.00", Month: "2026-11", ThisMonth: "10.50"}, Period{})
	got := m.Totals(now, Thresholds{})
	if got.Today != "0.00" || got.ThisMonth != "10.50" {
		t.Fatalf("got %+v: yesterday's total must not count today", got)
	}
}

// TestSeedKeepsTheMonthAtLeastTheDay: after a crash with only a daily
// budget, today comes back from its commitment (which holds a margin) and
// the month from the last totals: the month must not read less than the
// day it contains.
func TestSeedKeepsTheMonthAtLeastTheDay(t *testing.T) {
	m, _ := NewMeter(Prices{})
	now := time.Date(2026, 11, 26, 9, 0, 0, 0, time.UTC)
	m.Seed(now, Period{Day: "2026-11-26", Today: "1.00", Month: "2026-11", ThisMonth: "1.00"},
		Period{Day: "2026-11-26", Today: "1.20"})
	if got := m.Totals(now, Thresholds{}); got.Today != "1.20" || got.ThisMonth != "1.20" {
		t.Fatalf("got %+v: want today 1.20 (the commitment) and the month at least that", got)
	}
}

func TestBadPrice(t *testing.T) {
	if _, err := NewMeter(Prices{InputPerMillion: "-1"}); err == nil {
		t.Fatal("negative price accepted")
	}
}

func TestFormat(t *testing.T) {
	for in, want := range map[string]string{"0": "0.00", "1/3": "0.333333", "41/100": "0.41", "3/1000000": "0.000003"} {
		r, _ := new(big.Rat).SetString(in)
		if got := Format(r); got != want {
			t.Errorf("Format(%s) = %q, want %q", in, got, want)
		}
	}
}

package emulator

import (
	"fmt"
	"net/http"
	"slices"
	"time"
)

// CheckWindows proves from a request log that no API key ever sent more
// requests than a limit allows in any window of its period. It counts every
// arrival, refused or not: a request the server turned away still reached
// it, so a client that sends past a window fails this check even though the
// emulator refused the excess. (Counting only what the emulator admitted
// would re-derive the emulator's own decisions and could never fail.) It
// returns the first violation found, or nil.
func CheckWindows(log []Record, limits []Limit) error {
	byKey := map[string][]time.Time{}
	for _, rec := range log {
		byKey[rec.KeyID] = append(byKey[rec.KeyID], rec.Time)
	}
	keys := make([]string, 0, len(byKey))
	for k := range byKey {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		times := byKey[k]
		slices.SortFunc(times, func(a, b time.Time) int { return a.Compare(b) })
		for _, l := range limits {
			if err := checkWindow(times, l); err != nil {
				return fmt.Errorf("key %s: %w", k, err)
			}
		}
	}
	return nil
}

// checkWindow slides a window of l.Period over sorted arrival times.
func checkWindow(times []time.Time, l Limit) error {
	lo := 0
	for hi, t := range times {
		for !times[lo].After(t.Add(-l.Period)) {
			lo++
		}
		if n := hi - lo + 1; n > l.Requests {
			return fmt.Errorf("%d requests arrived in the %v ending %v, limit %d", n, l.Period, t.Format(time.RFC3339Nano), l.Requests)
		}
	}
	return nil
}

// Tally counts a request log by what the server did with each request.
type Tally struct {
	// Arrivals is every request that reached the server.
	Arrivals int
	// QuotaRefusals are 429s the server gave because a window was full: each
	// is a request the client should not have sent. Zero is the goal.
	QuotaRefusals int
	// InjectedFaults are the faults the emulator was told to inject (429s
	// with Retry-After, 5xx, hangs, resets, malformed bodies): the client
	// met them, it did not cause them.
	InjectedFaults int
	// ByStatus counts the HTTP statuses answered (0: a reset connection).
	ByStatus map[int]int
}

// Count tallies a request log.
func Count(log []Record) Tally {
	t := Tally{Arrivals: len(log), ByStatus: map[int]int{}}
	for _, r := range log {
		t.ByStatus[r.Status]++
		switch {
		case r.Fault != FaultNone:
			t.InjectedFaults++
		case r.Status == http.StatusTooManyRequests:
			t.QuotaRefusals++
		}
	}
	return t
}

// CheckInterval proves from a request log that no API key's requests
// arrived closer together than interval (a provider's minimum interval),
// returning the first pair that did, or nil.
func CheckInterval(log []Record, interval time.Duration) error {
	last := map[string]int{}
	for i, rec := range log {
		if j, ok := last[rec.KeyID]; ok {
			if gap := rec.Time.Sub(log[j].Time); gap < interval {
				return fmt.Errorf("requests %d and %d arrived %v apart, under the minimum interval %v", j, i, gap, interval)
			}
		}
		last[rec.KeyID] = i
	}
	return nil
}

package emulator

import (
	"fmt"
	"time"
)

// CheckWindows proves from a request log, by brute force, that no API key
// ever had more admitted requests than a limit allows in any window of its
// period. It returns the first violation found, or nil.
func CheckWindows(log []Record, limits []Limit) error {
	for i, rec := range log {
		for _, l := range limits {
			n := 0
			for _, prev := range log[:i+1] {
				if prev.Admitted && prev.KeyID == rec.KeyID && prev.Time.After(rec.Time.Add(-l.Period)) {
					n++
				}
			}
			if n > l.Requests {
				return fmt.Errorf("request %d at %v: %d admitted in the last %v, limit %d", i, rec.Time, n, l.Period, l.Requests)
			}
		}
	}
	return nil
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

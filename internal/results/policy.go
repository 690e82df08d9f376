package results

import "time"

// FlushPolicy bounds a batch's result writes: buffered results are written
// once Items of them wait, or once the oldest has waited Interval, or at
// once when they are the batch's last. So a batch writes at most once per
// Interval plus once per Items results, whatever its item rate, and a
// crashed manager re-sends at most Interval's worth of calls (or Items).
// The zero value writes every result at once.
type FlushPolicy struct {
	// Interval is the longest a result waits for its write.
	Interval time.Duration
	// Items is how many waiting results trigger a write.
	Items int
}

// Due reports whether results should be written at now: pending is how many
// wait, since when the oldest has, and last whether they complete the batch.
// When they should not yet, wait is how long until they should.
func (p FlushPolicy) Due(now, since time.Time, pending int, last bool) (due bool, wait time.Duration) {
	switch {
	case pending == 0:
		return false, 0
	case last, pending >= p.Items, !now.Before(since.Add(p.Interval)):
		return true, 0
	}
	return false, since.Add(p.Interval).Sub(now)
}

package dispatch

import "time"

// LaneStats is one lane's use of the provider: what the LLMProvider's
// status and `kubectl llmquota top` show side by side for interactive
// (gateway) calls and batch items.
type LaneStats struct {
	// Calls and Tokens count the calls answered in the last minute and the
	// tokens (input and output) they used.
	Calls, Tokens int64
	// Refused counts the calls refused for quota in the last minute: the
	// 429s the gateway gave. Batch items are never refused; they wait.
	Refused int64
	// InFlight are the calls sent and not yet answered; Waiting those that
	// wait for quota (interactive calls in the lane, batch items queued).
	InFlight, Waiting int
	// Standby are the standby grants lent (Lend) and not ended, sent or
	// not: the interactive lane's InFlight leaves them out.
	Standby int
}

// minuteBuckets is one second's counts in a minuteCounter.
const minuteBuckets = 60

// minuteCounter counts events over the last minute in one-second buckets:
// a fixed 60 slots whatever the rate, so a lane at thousands of calls a
// second costs no more memory than an idle one. A bucket is reused once
// its second is a minute old.
type minuteCounter struct {
	second                 [minuteBuckets]int64 // the Unix second each bucket counts
	calls, tokens, refused [minuteBuckets]int64
}

// bucket returns the index for now's second, emptied if it held an older
// second's counts.
func (c *minuteCounter) bucket(now time.Time) int {
	s := now.Unix()
	i := int(s % minuteBuckets)
	if c.second[i] != s {
		c.second[i], c.calls[i], c.tokens[i], c.refused[i] = s, 0, 0, 0
	}
	return i
}

// answered counts one answered call and its tokens at now.
func (c *minuteCounter) answered(now time.Time, tokens int64) {
	i := c.bucket(now)
	c.calls[i]++
	c.tokens[i] += tokens
}

// refusal counts one refused call at now.
func (c *minuteCounter) refusal(now time.Time) { c.refused[c.bucket(now)]++ }

// sum returns the counts of the minute that ends at now (its 60 whole
// seconds, now's included).
func (c *minuteCounter) sum(now time.Time) LaneStats {
	var s LaneStats
	oldest := now.Unix() - minuteBuckets
	for i := range minuteBuckets {
		if c.second[i] > oldest && c.second[i] <= now.Unix() {
			s.Calls += c.calls[i]
			s.Tokens += c.tokens[i]
			s.Refused += c.refused[i]
		}
	}
	return s
}

// laneStats returns both lanes' use at now (called under d.mu).
func (d *Dispatcher) laneStats(now time.Time) (interactive, batch LaneStats) {
	interactive = d.laneUse[laneIndexInteractive].sum(now)
	interactive.InFlight, interactive.Waiting, interactive.Standby = d.grantsOut-d.standbyOut, len(d.lane), d.standbyOut
	batch = d.laneUse[laneIndexBatch].sum(now)
	batch.InFlight = d.inFlight
	for _, b := range d.batches {
		batch.Waiting += len(b.queue)
	}
	return interactive, batch
}

// The lanes' indexes in Dispatcher.laneUse.
const (
	laneIndexBatch = iota
	laneIndexInteractive
)

// laneIndex maps a Usage's lane to its counter.
func laneIndex(lane string) int {
	if lane == LaneInteractive {
		return laneIndexInteractive
	}
	return laneIndexBatch
}

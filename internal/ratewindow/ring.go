package ratewindow

// ring keeps the most recent admission times, oldest first, in a circular
// buffer that grows on demand up to max entries and then overwrites the oldest.
type ring struct {
	buf  []int64
	head int // index of the oldest entry
	n    int
	max  int
}

// preallocateUpTo is the largest history allocated up front; larger ones
// grow as admissions arrive, so an idle limiter with a huge limit stays small.
const preallocateUpTo = 1 << 16

func newRing(max int) ring {
	if max == 0 {
		return ring{}
	}
	return ring{buf: make([]int64, min(max, preallocateUpTo)), max: max}
}

// at returns the i-th oldest entry.
func (r *ring) at(i int) int64 { return r.buf[r.index(i)] }

// newest returns the k-th newest entry, k >= 1.
func (r *ring) newest(k int) int64 { return r.at(r.n - k) }

func (r *ring) push(t int64) {
	if r.max == 0 {
		return
	}
	if r.n == len(r.buf) && r.n < r.max {
		r.grow()
	}
	if r.n < len(r.buf) {
		j := r.head + r.n
		if j >= len(r.buf) {
			j -= len(r.buf)
		}
		r.buf[j] = t
		r.n++
		return
	}
	r.buf[r.head] = t
	r.head++
	if r.head == len(r.buf) {
		r.head = 0
	}
}

func (r *ring) grow() {
	buf := make([]int64, min(2*len(r.buf), r.max))
	for i := 0; i < r.n; i++ {
		buf[i] = r.at(i)
	}
	r.buf, r.head = buf, 0
}

// countSince counts, among the newest k entries, those later than t.
// Entries are sorted, so a binary search finds the boundary.
func (r *ring) countSince(k int, t int64) int {
	k = min(k, r.n)
	lo, hi := r.n-k, r.n // first index in [lo, hi) whose entry is > t
	for lo < hi {
		mid := int(uint(lo+hi) >> 1)
		if r.at(mid) > t {
			hi = mid
		} else {
			lo = mid + 1
		}
	}
	return r.n - lo
}

// costRing is the tokens window: (time, cost) entries, oldest first, with
// the running sum of their costs. Expired entries are dropped by expire.
type costRing struct {
	t, cost []int64
	head, n int
	sum     int64
}

func (c *costRing) at(i int) (int64, int64) {
	j := c.index(i)
	return c.t[j], c.cost[j]
}

// index is the buffer index of the i-th oldest entry.
func (c *costRing) index(i int) int {
	j := c.head + i
	if j >= len(c.t) {
		j -= len(c.t)
	}
	return j
}

func (c *costRing) push(t, cost int64) {
	if c.n == len(c.t) {
		size := max(16, 2*len(c.t))
		nt, nc := make([]int64, size), make([]int64, size)
		for i := 0; i < c.n; i++ {
			nt[i], nc[i] = c.at(i)
		}
		c.t, c.cost, c.head = nt, nc, 0
	}
	j := c.head + c.n
	if j >= len(c.t) {
		j -= len(c.t)
	}
	c.t[j], c.cost[j] = t, cost
	c.n++
	c.sum += cost
}

// expire drops entries at or before cutoff.
func (c *costRing) expire(cutoff int64) {
	for c.n > 0 {
		t, cost := c.at(0)
		if t > cutoff {
			return
		}
		c.sum -= cost
		c.head++
		if c.head == len(c.t) {
			c.head = 0
		}
		c.n--
	}
}

// resized returns a ring of capacity max holding the newest entries of r
// that fit, oldest first.
func (r *ring) resized(max int) ring {
	out := newRing(max)
	for i := r.n - min(r.n, max); i < r.n; i++ {
		out.push(r.at(i))
	}
	return out
}

// remove takes out one entry equal to t, the newest such, and reports
// whether one was there. Entries are sorted, so the search stops at the
// first entry older than t: one admitted a moment ago is found in a few
// steps.
func (r *ring) remove(t int64) bool {
	for i := r.n - 1; i >= 0; i-- {
		switch at := r.at(i); {
		case at < t:
			return false
		case at == t:
			for j := i; j < r.n-1; j++ { // the newer entries move back one
				r.buf[r.index(j)] = r.at(j + 1)
			}
			r.n--
			return true
		}
	}
	return false
}

// index is the buffer index of the i-th oldest entry.
func (r *ring) index(i int) int {
	j := r.head + i
	if j >= len(r.buf) {
		j -= len(r.buf)
	}
	return j
}

// reduce takes cost off the newest entry at t whose cost covers it; with
// none, nothing changes.
func (c *costRing) reduce(t, cost int64) {
	for i := c.n - 1; i >= 0; i-- {
		at, was := c.at(i)
		if at < t {
			return
		}
		if at == t && was >= cost {
			c.cost[c.index(i)] -= cost
			c.sum -= cost
			return
		}
	}
}

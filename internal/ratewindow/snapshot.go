package ratewindow

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"time"
)

// Snapshot format, version 3. All integers are unsigned varints; times are
// Unix nanoseconds.
//
//	"RW" 0x03
//	takenAt lastAdmit+1 (0: none) failures backoffUntil retryAfter
//	reservedCalls reservedTokens (input and output together)
//	series(admissions) series(tokens)
//	reservedOutputTokens
//	k, then k times: len(name) name kind series(that window's tokens)
//	d, then d times: time input output (the deferred calls, see Defer)
//	CRC-32 (IEEE) of everything before it, 4 bytes little-endian
//
// Version 1, without the part after series(tokens), is read too: its
// reserved tokens count as input; so is version 2, without the deferred
// calls. The further token windows
// (Config.TokenWindows) are matched by name and kind on Restore; one not
// in the snapshot starts empty.
//
// A series is: granularity g (ns), entry count n, then n pairs of
// (delta from the previous entry's time in units of g, weight). Admissions
// have weight = how many admissions share that time; tokens have weight =
// cost. Up to maxSnapshotEntries entries are written exactly (g = 1); longer
// histories are merged into buckets whose times are rounded up to a multiple
// of g, which only ever holds calls back longer. A 1500/day window thus
// stays exact and under 12 KiB, and 1M/day stays under ~40 KiB.
const (
	snapshotVersion    = 3
	maxSnapshotEntries = 4096
)

// ErrCorrupt is returned, wrapped, by Restore for input that is not a
// snapshot this package wrote.
var ErrCorrupt = errors.New("ratewindow: corrupt or foreign snapshot")

// Snapshot appends the Limiter's state at now to dst and returns it. What is
// reserved (see Reserve) is written as spent: after a crash, Restore counts
// it as admitted at restore time, so no window is ever exceeded and at most
// one reservation of quota is lost.
func (l *Limiter) Snapshot(now time.Time, dst []byte) []byte {
	l.mu.Lock()
	defer l.mu.Unlock()
	start := len(dst)
	t := now.UnixNano()
	dst = append(dst, 'R', 'W', snapshotVersion)
	last := uint64(0)
	if l.hasAdmitted {
		last = uint64(l.lastAdmit) + 1
	}
	for _, v := range []uint64{uint64(t), last, uint64(l.failures), uint64(max(0, l.backoffUntil)),
		uint64(max(0, l.retryAfter)), uint64(l.reservedCalls), uint64(l.reservedToken.Total())} {
		dst = binary.AppendUvarint(dst, v)
	}

	// Admissions that can still hold a call back: the newest of the ring
	// that are inside the longest window.
	longest := int64(0)
	for _, w := range l.cfg.Windows {
		longest = max(longest, int64(w.Period))
	}
	n := l.admitted.countSince(l.admitted.n, t-longest)
	first := l.admitted.n - n
	dst = appendSeries(dst, n, func(i int) (int64, int64) { return l.admitted.at(first + i), 1 })

	var period time.Duration
	if tw := l.cfg.Tokens; tw != nil {
		period = tw.Period
	}
	dst = appendTokens(dst, &l.tokens, t-int64(period))
	dst = binary.AppendUvarint(dst, uint64(l.reservedToken.Output))
	dst = binary.AppendUvarint(dst, uint64(len(l.cfg.TokenWindows)))
	for i, tw := range l.cfg.TokenWindows {
		dst = binary.AppendUvarint(dst, uint64(len(tw.Name)))
		dst = append(dst, tw.Name...)
		dst = binary.AppendUvarint(dst, uint64(tw.Kind))
		dst = appendTokens(dst, &l.more[i], t-int64(tw.Period))
	}
	l.dropExpiredDeferred(t)
	dst = binary.AppendUvarint(dst, uint64(len(l.deferred)))
	for _, d := range l.deferred {
		dst = binary.AppendUvarint(dst, uint64(d.t))
		dst = binary.AppendUvarint(dst, uint64(d.cost.Input))
		dst = binary.AppendUvarint(dst, uint64(d.cost.Output))
	}
	return binary.LittleEndian.AppendUint32(dst, crc32.ChecksumIEEE(dst[start:]))
}

// appendTokens writes a token window's entries newer than cutoff as a
// series (none when the window is not configured: an empty ring).
func appendTokens(dst []byte, r *costRing, cutoff int64) []byte {
	skip := 0
	for skip < r.n {
		if at, _ := r.at(skip); at > cutoff {
			break
		}
		skip++
	}
	return appendSeries(dst, r.n-skip, func(i int) (int64, int64) { return r.at(skip + i) })
}

// appendSeries writes n sorted (time, weight) entries, merged into at most
// maxSnapshotEntries buckets with times rounded up.
func appendSeries(dst []byte, n int, entry func(int) (int64, int64)) []byte {
	g := int64(1)
	if n > maxSnapshotEntries {
		oldest, _ := entry(0)
		newest, _ := entry(n - 1)
		g = max(1, (newest-oldest)/(maxSnapshotEntries-1)+1)
	}
	// First pass counts buckets; second writes them.
	bucket := func(t int64) int64 { return (t + g - 1) / g * g }
	buckets := 0
	for i, prev := 0, int64(-1); i < n; i++ {
		t, _ := entry(i)
		if b := bucket(t); b != prev {
			buckets, prev = buckets+1, b
		}
	}
	dst = binary.AppendUvarint(dst, uint64(g))
	dst = binary.AppendUvarint(dst, uint64(buckets))
	prevBucket, cur, weight := int64(0), int64(-1), int64(0)
	flush := func() {
		dst = binary.AppendUvarint(dst, uint64((cur-prevBucket)/g))
		dst = binary.AppendUvarint(dst, uint64(weight))
		prevBucket = cur
	}
	for i := 0; i < n; i++ {
		t, w := entry(i)
		b := bucket(t)
		if b != cur && cur >= 0 {
			flush()
			weight = 0
		}
		cur = b
		weight += w
	}
	if cur >= 0 {
		flush()
	}
	return dst
}

// Restore returns a Limiter for cfg that continues from a snapshot taken by
// Snapshot. What was reserved when the snapshot was taken is counted as
// admitted at now. Input that is not a valid snapshot yields an error
// wrapping ErrCorrupt, never a panic.
func Restore(cfg Config, data []byte, now time.Time) (*Limiter, error) {
	l, err := New(cfg)
	if err != nil {
		return nil, err
	}
	if len(data) < 3+4 || data[0] != 'R' || data[1] != 'W' {
		return nil, fmt.Errorf("%w: no snapshot header", ErrCorrupt)
	}
	version := data[2]
	if version < 1 || version > snapshotVersion {
		return nil, fmt.Errorf("%w: unsupported version %d", ErrCorrupt, data[2])
	}
	body, sum := data[:len(data)-4], binary.LittleEndian.Uint32(data[len(data)-4:])
	if crc32.ChecksumIEEE(body) != sum {
		return nil, fmt.Errorf("%w: checksum mismatch", ErrCorrupt)
	}
	r := reader{buf: body[3:]}
	r.time() // takenAt: informational
	last := r.uvarint()
	failures := r.uvarint()
	l.backoffUntil, l.retryAfter = r.time(), r.time()
	reservedCalls, reservedTokens := r.uvarint(), r.uvarint()
	if r.err == nil && (failures > 1<<20 || reservedCalls > 1<<40 || reservedTokens > 1<<61 || last > 1<<62+1) {
		r.fail("counter out of range")
	}
	l.failures = int(failures)

	var total int64
	r.series(func(_, count int64) { total += count })
	if r.err != nil {
		return nil, r.err
	}
	// Replay only the newest entries the ring can hold.
	r = reader{buf: r.seriesStart(body)}
	skip := max(0, total-int64(l.admitted.max))
	r.series(func(t, count int64) {
		drop := min(skip, count)
		skip -= drop
		for range count - drop {
			l.admitted.push(t)
		}
	})
	r.series(func(t, cost int64) { l.tokens.push(t, cost) })
	if r.err == nil && l.cfg.Tokens == nil && l.tokens.n > 0 {
		l.tokens = costRing{} // written under a config with a tokens window; not ours now
	}
	reserved := Cost{Input: int64(reservedTokens)}
	if version >= 2 {
		reserved = l.restoreTokenWindows(&r, int64(reservedTokens))
	}
	if version >= 3 {
		l.restoreDeferred(&r)
	}
	if r.err == nil && len(r.buf) != 0 {
		r.fail("trailing bytes")
	}
	if r.err != nil {
		return nil, r.err
	}
	if last > 0 {
		l.lastAdmit, l.hasAdmitted = int64(last-1), true
	}
	if l.admitted.n > 0 { // keep the invariant lastAdmit >= every recorded admission
		l.lastAdmit, l.hasAdmitted = max(l.lastAdmit, l.admitted.newest(1)), true
	}

	// Calls reserved before the crash may have been spent any time up to
	// now: count them as spent now.
	at := now.UnixNano()
	if l.hasAdmitted {
		at = max(at, l.lastAdmit)
	}
	for range min(int64(reservedCalls), int64(l.admitted.max)) {
		l.admitted.push(at)
	}
	if reservedCalls > 0 {
		l.lastAdmit, l.hasAdmitted = at, true
	}
	l.addTokens(at, reserved)
	return l, nil
}

// restoreTokenWindows reads version 2's further token windows into those
// of the config with the same name and kind, and returns what was reserved
// of input and of output (of the reserved total).
func (l *Limiter) restoreTokenWindows(r *reader, reservedTotal int64) Cost {
	out := int64(r.uvarint())
	if r.err == nil && out > reservedTotal {
		r.fail("reserved output above the reserved total")
	}
	k := r.uvarint()
	if r.err == nil && k > uint64(len(r.buf)) {
		r.fail("bad token windows count")
	}
	for range k {
		n := r.uvarint()
		if r.err != nil || n > uint64(len(r.buf)) {
			r.fail("bad token window name")
			break
		}
		name := string(r.buf[:n])
		r.buf = r.buf[n:]
		kind := TokenKind(r.uvarint())
		var ring *costRing
		for i, tw := range l.cfg.TokenWindows {
			if tw.Name == name && tw.Kind == kind {
				ring = &l.more[i]
			}
		}
		r.series(func(t, cost int64) {
			if ring != nil {
				ring.push(t, cost)
			}
		})
	}
	return Cost{Input: reservedTotal - out, Output: out}
}

// restoreDeferred reads version 3's deferred calls: they count until
// their time has left the windows, whatever the config is now.
func (l *Limiter) restoreDeferred(r *reader) {
	n := r.uvarint()
	if r.err == nil && (n > MaxDeferred || n > uint64(len(r.buf))) {
		r.fail("bad deferred calls count")
	}
	prev := int64(0)
	for range n {
		t, in, out := r.time(), r.uvarint(), r.uvarint()
		if r.err == nil && (t < prev || in > 1<<61 || out > 1<<61) {
			r.fail("bad deferred call")
		}
		if r.err != nil {
			return
		}
		prev = t
		l.deferred = append(l.deferred, deferred{t: t, cost: Cost{Input: int64(in), Output: int64(out)}})
	}
}

// reader decodes varints, remembering the first error.
type reader struct {
	buf []byte
	err error
}

func (r *reader) fail(what string) {
	if r.err == nil {
		r.err = fmt.Errorf("%w: %s", ErrCorrupt, what)
	}
}

func (r *reader) uvarint() uint64 {
	if r.err != nil {
		return 0
	}
	v, n := binary.Uvarint(r.buf)
	if n <= 0 {
		r.fail("truncated or overlong integer")
		return 0
	}
	r.buf = r.buf[n:]
	return v
}

func (r *reader) time() int64 {
	v := r.uvarint()
	if v > 1<<62 {
		r.fail("time out of range")
		return 0
	}
	return int64(v)
}

// seriesStart returns the body from the first series on, for a second pass.
func (r *reader) seriesStart(body []byte) []byte {
	h := reader{buf: body[3:]}
	for range 7 {
		h.uvarint()
	}
	return h.buf
}

// series decodes one series, calling fn with each entry's time and weight.
func (r *reader) series(fn func(t, weight int64)) {
	g := r.uvarint()
	n := r.uvarint()
	if r.err != nil {
		return
	}
	if g == 0 || g > 1<<40 || n > uint64(len(r.buf)) { // each entry takes at least 2 bytes
		r.fail("bad series header")
		return
	}
	t, total := int64(0), uint64(0)
	for range n {
		delta, weight := r.uvarint(), r.uvarint()
		if r.err != nil {
			return
		}
		total += weight
		if weight == 0 || weight > 1<<61 || total > 1<<61 || delta > (1<<62)/g || uint64(t)+delta*g > 1<<62 {
			r.fail("bad series entry")
			return
		}
		t += int64(delta * g)
		fn(t, int64(weight))
	}
}

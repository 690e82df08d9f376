package ratewindow

import (
	"encoding/binary"
	"hash/crc32"
	"testing"
	"time"
)

func withChecksum(data []byte) []byte {
	if len(data) < 4 {
		return data
	}
	body := append([]byte(nil), data[:len(data)-4]...)
	return binary.LittleEndian.AppendUint32(body, crc32.ChecksumIEEE(body))
}

// FuzzRestore: any input either restores or fails with an error, never a
// panic; what restores snapshots and restores again.
func FuzzRestore(f *testing.F) {
	l, _ := New(geminiConfig())
	for i := range 30 {
		l.Admit(at(time.Duration(i)*3*time.Second), Cost{})
	}
	l.Reserve(3, Cost{})
	f.Add(l.Snapshot(at(2*time.Minute), nil))
	f.Add([]byte("RW\x01"))
	f.Add([]byte{})
	cfg := geminiConfig()
	cfg.Tokens = &Window{Name: "tokens", Limit: 1000, Period: time.Minute}
	cfg.TokenWindows = kindsConfig().TokenWindows
	k, _ := New(cfg)
	k.Admit(at(0), Cost{Input: 20, Output: 10})
	k.Reserve(2, Cost{Input: 3, Output: 4})
	f.Add(k.Snapshot(at(time.Second), nil))
	f.Fuzz(func(t *testing.T, data []byte) {
		// Try the input as is, and with a valid checksum so the fuzzer
		// reaches the decoder behind it.
		for _, in := range [][]byte{data, withChecksum(data)} {
			r, err := Restore(cfg, in, at(time.Hour))
			if err != nil {
				continue
			}
			r.Admit(at(time.Hour), tok(10))
			again := r.Snapshot(at(time.Hour), nil)
			if _, err := Restore(cfg, again, at(time.Hour)); err != nil {
				t.Fatalf("a snapshot of a restored limiter does not restore: %v", err)
			}
		}
	})
}

// FuzzDecisions drives the Limiter and the brute-force model with the same
// fuzzed operations: they must agree on every decision, and no window may
// ever be exceeded.
func FuzzDecisions(f *testing.F) {
	f.Add([]byte{0, 1, 2, 3, 4, 5, 6, 7, 8, 9}, uint8(3), uint8(7))
	f.Add([]byte("aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"), uint8(1), uint8(2))
	f.Fuzz(func(t *testing.T, ops []byte, limit, conc uint8) {
		cfg := Config{
			Windows:        []Window{{Name: "short", Limit: int64(limit%8) + 1, Period: 10 * time.Second}, {Name: "long", Limit: int64(limit%8) + 4, Period: time.Minute}},
			MinInterval:    time.Duration(limit%3) * time.Second,
			MaxConcurrency: int(conc % 4),
			InitialBackoff: time.Second,
			MaxBackoff:     8 * time.Second,
			Tokens:         &Window{Name: "tokens", Limit: 40, Period: 30 * time.Second},
		}
		l, err := New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		m := &model{cfg: cfg}
		now := t0.UnixNano()
		for _, op := range ops {
			now += int64(op>>4) * int64(time.Second) / 2
			switch op & 3 {
			case 0, 1:
				cost := int64(op & 0x0c)
				want := m.allows(now, cost)
				d := l.Admit(time.Unix(0, now), tok(cost))
				if d.Allowed != want {
					t.Fatalf("limiter allowed=%v (%v), model %v", d.Allowed, d.Reason, want)
				}
				if d.Allowed {
					m.admit(now, cost)
				}
			case 2:
				res := Result{Outcome: Outcome(op >> 2 & 3 % 3)}
				l.Release(time.Unix(0, now), res)
				m.release(now, res)
			case 3:
				res := Result{Outcome: OutcomeFailure, RetryAfter: time.Unix(0, now+int64(op>>2)*int64(time.Second))}
				l.Release(time.Unix(0, now), res)
				m.release(now, res)
			}
		}
		if v := m.violations(); len(v) > 0 {
			t.Fatal(v[0])
		}
	})
}

package ratewindow

import (
	"encoding/binary"
	"errors"
	"hash/crc32"
	"testing"
	"time"
)

// kindsConfig limits total tokens per minute and per day, and input and
// output tokens per minute apart, as Anthropic and Gemini do.
func kindsConfig() Config {
	return Config{
		Tokens: &Window{Name: "minute", Limit: 1000, Period: time.Minute},
		TokenWindows: []TokenWindow{
			{Window: Window{Name: "day", Limit: 5000, Period: 24 * time.Hour}, Kind: TokensTotal},
			{Window: Window{Name: "input-minute", Limit: 50, Period: time.Minute}, Kind: TokensInput},
			{Window: Window{Name: "output-minute", Limit: 30, Period: time.Minute}, Kind: TokensOutput},
		},
	}
}

// TestTokenWindowsCountTheirKind: each window counts its own part of a
// call's cost; the first to fill refuses with its name and when it frees;
// a cost larger than a window is refused at once; extra tokens at release
// count in the windows of their kind.
func TestTokenWindowsCountTheirKind(t *testing.T) {
	for _, c := range []struct {
		name    string
		cost    Cost
		admits  int
		reason  Reason
		window  string
		retryAt time.Time
	}{
		{"input fills first", Cost{Input: 20, Output: 5}, 2, ReasonTokens, "input-minute", at(time.Minute)},
		{"output fills first", Cost{Input: 5, Output: 12}, 2, ReasonTokens, "output-minute", at(time.Minute)},
		{"output alone", Cost{Output: 10}, 3, ReasonTokens, "output-minute", at(time.Minute)},
		{"larger than the output window", Cost{Output: 31}, 0, ReasonTooLarge, "output-minute", time.Time{}},
		{"larger than the input window", Cost{Input: 51}, 0, ReasonTooLarge, "input-minute", time.Time{}},
	} {
		t.Run(c.name, func(t *testing.T) {
			l, err := New(kindsConfig())
			if err != nil {
				t.Fatal(err)
			}
			n := 0
			var d Decision
			for ; n < 100; n++ {
				if d = l.Admit(at(time.Duration(n)*time.Second), c.cost); !d.Allowed {
					break
				}
			}
			if n != c.admits || d.Reason != c.reason || d.Window != c.window || !d.RetryAt.Equal(c.retryAt) {
				t.Fatalf("admitted %d, then %+v; want %d, then %s of %s until %v", n, d, c.admits, c.reason, c.window, c.retryAt)
			}
		})
	}

	t.Run("extra tokens count in their kind", func(t *testing.T) {
		l, _ := New(kindsConfig())
		l.Admit(at(0), Cost{Input: 10, Output: 10})
		l.Release(at(time.Second), Result{Outcome: OutcomeSuccess, Extra: Cost{Input: -5, Output: 15}})
		s := l.Stats(at(2 * time.Second))
		used := map[string]int64{s.Tokens.Name: s.Tokens.Used}
		for _, w := range s.TokenWindows {
			used[w.Name] = w.Used
		}
		want := map[string]int64{"minute": 30, "day": 30, "input-minute": 10, "output-minute": 25} // the total nets the parts: 5 in and 25 out
		for name, n := range want {
			if used[name] != n {
				t.Errorf("%s used %d, want %d (all: %v)", name, used[name], n, used)
			}
		}
		if d := l.Decide(at(2*time.Second), Cost{Output: 6}); d.Reason != ReasonTokens || d.Window != "output-minute" {
			t.Fatalf("6 more output tokens: %+v, want refused by output-minute", d)
		}
	})
}

func TestTokenWindowNamesAreUnique(t *testing.T) {
	cfg := kindsConfig()
	cfg.TokenWindows[1].Name = "minute"
	if _, err := New(cfg); err == nil {
		t.Fatal("two token windows named minute accepted")
	}
}

// TestSnapshotKeepsEveryTokenWindow: the further token windows and the
// reserved output come back after a restart, matched by name and kind; a
// window renamed since starts empty.
func TestSnapshotKeepsEveryTokenWindow(t *testing.T) {
	l, _ := New(kindsConfig())
	l.Admit(at(0), Cost{Input: 20, Output: 10})
	l.Reserve(1, Cost{Input: 5, Output: 8})
	data := l.Snapshot(at(time.Second), nil)

	restored, err := Restore(kindsConfig(), data, at(2*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	used := map[string]int64{}
	for _, w := range restored.Stats(at(2 * time.Second)).TokenWindows {
		used[w.Name] = w.Used
	}
	if want := map[string]int64{"day": 43, "input-minute": 25, "output-minute": 18}; used["day"] != want["day"] ||
		used["input-minute"] != want["input-minute"] || used["output-minute"] != want["output-minute"] {
		t.Fatalf("restored %v, want %v (what was admitted, and the reservation as spent)", used, want)
	}

	renamed := kindsConfig()
	renamed.TokenWindows[2].Name = "output-per-minute"
	r2, err := Restore(renamed, data, at(2*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	if w := r2.Stats(at(2 * time.Second)).TokenWindows[2]; w.Used != 8 {
		t.Fatalf("a renamed window restored %d used, want only the reservation (8)", w.Used)
	}
}

// TestRestoresVersionOneSnapshots: a snapshot of the format before token
// windows of kinds (version 1) restores, its reserved tokens as input.
func TestRestoresVersionOneSnapshots(t *testing.T) {
	dst := []byte{'R', 'W', 1}
	for _, v := range []uint64{uint64(at(time.Second).UnixNano()), uint64(at(0).UnixNano()) + 1, 0, 0, 0, 0, 7} {
		dst = binary.AppendUvarint(dst, v)
	}
	dst = appendSeries(dst, 1, func(int) (int64, int64) { return at(0).UnixNano(), 1 })
	dst = appendSeries(dst, 1, func(int) (int64, int64) { return at(0).UnixNano(), 30 })
	dst = binary.LittleEndian.AppendUint32(dst, crc32.ChecksumIEEE(dst))
	l, err := Restore(kindsConfig(), dst, at(2*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	s := l.Stats(at(2 * time.Second))
	if s.Tokens.Used != 37 || s.TokenWindows[1].Used != 7 || s.TokenWindows[2].Used != 0 {
		t.Fatalf("tokens %d (want 30 + 7 reserved), input %d (want 7), output %d (want 0)", s.Tokens.Used, s.TokenWindows[1].Used, s.TokenWindows[2].Used)
	}
	if _, err := Restore(kindsConfig(), []byte("RW\x03"+"xxxx"), at(0)); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("version 3: %v, want ErrCorrupt", err)
	}
}

// TestReconfigureKeepsTokenWindowsByName: an edit that keeps a window's
// name and kind keeps what it counted.
func TestReconfigureKeepsTokenWindowsByName(t *testing.T) {
	l, _ := New(kindsConfig())
	l.Admit(at(0), Cost{Input: 20, Output: 10})
	cfg := kindsConfig()
	cfg.TokenWindows = cfg.TokenWindows[1:] // the day window goes; input and output stay
	if err := l.Reconfigure(cfg); err != nil {
		t.Fatal(err)
	}
	s := l.Stats(at(time.Second))
	if len(s.TokenWindows) != 2 || s.TokenWindows[0].Used != 20 || s.TokenWindows[1].Used != 10 {
		t.Fatalf("after the edit: %+v", s.TokenWindows)
	}
}

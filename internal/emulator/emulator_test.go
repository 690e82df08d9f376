package emulator

import (
	"bytes"
	"encoding/json"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"testing"
	"time"
)

// fakeClock is a settable clock for the emulator.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

func post(t *testing.T, url, key, prompt string) *http.Response {
	t.Helper()
	body, _ := json.Marshal(map[string]any{"model": "claude", "max_tokens": 16, "messages": []any{map[string]any{"role": "user", "content": prompt}}})
	req, _ := http.NewRequest(http.MethodPost, url+"/v1/messages", bytes.NewReader(body))
	req.Header.Set("x-api-key", key)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	return resp
}

// TestQuotaIsExact drives two keys with random arrivals on a fake clock and
// recounts from the request log, by brute force: admitted requests never
// exceed a window, a 429 comes only when a window is full, and its
// Retry-After is the time until a slot frees, rounded up to a second.
func TestQuotaIsExact(t *testing.T) {
	clock := &fakeClock{now: time.Date(2026, 11, 26, 9, 0, 0, 0, time.UTC)}
	limits := []Limit{{Requests: 5, Period: 10 * time.Second}, {Requests: 12, Period: time.Minute}}
	srv := httptest.NewServer(New(Config{Limits: limits, Now: clock.Now}))
	defer srv.Close()

	r := rand.New(rand.NewPCG(7, 7))
	keys := []string{"key-a", "key-b"}
	retryAfter := map[int]int{} // log index -> Retry-After seconds
	for i := range 600 {
		clock.Advance(time.Duration(r.IntN(3000)) * time.Millisecond)
		resp := post(t, srv.URL, keys[r.IntN(2)], "p"+strconv.Itoa(i))
		if resp.StatusCode == http.StatusTooManyRequests {
			secs, err := strconv.Atoi(resp.Header.Get("Retry-After"))
			if err != nil {
				t.Fatalf("429 without a Retry-After in seconds: %q", resp.Header.Get("Retry-After"))
			}
			retryAfter[i] = secs
		}
	}

	records := srvLog(t, srv)
	refused := 0
	for i, rec := range records {
		var inWindow []int // per limit: admitted requests of this key in the window ending now
		var full bool
		var wait time.Duration
		for _, l := range limits {
			var times []time.Time
			for _, prev := range records[:i] {
				if prev.KeyID == rec.KeyID && prev.Admitted && prev.Time.After(rec.Time.Add(-l.Period)) {
					times = append(times, prev.Time)
				}
			}
			inWindow = append(inWindow, len(times))
			if len(times) >= l.Requests {
				full = true
				wait = max(wait, times[len(times)-l.Requests].Add(l.Period).Sub(rec.Time))
			}
		}
		switch {
		case rec.Admitted && full:
			t.Fatalf("request %d admitted with windows at %v of %v", i, inWindow, limits)
		case !rec.Admitted && !full:
			t.Fatalf("request %d refused with room in every window (%v)", i, inWindow)
		case !rec.Admitted:
			refused++
			want := int((wait + time.Second - 1) / time.Second)
			if retryAfter[i] != want {
				t.Fatalf("request %d: Retry-After %d, want %d (slot frees in %v)", i, retryAfter[i], want, wait)
			}
		}
	}
	if refused == 0 {
		t.Fatal("the schedule never filled a window")
	}
}

// srvLog fetches the log of the server behind an httptest.Server.
func srvLog(t *testing.T, s *httptest.Server) []Record {
	t.Helper()
	return s.Config.Handler.(*Server).Log()
}

func TestLogNeverHoldsTheKey(t *testing.T) {
	emu := New(Config{})
	srv := httptest.NewServer(emu)
	defer srv.Close()
	post(t, srv.URL, "sk-very-secret", "hello")
	b, _ := json.Marshal(emu.Log())
	if bytes.Contains(b, []byte("sk-very-secret")) {
		t.Fatal("the request log holds the API key")
	}
}

func TestScriptThenRates(t *testing.T) {
	emu := New(Config{Script: []Fault{FaultServerError, FaultNone, FaultOverloaded}, Faults: FaultRates{Unavailable: 1}})
	srv := httptest.NewServer(emu)
	defer srv.Close()
	var got []int
	for i := range 5 {
		got = append(got, post(t, srv.URL, "k", strconv.Itoa(i)).StatusCode)
	}
	want := []int{500, 200, 529, 503, 503}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("statuses %v, want %v", got, want)
		}
	}
}

func TestParseFlags(t *testing.T) {
	l, err := ParseLimits("10/10s, 600/1h")
	if err != nil || len(l) != 2 || l[0] != (Limit{10, 10 * time.Second}) || l[1] != (Limit{600, time.Hour}) {
		t.Fatalf("got %v, %v", l, err)
	}
	for _, bad := range []string{"10", "x/1m", "0/1m", "5/soon"} {
		if _, err := ParseLimits(bad); err == nil {
			t.Errorf("ParseLimits(%q) accepted", bad)
		}
	}
	if s, err := ParseScript("429,,hang"); err != nil || len(s) != 3 || s[1] != FaultNone {
		t.Fatalf("got %v, %v", s, err)
	}
	if _, err := ParseScript("explode"); err == nil {
		t.Fatal("unknown fault accepted")
	}
}

func TestCheckWindowsFindsAViolation(t *testing.T) {
	t0 := time.Date(2026, 11, 26, 9, 0, 0, 0, time.UTC)
	log := []Record{{Time: t0, KeyID: "a", Admitted: true}, {Time: t0.Add(time.Second), KeyID: "b", Admitted: true},
		{Time: t0.Add(3 * time.Second), KeyID: "a", Admitted: true}, {Time: t0.Add(61 * time.Second), KeyID: "a", Admitted: true}}
	limits := []Limit{{Requests: 2, Period: time.Minute}}
	if err := CheckWindows(log, limits); err != nil {
		t.Fatalf("two arrivals per key in any minute is within 2/min: %v", err)
	}
	// A refused arrival still counts: the client sent it.
	log = append(log, Record{Time: t0.Add(59 * time.Second), KeyID: "a", Status: http.StatusTooManyRequests})
	if err := CheckWindows(log, limits); err == nil {
		t.Fatal("a third arrival of key a within the minute, refused by the server, was not found")
	}
}

// TestCheckWindowsFailsForAClientThatExceedsThem: a client that sends 8
// requests against 5 a minute, over real HTTP. The emulator refuses the
// excess, so counting only what it admitted would pass; the check counts
// arrivals and fails, and the tally names the three quota refusals apart
// from the injected fault.
func TestCheckWindowsFailsForAClientThatExceedsThem(t *testing.T) {
	limits := []Limit{{Requests: 5, Period: time.Minute}}
	srv := httptest.NewServer(New(Config{Limits: limits, Script: []Fault{FaultNone, FaultServerError}}))
	defer srv.Close()
	emu := srv.Config.Handler.(*Server)
	for i := range 5 {
		post(t, srv.URL, "key", "within "+strconv.Itoa(i))
	}
	if err := CheckWindows(emu.Log(), limits); err != nil {
		t.Fatalf("5 arrivals against 5 a minute: %v", err)
	}
	for i := range 3 {
		post(t, srv.URL, "key", "over "+strconv.Itoa(i))
	}
	if err := CheckWindows(emu.Log(), limits); err == nil {
		t.Fatal("8 arrivals in a minute against 5 a minute passed the check")
	}
	got := Count(emu.Log())
	if got.Arrivals != 8 || got.QuotaRefusals != 3 || got.InjectedFaults != 1 || got.ByStatus[http.StatusInternalServerError] != 1 {
		t.Fatalf("tally %+v, want 8 arrivals, 3 quota refusals, 1 injected 500", got)
	}
}

// TestCountTellsInjected429sFromQuotaRefusals: an injected 429 is a fault
// the client met, not a window it overran.
func TestCountTellsInjected429sFromQuotaRefusals(t *testing.T) {
	srv := httptest.NewServer(New(Config{Limits: []Limit{{Requests: 2, Period: time.Minute}}, Script: []Fault{FaultRateLimit}}))
	defer srv.Close()
	for i := range 4 { // the injected 429 takes no slot: two are admitted, the fourth is refused
		post(t, srv.URL, "key", "p"+strconv.Itoa(i))
	}
	got := Count(srv.Config.Handler.(*Server).Log())
	if got.QuotaRefusals != 1 || got.InjectedFaults != 1 || got.ByStatus[http.StatusTooManyRequests] != 2 {
		t.Fatalf("tally %+v, want one injected 429 and one quota refusal", got)
	}
}

// TestOnRequestStreamsTheLog: the streamed records are the log, in order,
// quota refusals included.
func TestOnRequestStreamsTheLog(t *testing.T) {
	var streamed []Record
	emu := New(Config{Limits: []Limit{{Requests: 2, Period: time.Minute}}, OnRequest: func(r Record) { streamed = append(streamed, r) }})
	srv := httptest.NewServer(emu)
	defer srv.Close()
	for i := range 3 {
		post(t, srv.URL, "key", "p"+strconv.Itoa(i))
	}
	log := emu.Log()
	if len(streamed) != 3 || len(log) != 3 {
		t.Fatalf("streamed %d, logged %d; want 3 and 3", len(streamed), len(log))
	}
	for i := range log {
		if streamed[i] != log[i] {
			t.Fatalf("record %d: streamed %+v, logged %+v", i, streamed[i], log[i])
		}
	}
	if streamed[2].Status != http.StatusTooManyRequests || streamed[2].Admitted {
		t.Fatalf("the third request: %+v, want a 429 not admitted", streamed[2])
	}
}

func TestCheckIntervalFindsAnEarlyRequest(t *testing.T) {
	t0 := time.Date(2026, 11, 27, 9, 0, 0, 0, time.UTC)
	log := []Record{{Time: t0, KeyID: "a"}, {Time: t0.Add(50 * time.Millisecond), KeyID: "b"}, {Time: t0.Add(100 * time.Millisecond), KeyID: "a"}}
	if err := CheckInterval(log, 100*time.Millisecond); err != nil {
		t.Fatalf("an exact interval, and another key in between: %v", err)
	}
	log = append(log, Record{Time: t0.Add(199 * time.Millisecond), KeyID: "a"})
	if err := CheckInterval(log, 100*time.Millisecond); err == nil {
		t.Fatal("a request 99ms after the last of its key passed a 100ms interval")
	}
}

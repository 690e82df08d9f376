package gateway_test

import (
	"bytes"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"k8s.io/utils/ptr"

	llmv1 "github.com/llmquota/llmquota/api/v1alpha1"
	"github.com/llmquota/llmquota/internal/dispatch"
	"github.com/llmquota/llmquota/internal/emulator"
	"github.com/llmquota/llmquota/internal/gateway"
)

// TestNewLeaderCountsTheGatewaysCallsInFlight: two gateway calls hold both
// of a provider's concurrency slots when another manager takes over. The
// new leader hears from the three gateway replicas before it admits
// anything, so two more calls wait for the first two to end: the provider
// never serves more than two at once. Counted from zero instead, the new
// leader sent the next two at once, four at the server.
func TestNewLeaderCountsTheGatewaysCallsInFlight(t *testing.T) {
	b := newBed(t, 100, time.Minute)
	emu, _ := b.addProviderWith(t, "slow", 100, time.Minute, providerOptions{
		dispatch: func(c *dispatch.Config) { c.Limits.MaxConcurrency = 2 },
		emulator: func(c *emulator.Config) { c.Latency = 2 * time.Second },
	})
	answered := make(chan int, 4)
	call := func(base string) {
		req, _ := http.NewRequest(http.MethodPost, base+"/v1/chat/completions",
			bytes.NewReader([]byte(`{"model":"slow","messages":[{"role":"user","content":"a long answer"}]}`)))
		req.Header.Set("Authorization", "Bearer "+b.ops)
		req.Header.Set(gateway.MaxWaitHeader, "60s")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			answered <- 0
			return
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		_ = resp.Body.Close()
		answered <- resp.StatusCode
	}
	go call(b.gateways[0])
	go call(b.gateways[1])
	deadline := time.Now().Add(30 * time.Second)
	for len(emu.Log()) < 2 {
		if time.Now().After(deadline) {
			t.Fatalf("%d calls reached the provider, want the first 2", len(emu.Log()))
		}
		time.Sleep(5 * time.Millisecond)
	}
	next := b.nextLeader(t)
	go call(b.gateways[2])
	go call(b.gateways[2])
	for range 4 {
		if code := <-answered; code != http.StatusOK {
			t.Fatalf("a call was answered %d, want 200", code)
		}
	}
	if n := len(emu.Log()); n != 4 {
		t.Fatalf("the provider saw %d calls, want 4", n)
	}
	if most := emu.MaxInFlight(); most > 2 {
		t.Fatalf("the provider served %d calls at once across the change of leader; its limit is 2", most)
	}
	select {
	case <-next.Ready():
	default:
		t.Fatal("the new leader answered calls before it was ready")
	}
}

// TestGatewayServesFromStandbyWhileNoManagerLeads: a provider lends each
// gateway replica 3 standby grants for the namespace and model it served.
// With the quota authority gone, the replica answers 3 calls from them at
// once (a fourth gets 503, as with no standby); the leader counted them
// from the lend, so once it answers again the window admits exactly the
// rest of its 10 (calls, and standby grants lent anew), and the provider's
// own log shows no window exceeded.
func TestGatewayServesFromStandbyWhileNoManagerLeads(t *testing.T) {
	b := newBed(t, 100, time.Minute)
	emu, d := b.addProviderWith(t, "steady", 10, time.Minute, providerOptions{
		spec: func(s *llmv1.LLMProviderSpec) {
			s.Interactive = &llmv1.InteractivePolicy{StandbyCalls: ptr.To(int32(3))}
		},
		dispatch: func(c *dispatch.Config) { c.StandbyCalls = 3 },
	})
	body := `{"model":"steady","messages":[{"role":"user","content":"through an election"}]}`
	noWait := http.Header{gateway.MaxWaitHeader: {"0"}}
	if code, out := post(t, b, b.ops, body, noWait); code != http.StatusOK {
		t.Fatalf("first call: %d %s", code, out)
	}
	deadline := time.Now().Add(20 * time.Second)
	for b.standby[0].Stats().Held != 3 {
		if time.Now().After(deadline) {
			t.Fatalf("the replica holds %d standby grants, want the provider's 3", b.standby[0].Stats().Held)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if q := d.Quota(); q.Windows[0].Used != 4 {
		t.Fatalf("the leader counts %d in the window, want the call and the 3 lent", q.Windows[0].Used)
	}

	b.authDown.Store(true)
	for i := range 3 {
		if code, out := post(t, b, b.ops, body, noWait); code != http.StatusOK {
			t.Fatalf("call %d with no authority and standby held: %d %s", i, code, out)
		}
	}
	if code, out := post(t, b, b.ops, body, noWait); code != http.StatusServiceUnavailable || !strings.Contains(out, "quota_unavailable") {
		t.Fatalf("a fourth call with the standby spent: %d %s, want 503", code, out)
	}
	if got := b.standby[0].Stats().Used; got != 3 {
		t.Fatalf("%d calls served from standby, want 3", got)
	}
	b.authDown.Store(false)

	sent := 4
	for {
		code, out := post(t, b, b.ops, body, noWait)
		if code == http.StatusTooManyRequests {
			break
		}
		if code != http.StatusOK {
			t.Fatalf("after the authority came back: %d %s", code, out)
		}
		sent++
	}
	// The replica tops its standby grants up again once the leader
	// answers: those it holds unused fill the rest of the window (a lend
	// answered just before the 429 may still be on its way to it).
	held := func() int64 { return b.standby[0].Stats().Held }
	deadline = time.Now().Add(10 * time.Second)
	for int64(sent)+held() != 10 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	log := emu.Log()
	must(t, emulator.CheckWindows(log, []emulator.Limit{{Requests: 10, Period: time.Minute}}))
	if n := emulator.Count(log).QuotaRefusals; n != 0 || int64(sent)+held() != 10 || len(log) != sent {
		t.Fatalf("%d calls answered, %d at the provider, %d refused there for quota, %d standby grants held; want the window's 10 answered or held, and no refusal",
			sent, len(log), n, held())
	}
}

package gateway_test

import (
	"bytes"
	"io"
	"net/http"
	"testing"
	"time"

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

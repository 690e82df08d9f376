package provider

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/llmquota/llmquota/internal/emulator"
)

// dials runs rounds of concurrency calls at once through hc against the
// emulator and returns how many connections the server accepted.
func dials(t *testing.T, hc *http.Client, concurrency, rounds int) int64 {
	t.Helper()
	var accepted atomic.Int64
	srv := httptest.NewUnstartedServer(emulator.New(emulator.Config{Latency: 20 * time.Millisecond, Keys: []string{testKey}}))
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			accepted.Add(1)
		}
	}
	srv.Start()
	defer srv.Close()
	c, err := New(Config{Type: Gemini, Endpoint: srv.URL, APIKey: testKey, HTTPClient: hc})
	if err != nil {
		t.Fatal(err)
	}
	for range rounds {
		var wg sync.WaitGroup
		for range concurrency {
			wg.Go(func() {
				if _, err := c.Generate(context.Background(), req); err != nil {
					t.Error(err)
				}
			})
		}
		wg.Wait()
	}
	return accepted.Load()
}

// TestTransportReusesConnections: a provider's client keeps one idle
// connection per concurrent call, so after the first round every call
// reuses one (each re-dial would be a TLS handshake against a real
// provider). Go's default transport, kept as the baseline, keeps 2 and
// re-dials most calls of every round.
func TestTransportReusesConnections(t *testing.T) {
	const concurrency, rounds = 32, 5
	if n := dials(t, NewHTTPClient(concurrency), concurrency, rounds); n > concurrency {
		t.Fatalf("%d connections for %d rounds of %d concurrent calls; want at most %d", n, rounds, concurrency, concurrency)
	}
	baseline := &http.Client{Transport: http.DefaultTransport.(*http.Transport).Clone()}
	if n := dials(t, baseline, concurrency, rounds); n <= 2*concurrency {
		t.Fatalf("the default transport dialled only %d times; the baseline no longer shows the problem", n)
	}
}

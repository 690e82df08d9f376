package ollama

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
)

// psServer answers /api/ps with status codes in turn (200 once they run
// out) and counts the requests. A 500 has the empty body of Ollama's
// recovered panic, the answer a listing gets while a runner is unloading.
func psServer(t *testing.T, codes ...int) (*Client, *atomic.Int32) {
	var calls atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		n := int(calls.Add(1))
		if n <= len(codes) && codes[n-1] != http.StatusOK {
			w.WriteHeader(codes[n-1])
			return
		}
		_, _ = w.Write([]byte(`{"models":[{"name":"tiny-a:latest","size":10}]}`))
	}))
	t.Cleanup(srv.Close)
	return New(srv.URL, nil), &calls
}

func TestPSAsksAgainAfterAServerPanic(t *testing.T) {
	c, calls := psServer(t, http.StatusInternalServerError, http.StatusInternalServerError)
	running, err := c.PS(ctx(t))
	if _, listed := Resident(running, "tiny-a"); err != nil || !listed || calls.Load() != 3 {
		t.Fatalf("got %v, %v after %d listings; want tiny-a on the third", running, err, calls.Load())
	}
}

func TestPSGivesUpAfterItsAttempts(t *testing.T) {
	c, calls := psServer(t, 500, 500, 500, 500)
	_, err := c.PS(ctx(t))
	var status *StatusError
	if !errors.As(err, &status) || status.Code != 500 || calls.Load() != psAttempts {
		t.Fatalf("got %v after %d listings; want HTTP 500 after %d", err, calls.Load(), psAttempts)
	}
}

func TestPSDoesNotRepeatOtherErrors(t *testing.T) {
	c, calls := psServer(t, http.StatusNotFound)
	if _, err := c.PS(ctx(t)); err == nil || calls.Load() != 1 {
		t.Fatalf("got %v after %d listings; want the 404 after one", err, calls.Load())
	}
}

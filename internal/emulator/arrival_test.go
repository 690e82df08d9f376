package emulator

import (
	"bufio"
	"bytes"
	"encoding/json"
	"net"
	"net/http"
	"runtime"
	"testing"
	"time"
)

// TestArrivalIsWhenTheBytesCame: a request written before the server gets
// round to reading it is stamped when its bytes reached the socket, not
// when the server handled it. The request is written before the server
// even accepts the connection (the kernel accepts it already), so a
// stamp taken by the handler's clock comes after serving began, and the
// kernel's before. Served without the stamps (ConnContext left out of the
// server), the test fails.
func TestArrivalIsWhenTheBytesCame(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("the kernel's receive stamps are read on Linux only; elsewhere the handler's clock stamps requests")
	}
	emu := New(Config{})
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln := StampArrivals(l)
	untilTheKernelStamps(t)
	conn, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = conn.Close() }()
	body, _ := json.Marshal(map[string]any{"model": "claude", "max_tokens": 16, "messages": []any{map[string]any{"role": "user", "content": "hi"}}})
	req, _ := http.NewRequest(http.MethodPost, "http://"+ln.Addr().String()+"/v1/messages", bytes.NewReader(body))
	req.Header.Set("x-api-key", "k")
	if err := req.Write(conn); err != nil {
		t.Fatal(err)
	}

	serving := time.Now()
	srv := NewHTTPServer(emu)
	go func() { _ = srv.Serve(ln) }()
	defer func() { _ = srv.Close() }()
	resp, err := http.ReadResponse(bufio.NewReader(conn), req)
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d", resp.StatusCode)
	}
	log := emu.Log()
	if len(log) != 1 {
		t.Fatalf("%d requests logged, want 1", len(log))
	}
	if !log[0].Time.Before(serving) {
		t.Fatalf("the request was stamped %v, after serving began at %v: the handler's clock, not its arrival", log[0].Time, serving)
	}
}

// untilTheKernelStamps waits until the kernel stamps packets as they are
// sent over loopback. Asking for stamps (StampArrivals) turns them on a
// moment later, from a kernel work queue: a request written before that
// is stamped when it is read instead, the handler's time, and the check
// above would fail for the kernel's delay, not the emulator's. A probe is
// stamped no later than its write returned once stamps are on.
func untilTheKernelStamps(t *testing.T) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	probes := StampArrivals(l)
	defer func() { _ = probes.Close() }()
	deadline := time.Now().Add(10 * time.Second)
	for {
		out, err := net.Dial("tcp", probes.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		in, err := probes.Accept()
		if err != nil {
			t.Fatal(err)
		}
		if _, err := out.Write([]byte("x")); err != nil {
			t.Fatal(err)
		}
		written := time.Now()
		if _, err := in.Read(make([]byte, 1)); err != nil {
			t.Fatal(err)
		}
		_ = out.Close()
		_ = in.Close()
		if at, ok := in.(stamped).arrivals().get(); ok && !at.After(written) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("the kernel did not stamp what arrived within 10 s of being asked")
		}
	}
}

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

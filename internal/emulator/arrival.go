package emulator

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"time"
)

// A server's clock stamps a request when its handler runs, which on a
// loaded machine is a varying delay after the request's bytes arrived: two
// requests written 70 ms apart can be stamped 35 ms apart because the
// first one's goroutine waited for a core. A provider, on machines of its
// own, sees no such delay, so the checks here would blame the client for
// the server's own scheduling. StampArrivals and ConnContext make the
// server stamp a request with the kernel's receive time of its bytes
// instead (SO_TIMESTAMPNS, on Linux), taken as they reach the socket.

// arrivalKey is the request context key of a connection's arrival stamps.
type arrivalKey struct{}

// stamps holds the kernel's receive time of the latest bytes read from a
// connection, in Unix nanoseconds (0 until known).
type stamps struct{ last atomic.Int64 }

func (s *stamps) set(t time.Time) { s.last.Store(t.UnixNano()) }

func (s *stamps) get() (time.Time, bool) {
	n := s.last.Load()
	return time.Unix(0, n), n != 0
}

// stamped is a connection that reports when its bytes arrived.
type stamped interface {
	net.Conn
	arrivals() *stamps
}

// StampArrivals wraps l so that the connections it accepts learn the
// kernel's receive time of what they read. Where the kernel cannot say
// (not Linux, not TCP), connections pass through unchanged and requests
// are stamped by the clock when they are handled. Serve with ConnContext.
//
// The listening socket asks for stamps too: the kernel stamps packets only
// while some socket wants stamps, and a connection accepted late must still
// have the stamps of what arrived before it was accepted.
func StampArrivals(l net.Listener) net.Listener {
	stampListener(l)
	return &stampingListener{Listener: l}
}

type stampingListener struct{ net.Listener }

func (l *stampingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return stampConn(c), nil
}

// ConnContext is an http.Server's ConnContext that lets the emulator find
// a connection's arrival stamps.
func ConnContext(ctx context.Context, c net.Conn) context.Context {
	if s, ok := c.(stamped); ok {
		return context.WithValue(ctx, arrivalKey{}, s.arrivals())
	}
	return ctx
}

// NewHTTPServer returns an http.Server for the emulator that stamps
// arrivals when served on a listener from StampArrivals.
func NewHTTPServer(h http.Handler) *http.Server {
	return &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second, ConnContext: ConnContext}
}

// arrival is when r reached the server: the kernel's stamp where there is
// one and the server runs on the real clock, else the clock now. The
// stamp is of the latest bytes read, which the handler reads when the
// request's head has arrived.
func (s *Server) arrival(r *http.Request) time.Time {
	if st, ok := r.Context().Value(arrivalKey{}).(*stamps); ok && s.realClock {
		if t, ok := st.get(); ok {
			return t
		}
	}
	return s.cfg.Now()
}

// NewTestServer starts h (an emulator) on a local port as httptest does,
// stamping requests with their arrival.
func NewTestServer(h http.Handler) *httptest.Server {
	srv := httptest.NewUnstartedServer(h)
	srv.Listener = StampArrivals(srv.Listener)
	srv.Config.ConnContext = ConnContext
	srv.Start()
	return srv
}

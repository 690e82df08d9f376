//go:build linux

package emulator

import (
	"encoding/binary"
	"io"
	"net"
	"syscall"
	"time"
)

// stampListener asks the kernel to stamp what arrives for l's
// connections, which inherit the option.
func stampListener(l net.Listener) {
	if tcp, ok := l.(*net.TCPListener); ok {
		if raw, err := tcp.SyscallConn(); err == nil {
			_ = raw.Control(func(fd uintptr) { _ = timestampsOn(fd) })
		}
	}
}

func timestampsOn(fd uintptr) error {
	return syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_TIMESTAMPNS, 1)
}

// stampConn turns on the kernel's receive timestamps for a TCP connection
// and reads it with recvmsg to collect them.
func stampConn(c net.Conn) net.Conn {
	tcp, ok := c.(*net.TCPConn)
	if !ok {
		return c
	}
	raw, err := tcp.SyscallConn()
	if err != nil {
		return c
	}
	var serr error
	if err := raw.Control(func(fd uintptr) {
		serr = timestampsOn(fd)
	}); err != nil || serr != nil {
		return c
	}
	return &timestampedConn{TCPConn: tcp, raw: raw}
}

type timestampedConn struct {
	*net.TCPConn
	raw    syscall.RawConn
	stamps stamps
}

func (c *timestampedConn) arrivals() *stamps { return &c.stamps }

// Read reads as net.Conn's does (deadlines included: RawConn.Read waits
// on the same poller), keeping the receive time the kernel attaches.
func (c *timestampedConn) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	var (
		n    int
		oob  [64]byte
		oobn int
		err  error
	)
	rerr := c.raw.Read(func(fd uintptr) bool {
		n, oobn, _, _, err = syscall.Recvmsg(int(fd), p, oob[:], 0)
		return err != syscall.EAGAIN
	})
	if rerr == nil {
		rerr = err
	}
	if rerr != nil {
		return 0, &net.OpError{Op: "read", Net: "tcp", Source: c.LocalAddr(), Addr: c.RemoteAddr(), Err: rerr}
	}
	if n == 0 {
		return 0, io.EOF
	}
	if t, ok := receiveTime(oob[:oobn]); ok {
		c.stamps.set(t)
	}
	return n, nil
}

// receiveTime finds SCM_TIMESTAMPNS in a control message buffer.
func receiveTime(oob []byte) (time.Time, bool) {
	msgs, err := syscall.ParseSocketControlMessage(oob)
	if err != nil {
		return time.Time{}, false
	}
	for _, m := range msgs {
		if m.Header.Level == syscall.SOL_SOCKET && m.Header.Type == syscall.SCM_TIMESTAMPNS && len(m.Data) >= 16 {
			sec := int64(binary.NativeEndian.Uint64(m.Data[0:8]))
			nsec := int64(binary.NativeEndian.Uint64(m.Data[8:16]))
			return time.Unix(sec, nsec), true
		}
	}
	return time.Time{}, false
}

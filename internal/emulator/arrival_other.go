//go:build !linux

package emulator

import "net"

// stampConn leaves c as it is: only Linux's stamps are read.
func stampConn(c net.Conn) net.Conn { return c }

// stampListener does nothing: only Linux's stamps are read.
func stampListener(net.Listener) {}

//go:build unix

package dbproxy

import (
	"net"
	"syscall"
)

// pending reports whether c, a socket, has bytes waiting to be read, without
// reading them or waiting for them.
func pending(c net.Conn) bool {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return false
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return false
	}
	var n int
	var one [1]byte
	rc.Read(func(fd uintptr) bool {
		n, _, _ = syscall.Recvfrom(int(fd), one[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		return true // never wait
	})
	return n > 0
}

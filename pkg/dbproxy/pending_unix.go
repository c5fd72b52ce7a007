//go:build unix

package dbproxy

import (
	"net"
	"syscall"
)

// UnreadBytes reports whether c, a socket, has bytes waiting to be read,
// without reading them or waiting for them. Both ends of a PostgreSQL TLS
// upgrade use it: bytes that arrive after the SSLRequest or its 'S' answer
// and before the handshake are an attack (the CVE-2021-23222 class), never
// to be taken as if they had come encrypted. It is false for anything but a
// socket.
func UnreadBytes(c net.Conn) bool {
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

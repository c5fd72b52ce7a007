//go:build unix

package agent

import (
	"errors"
	"net"
	"syscall"
)

// pendingData reports whether bytes wait to be read on c, without
// consuming them and without blocking. An end of stream is not data.
func pendingData(c net.Conn) (bool, error) {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return false, errors.New("not a socket")
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return false, err
	}
	var (
		n       int
		peekErr error
		one     [1]byte
	)
	err = rc.Control(func(fd uintptr) {
		n, _, peekErr = syscall.Recvfrom(int(fd), one[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
	})
	switch {
	case err != nil:
		return false, err
	case peekErr == syscall.EAGAIN || peekErr == syscall.EWOULDBLOCK:
		return false, nil
	case peekErr != nil:
		return false, peekErr
	}
	return n > 0, nil
}

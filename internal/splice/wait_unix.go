//go:build unix

package splice

import (
	"net"
	"syscall"
)

// wait blocks until c has something to read: data, an end of stream or an
// error. A socket is watched without reading from it (MSG_PEEK), so wait
// consumes nothing and returns 0; any other connection is read one byte
// into one, and wait returns how many bytes it read there.
func wait(c net.Conn, one []byte) (int, error) {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return c.Read(one)
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return c.Read(one)
	}
	var peekErr error
	err = rc.Read(func(fd uintptr) bool {
		_, _, peekErr = syscall.Recvfrom(int(fd), one, syscall.MSG_PEEK)
		// EAGAIN: nothing yet, let the runtime wait for readability.
		return peekErr != syscall.EAGAIN
	})
	if err != nil {
		return 0, err
	}
	// A peek that failed (a reset, say) is left for the next Read to
	// report, with the connection's own error wrapping.
	return 0, nil
}

//go:build unix

package blackhole

import (
	"fmt"
	"net"
	"strconv"
	"syscall"
)

// bind makes an IPv4 TCP socket on 127.0.0.1 with a kernel-chosen port,
// listening with backlog 0 if listen is set. It uses syscall directly
// because net.Listen always asks for the system's maximum backlog.
func bind(listen bool) (*Port, error) {
	syscall.ForkLock.RLock() // no exec may inherit fd before it is close-on-exec
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM, 0)
	if err == nil {
		syscall.CloseOnExec(fd)
	}
	syscall.ForkLock.RUnlock()
	if err != nil {
		return nil, fmt.Errorf("socket: %w", err)
	}
	fail := func(what string, err error) (*Port, error) {
		syscall.Close(fd)
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	if err := syscall.Bind(fd, &syscall.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		return fail("bind 127.0.0.1:0", err)
	}
	if listen {
		if err := syscall.Listen(fd, 0); err != nil {
			return fail("listen", err)
		}
	}
	sa, err := syscall.Getsockname(fd)
	if err != nil {
		return fail("getsockname", err)
	}
	in4, ok := sa.(*syscall.SockaddrInet4)
	if !ok {
		return fail("getsockname", fmt.Errorf("unexpected address %T", sa))
	}
	return &Port{
		addr:    net.JoinHostPort("127.0.0.1", strconv.Itoa(in4.Port)),
		release: func() error { return syscall.Close(fd) },
	}, nil
}

// Package tcptest serves TCP on loopback for tests: a handler per
// connection, or an echo. Everything stops, and its goroutines are waited
// for, when the test ends.
package tcptest

import (
	"io"
	"net"
	"sync"
	"testing"
)

// Serve runs handler for every connection to a new 127.0.0.1 listener and
// returns its address. The connection is closed when handler returns.
func Serve(t testing.TB, handler func(*net.TCPConn)) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				handler(c.(*net.TCPConn))
			}()
		}
	}()
	return ln.Addr().String()
}

// Echo serves TCP echo: everything read is written back, and the end of
// input is passed on with a half-close.
func Echo(t testing.TB) string {
	t.Helper()
	return Serve(t, func(c *net.TCPConn) {
		io.Copy(c, c)
		c.CloseWrite()
	})
}

//go:build !unix

package dbproxy

import "net"

// pending reports whether c has bytes waiting to be read. Without a
// non-blocking peek it cannot tell; the TLS handshake that follows then
// fails on such bytes instead.
func pending(net.Conn) bool { return false }

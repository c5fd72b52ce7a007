//go:build !unix

package dbproxy

import "net"

// UnreadBytes reports whether c has bytes waiting to be read. Without a
// non-blocking peek it cannot tell; the TLS handshake that follows then
// fails on such bytes instead.
func UnreadBytes(net.Conn) bool { return false }

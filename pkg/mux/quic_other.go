//go:build !linux

package mux

import "net"

// quicPacketConn returns the socket quic-go should use for c: c itself,
// where there is no receive offload to turn on.
func quicPacketConn(c *net.UDPConn) net.PacketConn { return c }

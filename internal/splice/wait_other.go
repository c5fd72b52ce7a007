//go:build !unix

package splice

import "net"

// wait blocks until c has something to read by reading one byte into one,
// and returns how many bytes it read there.
func wait(c net.Conn, one []byte) (int, error) { return c.Read(one) }

//go:build !unix

package agent

import (
	"errors"
	"net"
)

// pendingData cannot look at a socket without reading it here; the TLS
// handshake then fails on any stray bytes instead.
func pendingData(net.Conn) (bool, error) { return false, errors.New("not supported on this platform") }

// Package blackhole provides loopback TCP addresses with fixed failure
// behaviour for tests: one where a connect hangs until the dialer's timeout
// (a database host that has gone dark) and one where a connect is refused at
// once (a database that is down). Both stay reserved until released, so no
// other socket can take the port meanwhile.
//
// It relies on Linux's handling of a full accept queue (Open checks it and
// returns ErrNotBlackholed where the kernel still answers), works on Unix
// systems only (elsewhere it builds, and every Open fails), and touches no
// firewall rules.
package blackhole

import (
	"errors"
	"fmt"
	"net"
	"sync"
	"testing"
	"time"
)

const (
	// probeTimeout is how long Open waits for a probing connect before
	// concluding its SYN was dropped. A loopback handshake that is answered
	// completes within microseconds.
	probeTimeout = 100 * time.Millisecond
	// maxFill bounds the connections Open parks in the accept queue. On
	// Linux one is enough (see Open).
	maxFill = 8
)

// ErrNotBlackholed means the kernel kept answering connects to a listener
// whose accept queue should have been full.
var ErrNotBlackholed = errors.New("blackhole: connects to a full accept queue still complete on this system")

// Port is a reserved port on 127.0.0.1 that misbehaves until Close.
type Port struct {
	addr    string
	release func() error // closes the socket
	fillers []net.Conn
	once    sync.Once
}

// Listen returns a 127.0.0.1 address where a TCP connect does not complete,
// because the SYNs are dropped, so a dial with a timeout times out (a dial
// without one waits for the kernel's SYN retries, about two minutes). The
// address is released when the test ends.
func Listen(t testing.TB) string {
	t.Helper()
	p, err := Open()
	if err != nil {
		t.Fatalf("blackhole: %v", err)
	}
	t.Cleanup(func() { p.Close() })
	return p.Addr()
}

// RefusedAddr returns a 127.0.0.1 address that refuses connections at once
// (RST, ECONNREFUSED). The port stays reserved until the test ends.
func RefusedAddr(t testing.TB) string {
	t.Helper()
	p, err := OpenRefused()
	if err != nil {
		t.Fatalf("blackhole: %v", err)
	}
	t.Cleanup(func() { p.Close() })
	return p.Addr()
}

// Open reserves a port whose connects hang, for use outside tests (Listen
// is the test form).
//
// How: a listening socket with backlog 0 that never accepts. Linux counts
// the accept queue full when it holds more than the backlog, so after one
// completed connection is parked in it, the kernel drops every further SYN
// (the ListenOverflows counter), and the dialer retransmits until it gives
// up. Open verifies this by probing: it parks connections until a probe
// connect times out.
func Open() (*Port, error) {
	p, err := bind(true)
	if err != nil {
		return nil, err
	}
	for range maxFill {
		c, err := net.DialTimeout("tcp", p.addr, probeTimeout)
		if err == nil {
			p.fillers = append(p.fillers, c)
			continue
		}
		if IsTimeout(err) {
			return p, nil
		}
		p.Close()
		return nil, fmt.Errorf("fill accept queue of %s: %w", p.addr, err)
	}
	p.Close()
	return nil, fmt.Errorf("%w (%d connects to %s completed)", ErrNotBlackholed, maxFill, p.addr)
}

// OpenRefused reserves a port that refuses connections, for use outside
// tests (RefusedAddr is the test form).
//
// How: a socket bound to the port but not listening. Connects find no
// listener and get a reset; because the socket has no SO_REUSEADDR, no
// other socket can bind the port while it is held (ephemeral port
// selection skips it too).
func OpenRefused() (*Port, error) {
	return bind(false)
}

// Addr returns the "127.0.0.1:PORT" address.
func (p *Port) Addr() string { return p.addr }

// Close releases the port and the connections parked on it.
func (p *Port) Close() error {
	var err error
	p.once.Do(func() {
		for _, c := range p.fillers {
			c.Close()
		}
		err = p.release()
	})
	return err
}

// IsTimeout reports whether err is a timeout, as a dial to a Listen address
// returns. A dial timeout surfaces either as os.ErrDeadlineExceeded or as
// context.DeadlineExceeded depending on which timer fires first, so test
// for net.Error.Timeout rather than either value.
func IsTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// Package faultproxy is a TCP proxy (Proxy) and a UDP proxy (UDPProxy) for
// fault injection: put one between two parts of the system and stall,
// drop, delay or refuse their connections, or their datagrams.
//
// It is for tests and benchmarks on loopback, not for production traffic:
// every TCP connection costs four goroutines, a 32 KiB read buffer per
// direction and, with latency, up to 64 MiB of queued data per direction.
// Faults are proxy-wide; a connection is not addressed individually.
package faultproxy

import (
	"errors"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Proxy accepts TCP connections and forwards each to a fixed target, applying
// whatever faults are switched on at the moment.
type Proxy struct {
	// Static after Listen.
	ln     net.Listener
	target string

	// Settings, changed at any time by the fault methods.
	latency atomic.Int64                  // one-way delay in nanoseconds
	refuse  atomic.Bool                   // close new connections at once
	stall   atomic.Pointer[chan struct{}] // non-nil while stalled; closed on Resume

	wg   sync.WaitGroup // the accept loop and every connection's handler
	done chan struct{}  // closed by Close

	mu     sync.Mutex // guards conns and closed, serializes Stall/Resume
	conns  map[*conn]struct{}
	closed bool
}

// Listen listens on addr (e.g. "127.0.0.1:0") and forwards each accepted
// connection to target. Close stops it.
func Listen(addr, target string) (*Proxy, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	p := &Proxy{ln: ln, target: target, conns: make(map[*conn]struct{}), done: make(chan struct{})}
	p.wg.Add(1)
	go p.serve()
	return p, nil
}

// New is Listen on 127.0.0.1:0 for a test. The proxy, its connections and
// goroutines are gone when the test ends.
func New(t testing.TB, target string) *Proxy {
	t.Helper()
	p, err := Listen("127.0.0.1:0", target)
	if err != nil {
		t.Fatalf("faultproxy: %v", err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

// Addr is the address clients dial.
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

// Target is the address connections are forwarded to.
func (p *Proxy) Target() string { return p.target }

// Stall stops forwarding on every current and future connection, in both
// directions, until Resume. Nothing is closed. The proxy also stops reading,
// so the kernel buffers fill and senders block as on a frozen link; at most
// one chunk per direction that was being read when Stall was called is held
// and delivered after Resume. New connections are still accepted and dialed.
func (p *Proxy) Stall() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.stall.Load() == nil {
		ch := make(chan struct{})
		p.stall.Store(&ch)
	}
}

// Resume undoes Stall; held bytes are forwarded in order.
func (p *Proxy) Resume() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if ch := p.stall.Swap(nil); ch != nil {
		close(*ch)
	}
}

// DropAll closes every current connection, both the client and the target
// side, with a reset (SO_LINGER 0) rather than a FIN. New connections are
// still accepted.
func (p *Proxy) DropAll() {
	for _, c := range p.snapshot() {
		c.close(true)
	}
}

// SetLatency delays every chunk of data (and the end of stream) in each
// direction by d, one way, so a request-response round trip takes at least
// 2d longer. Order is kept and the proxy keeps reading while chunks wait, so
// throughput is bounded only by the data allowed to wait (64 MiB per
// direction) per d, not by one chunk per d. It applies to data read after
// the call. 0 disables.
func (p *Proxy) SetLatency(d time.Duration) { p.latency.Store(int64(max(d, 0))) }

// SetRefuse makes new connections be closed right after they are accepted
// (the client sees the connection succeed, then EOF). Existing connections
// are not affected.
func (p *Proxy) SetRefuse(refuse bool) { p.refuse.Store(refuse) }

// Conns returns the number of client connections currently open.
func (p *Proxy) Conns() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.conns)
}

// Close stops accepting, resets every connection and returns once all the
// proxy's goroutines have exited. Calling it again does nothing.
func (p *Proxy) Close() error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil
	}
	p.closed = true
	p.mu.Unlock()

	close(p.done)
	err := p.ln.Close()
	for _, c := range p.snapshot() {
		c.close(true)
	}
	p.wg.Wait()
	return err
}

// serve is the accept loop.
func (p *Proxy) serve() {
	defer p.wg.Done()
	var backoff time.Duration
	for {
		nc, err := p.ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			// Out of file descriptors and the like: back off as net/http
			// does instead of spinning.
			backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
			select {
			case <-time.After(backoff):
			case <-p.done:
				return
			}
			continue
		}
		backoff = 0
		if p.refuse.Load() {
			nc.Close()
			continue
		}
		c := p.track(nc)
		if c == nil {
			nc.Close()
			return
		}
		go c.handle()
	}
}

// track registers a new connection, or returns nil when the proxy is closed.
func (p *Proxy) track(nc net.Conn) *conn {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return nil
	}
	c := newConn(p, nc)
	p.conns[c] = struct{}{}
	p.wg.Add(1) // while closed is false, Close has not started waiting
	return c
}

func (p *Proxy) untrack(c *conn) {
	p.mu.Lock()
	defer p.mu.Unlock()
	delete(p.conns, c)
}

func (p *Proxy) snapshot() []*conn {
	p.mu.Lock()
	defer p.mu.Unlock()
	cs := make([]*conn, 0, len(p.conns))
	for c := range p.conns {
		cs = append(cs, c)
	}
	return cs
}

// due returns when data read now may be written, or the zero time when
// there is no latency.
func (p *Proxy) due() time.Time {
	if d := time.Duration(p.latency.Load()); d > 0 {
		return time.Now().Add(d)
	}
	return time.Time{}
}

// waitRunning blocks while the proxy is stalled. It returns false when done
// is closed first.
func (p *Proxy) waitRunning(done <-chan struct{}) bool {
	for {
		ch := p.stall.Load()
		if ch == nil {
			select {
			case <-done:
				return false
			default:
				return true
			}
		}
		select {
		case <-*ch:
		case <-done:
			return false
		}
	}
}

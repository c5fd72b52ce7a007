// Package netsim emulates a long network link on loopback: a TCP proxy whose
// two directions are delay lines of bounded capacity. The benchmark puts one
// between the tunnel agent and the server, and the same kind between a plain
// TCP client and its target, to compare both over the same link.
//
// It is for benchmarks and tests on loopback, not for production traffic,
// and it is not a fault injector (see internal/testutil/faultproxy for
// stalls, drops and refusals).
//
// # The model
//
// Each direction of each proxied connection is a delay line: a byte read
// from the sender at time t is written to the receiver no earlier than
// t + Delay, in order. At most Capacity bytes may be inside the line (read
// but not yet written out); while it is full the proxy stops reading, so
// the sender's kernel buffers fill and the sender blocks, as it would on a
// link that carries no more. A line therefore moves at most Capacity bytes
// per Delay: a link of bandwidth Capacity/Delay and one-way delay Delay,
// whose bandwidth-delay product over the round trip is 2 × Capacity.
//
// The proxy terminates TCP on both sides, so the endpoints' own TCP windows
// see a loopback round trip, not the emulated one: a protocol that carries
// its own flow-control window end to end (a yamux stream, say) is limited
// by window/RTT as on a real link, while plain TCP is limited only by the
// link. That is the difference the benchmark measures.
package netsim

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// Defaults of Config.
const (
	// DefaultCapacity is 4 MiB per direction: with a 25 ms one-way delay
	// (a 50 ms round trip) a link of about 168 MB/s, 1.3 Gbit/s.
	DefaultCapacity = 4 << 20
	// chunkSize is the largest single read the proxy makes.
	chunkSize = 64 << 10
	// dialTimeout bounds the connection to the target.
	dialTimeout = 10 * time.Second
)

// Config describes the emulated link. The zero value is a link without
// delay of DefaultCapacity.
type Config struct {
	// Delay is the one-way delay of each direction; a round trip takes at
	// least 2 × Delay longer than without the link.
	Delay time.Duration
	// Capacity bounds the bytes inside one direction of one connection
	// (read from the sender, not yet written to the receiver). Default
	// DefaultCapacity.
	Capacity int
}

// Validate reports a configuration that cannot work, naming the field.
func (c Config) Validate() error {
	if c.Delay < 0 {
		return fmt.Errorf("netsim: Delay %v is negative", c.Delay)
	}
	if c.Capacity < 0 {
		return fmt.Errorf("netsim: Capacity %d is negative", c.Capacity)
	}
	return nil
}

func (c Config) withDefaults() Config {
	if c.Capacity == 0 {
		c.Capacity = DefaultCapacity
	}
	return c
}

// Link is a listening proxy that forwards every accepted connection to one
// target through the emulated link.
type Link struct {
	// Static after Listen.
	cfg    Config
	ln     net.Listener
	target string
	ctx    context.Context // canceled by Close; ends dials and waits
	cancel context.CancelFunc

	peak atomic.Int64 // most bytes any one line has held

	wg sync.WaitGroup // the accept loop and every connection

	mu    sync.Mutex // guards conns
	conns map[net.Conn]struct{}
}

// Listen listens on addr (e.g. "127.0.0.1:0") and forwards each accepted
// connection to target through a link described by cfg. Close stops it.
func Listen(addr, target string, cfg Config) (*Link, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	l := &Link{cfg: cfg.withDefaults(), ln: ln, target: target, conns: map[net.Conn]struct{}{}}
	l.ctx, l.cancel = context.WithCancel(context.Background())
	l.wg.Add(1)
	go l.acceptLoop()
	return l, nil
}

// Addr is the address clients dial.
func (l *Link) Addr() string { return l.ln.Addr().String() }

// Config is the link's configuration, with defaults filled in.
func (l *Link) Config() Config { return l.cfg }

// PeakInFlight is the largest number of bytes any one direction of any
// connection has held at once; never more than Config().Capacity.
func (l *Link) PeakInFlight() int64 { return l.peak.Load() }

// Close stops accepting, closes every connection and returns once all the
// link's goroutines have exited. Calling it again does nothing.
func (l *Link) Close() error {
	l.cancel()
	err := l.ln.Close()
	l.mu.Lock()
	for c := range l.conns {
		c.Close()
	}
	l.mu.Unlock()
	l.wg.Wait()
	if errors.Is(err, net.ErrClosed) {
		err = nil
	}
	return err
}

// track remembers c for Close; it reports false once Close has begun.
func (l *Link) track(c net.Conn) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.ctx.Err() != nil {
		return false
	}
	l.conns[c] = struct{}{}
	return true
}

func (l *Link) untrack(c net.Conn) {
	l.mu.Lock()
	delete(l.conns, c)
	l.mu.Unlock()
}

func (l *Link) acceptLoop() {
	defer l.wg.Done()
	for {
		c, err := l.ln.Accept()
		if err != nil {
			if l.ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return
			}
			// Out of descriptors and the like: wait a little.
			select {
			case <-time.After(10 * time.Millisecond):
				continue
			case <-l.ctx.Done():
				return
			}
		}
		if !l.track(c) {
			c.Close()
			return
		}
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			defer l.untrack(c)
			l.serve(c)
		}()
	}
}

// serve dials the target for client and runs both directions until both
// have ended, or either failed. It closes both connections.
func (l *Link) serve(client net.Conn) {
	defer client.Close()
	d := net.Dialer{Timeout: dialTimeout}
	up, err := d.DialContext(l.ctx, "tcp", l.target)
	if err != nil {
		abort(client)
		return
	}
	if !l.track(up) {
		up.Close()
		return
	}
	defer l.untrack(up)
	defer up.Close()

	// A failure in either direction ends both: the connection is reset,
	// as a broken link would leave it.
	ctx, cancel := context.WithCancel(l.ctx)
	defer cancel()
	stop := context.AfterFunc(ctx, func() {
		abort(client)
		abort(up)
	})
	defer stop() // runs first: a clean end closes with a FIN, not a reset

	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		l.carry(ctx, cancel, up, client)
	}()
	l.carry(ctx, cancel, client, up)
	wg.Wait()
}

// carry moves src to dst through one delay line until src ends (then it
// half-closes dst, after the delay) or something fails (then it calls
// cancel, which closes both connections). It returns once both of its
// goroutines have.
func (l *Link) carry(ctx context.Context, cancel context.CancelFunc, dst, src net.Conn) {
	ln := newLine(l.cfg.Capacity, &l.peak)
	filled := make(chan struct{})
	go func() {
		defer close(filled)
		if err := ln.fill(ctx, src, l.cfg.Delay); err != nil {
			cancel()
		}
	}()
	if err := ln.drain(ctx, dst); err != nil {
		cancel()
	}
	<-filled
}

// abort closes c with a reset rather than a FIN.
func abort(c net.Conn) {
	if tc, ok := c.(*net.TCPConn); ok {
		tc.SetLinger(0)
	}
	c.Close()
}

// packet is one read from the sender, waiting in a line.
type packet struct {
	buf []byte    // nil marks the end of the stream
	due time.Time // when it may leave
}

// line is one direction's delay line: a FIFO of packets with a bound on the
// bytes inside. One goroutine fills it, one drains it.
type line struct {
	capacity int
	peak     *atomic.Int64

	mu       sync.Mutex
	packets  []packet // guarded by mu
	inFlight int      // guarded by mu: bytes read and not yet written out

	ready chan struct{} // a packet was added; capacity 1
	room  chan struct{} // bytes were written out; capacity 1
}

func newLine(capacity int, peak *atomic.Int64) *line {
	return &line{capacity: capacity, peak: peak, ready: make(chan struct{}, 1), room: make(chan struct{}, 1)}
}

var bufPool = sync.Pool{New: func() any { return make([]byte, chunkSize) }}

// fill reads src into the line, never holding more than capacity bytes,
// until src ends (it queues the end of the stream) or fails.
func (ln *line) fill(ctx context.Context, src net.Conn, delay time.Duration) error {
	for {
		room, err := ln.waitRoom(ctx)
		if err != nil {
			return err
		}
		buf := bufPool.Get().([]byte)
		n, rerr := src.Read(buf[:min(room, len(buf))])
		if n > 0 {
			ln.push(packet{buf: buf[:n], due: time.Now().Add(delay)})
		} else {
			bufPool.Put(buf[:cap(buf)])
		}
		if errors.Is(rerr, io.EOF) {
			ln.push(packet{due: time.Now().Add(delay)})
			return nil
		}
		if rerr != nil {
			return rerr
		}
	}
}

// waitRoom waits until the line has room and returns how much.
func (ln *line) waitRoom(ctx context.Context) (int, error) {
	for {
		ln.mu.Lock()
		room := ln.capacity - ln.inFlight
		ln.mu.Unlock()
		if room > 0 {
			return room, nil
		}
		select {
		case <-ln.room:
		case <-ctx.Done():
			return 0, ctx.Err()
		}
	}
}

func (ln *line) push(p packet) {
	ln.mu.Lock()
	ln.packets = append(ln.packets, p)
	ln.inFlight += len(p.buf)
	if n := int64(ln.inFlight); n > ln.peak.Load() {
		// Lines share peak: raise it without losing a larger value.
		for {
			old := ln.peak.Load()
			if n <= old || ln.peak.CompareAndSwap(old, n) {
				break
			}
		}
	}
	ln.mu.Unlock()
	signal(ln.ready)
}

// drain writes the line's packets to dst, each no earlier than its due
// time, until the end of the stream (it half-closes dst) or a failure.
func (ln *line) drain(ctx context.Context, dst net.Conn) error {
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	defer timer.Stop()
	for {
		p, err := ln.pop(ctx)
		if err != nil {
			return err
		}
		if wait := time.Until(p.due); wait > 0 {
			timer.Reset(wait)
			select {
			case <-timer.C:
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		if p.buf == nil {
			if cw, ok := dst.(interface{ CloseWrite() error }); ok {
				return cw.CloseWrite()
			}
			return nil
		}
		_, werr := dst.Write(p.buf)
		n := len(p.buf)
		bufPool.Put(p.buf[:cap(p.buf)])
		// The bytes leave the line only once written: a receiver that
		// does not read keeps the line full and the sender blocked.
		ln.mu.Lock()
		ln.inFlight -= n
		ln.mu.Unlock()
		signal(ln.room)
		if werr != nil {
			return werr
		}
	}
}

// pop removes the oldest packet, waiting while there is none.
func (ln *line) pop(ctx context.Context) (packet, error) {
	for {
		ln.mu.Lock()
		if len(ln.packets) > 0 {
			p := ln.packets[0]
			ln.packets[0] = packet{}
			ln.packets = ln.packets[1:]
			if len(ln.packets) == 0 {
				ln.packets = nil // let the backing array go
			}
			ln.mu.Unlock()
			return p, nil
		}
		ln.mu.Unlock()
		select {
		case <-ln.ready:
		case <-ctx.Done():
			return packet{}, ctx.Err()
		}
	}
}

// signal wakes the other side unless it is already due to wake.
func signal(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

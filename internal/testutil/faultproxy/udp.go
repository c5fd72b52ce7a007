package faultproxy

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

const (
	// udpIdleTimeout is how long a client source address may go without a
	// datagram, in either direction, before the proxy forgets it. It is
	// longer than the QUIC idle timeout the project uses (60 s by default in
	// pkg/mux), so the proxy does not forget a connection both ends still
	// consider alive, as a NAT with a short timeout would.
	udpIdleTimeout = 2 * time.Minute
	// udpMaxFlows bounds the live flows; a new flow beyond it evicts the one
	// silent longest, as a full NAT table does.
	udpMaxFlows = 1024
	// udpMaxDropped bounds the source addresses DropAll remembers.
	udpMaxDropped = 1024

	// maxDatagram holds any UDP payload (at most 65,507 bytes over IPv4).
	maxDatagram = 64 << 10
	// smallDatagram holds a QUIC packet: quic-go sends at most 1,452 bytes.
	// Datagrams that fit are copied out of the read buffer into one of
	// these, so a delay line full of QUIC packets holds 2 KiB, not 64 KiB,
	// per packet.
	smallDatagram = 2 << 10

	// udpMaxQueued bounds the buffer bytes waiting in one direction of one
	// flow; beyond it datagrams are dropped. With latency switched on it is
	// the bandwidth-delay product of the emulated link: 64 MiB per 50 ms is
	// about 1.3 GB/s, more than QUIC moves over loopback.
	udpMaxQueued = 64 << 20
	// udpSocketBuffer is asked for as the receive and send buffer of every
	// socket, so a burst from a fast QUIC sender is not lost in the kernel
	// before the proxy reads it. The kernel caps it at net.core.rmem_max.
	udpSocketBuffer = 4 << 20
)

var (
	smallBufs = sync.Pool{New: func() any {
		b := make([]byte, smallDatagram)
		return &b
	}}
	largeBufs = sync.Pool{New: func() any {
		b := make([]byte, maxDatagram)
		return &b
	}}
)

// putBuf returns a buffer from smallBufs or largeBufs to its pool.
func putBuf(bp *[]byte) {
	if cap(*bp) == smallDatagram {
		smallBufs.Put(bp)
	} else {
		largeBufs.Put(bp)
	}
}

// udpLimits are the bounds of a UDPProxy; tests shrink them.
type udpLimits struct {
	idle       time.Duration // see udpIdleTimeout
	maxFlows   int           // see udpMaxFlows
	maxDropped int           // see udpMaxDropped
}

var defaultUDPLimits = udpLimits{idle: udpIdleTimeout, maxFlows: udpMaxFlows, maxDropped: udpMaxDropped}

// UDPProxy is the UDP counterpart of Proxy, for putting QUIC through the
// same faults. It relays datagrams between clients and a fixed target: each
// client source address is a flow with its own socket connected to the
// target, so the target sees one peer per client and its replies go back to
// the client they answer.
//
// UDP has no connections to cut and no backpressure, so every fault drops
// datagrams silently, which is how a QUIC endpoint sees a dead link: no
// error, only silence until its idle timeout. A flow costs an upstream
// socket, three goroutines, a 64 KiB read buffer and, with latency, up to
// 64 MiB of waiting datagrams per direction. A flow silent for two minutes
// is forgotten, and at most 1024 are kept.
type UDPProxy struct {
	// Static after ListenUDP.
	pc     *net.UDPConn
	target *net.UDPAddr
	limits udpLimits

	// Settings, changed at any time by the fault methods.
	latency atomic.Int64 // one-way delay in nanoseconds
	refuse  atomic.Bool  // drop datagrams of new flows
	stalled atomic.Bool  // drop every datagram

	wg   sync.WaitGroup // serve, sweep and every flow's run
	done chan struct{}  // closed by Close

	mu      sync.Mutex // guards flows, dropped and closed
	flows   map[netip.AddrPort]*udpFlow
	dropped map[netip.AddrPort]int64 // source → its last datagram, Unix ns
	closed  bool
}

// ListenUDP listens on addr (e.g. "127.0.0.1:0") and relays datagrams to
// target, which is resolved once, now. Close stops it.
func ListenUDP(addr, target string) (*UDPProxy, error) {
	return listenUDP(addr, target, defaultUDPLimits)
}

func listenUDP(addr, target string, limits udpLimits) (*UDPProxy, error) {
	taddr, err := net.ResolveUDPAddr("udp", target)
	if err != nil {
		return nil, fmt.Errorf("resolve target %q: %w", target, err)
	}
	laddr, err := net.ResolveUDPAddr("udp", addr)
	if err != nil {
		return nil, fmt.Errorf("resolve listen address %q: %w", addr, err)
	}
	pc, err := net.ListenUDP("udp", laddr)
	if err != nil {
		return nil, err
	}
	setBuffers(pc)
	p := &UDPProxy{
		pc:      pc,
		target:  taddr,
		limits:  limits,
		done:    make(chan struct{}),
		flows:   make(map[netip.AddrPort]*udpFlow),
		dropped: make(map[netip.AddrPort]int64),
	}
	p.wg.Add(2)
	go p.serve()
	go p.sweep()
	return p, nil
}

// NewUDP is ListenUDP on 127.0.0.1:0 for a test. The proxy, its flows and
// goroutines are gone when the test ends.
func NewUDP(t testing.TB, target string) *UDPProxy {
	t.Helper()
	p, err := ListenUDP("127.0.0.1:0", target)
	if err != nil {
		t.Fatalf("faultproxy: %v", err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

// Addr is the address clients send to.
func (p *UDPProxy) Addr() string { return p.pc.LocalAddr().String() }

// Target is the address datagrams are relayed to.
func (p *UDPProxy) Target() string { return p.target.String() }

// Stall drops every datagram, in both directions, of current and new flows
// until Resume: the link goes silent without an error. Unlike Proxy.Stall
// nothing is held for later, because UDP has no backpressure to apply; QUIC
// retransmits what it lost after Resume. Datagrams that were already delayed
// by SetLatency are dropped if they fall due while stalled. No flow is
// created while stalled, but a client's datagrams keep its flow from
// expiring.
func (p *UDPProxy) Stall() { p.stalled.Store(true) }

// Resume undoes Stall; datagrams sent from then on are relayed.
func (p *UDPProxy) Resume() { p.stalled.Store(false) }

// DropAll forgets every current flow and drops the datagrams of their
// client addresses from then on, for good: the UDP analogue of cutting every
// connection. A QUIC connection that was using the proxy goes silent and
// times out, while a client on a new source port gets a new flow. It returns
// once nothing more is relayed for the old flows. "For good" has two
// bounds: an address is forgotten after it has been silent for the idle
// timeout (its QUIC connection has timed out by then), and of more than
// 1024 dropped addresses the longest silent are forgotten first. A kernel
// that hands a dropped address's port to a new socket while it is still
// remembered makes that socket silent too.
func (p *UDPProxy) DropAll() {
	p.mu.Lock()
	stopped := make([]*udpFlow, 0, len(p.flows))
	for from, f := range p.flows {
		delete(p.flows, from)
		f.stop()
		p.addDropped(from, f.lastSeen.Load())
		stopped = append(stopped, f)
	}
	p.mu.Unlock()
	for _, f := range stopped {
		<-f.exited
	}
}

// SetLatency delays every datagram by d in each direction, one way, so a
// round trip takes at least 2d longer. It applies to datagrams received
// after the call. A flow's datagrams leave in the order they came in each
// direction, so after the latency is lowered new datagrams wait for the
// older ones. Datagrams wait side by side, so throughput is bounded by the
// data allowed to wait (64 MiB per direction per flow) per d, beyond which
// datagrams are dropped. 0 disables.
func (p *UDPProxy) SetLatency(d time.Duration) { p.latency.Store(int64(max(d, 0))) }

// SetRefuse drops the datagrams of new flows while set, as a firewall
// blocking UDP would: a new QUIC connection gets no answer and times out.
// Existing flows keep working. No flow is created while set; a client's
// first datagram after SetRefuse(false) starts one.
func (p *UDPProxy) SetRefuse(refuse bool) { p.refuse.Store(refuse) }

// Flows returns the number of live flows: client source addresses with a
// socket to the target. Addresses dropped by DropAll are not counted.
func (p *UDPProxy) Flows() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.flows)
}

// Close stops relaying, closes every socket, drops the datagrams waiting in
// delay lines and returns once all the proxy's goroutines have exited.
// Calling it again does nothing.
func (p *UDPProxy) Close() error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil
	}
	p.closed = true
	for from, f := range p.flows {
		delete(p.flows, from)
		f.stop()
	}
	clear(p.dropped)
	p.mu.Unlock()

	close(p.done)
	err := p.pc.Close()
	p.wg.Wait()
	return err
}

// serve reads client datagrams and queues each on its flow.
func (p *UDPProxy) serve() {
	defer p.wg.Done()
	bp := largeBufs.Get().(*[]byte)
	defer func() { putBuf(bp) }()
	var backoff time.Duration
	for {
		n, from, err := p.pc.ReadFromUDPAddrPort(*bp)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			// Out of memory and the like: back off instead of spinning.
			backoff = min(max(2*backoff, time.Millisecond), 100*time.Millisecond)
			select {
			case <-time.After(backoff):
			case <-p.done:
				return
			}
			continue
		}
		backoff = 0
		now := time.Now()
		f := p.lookup(from, now.UnixNano())
		if f == nil || p.stalled.Load() {
			continue
		}
		bp = enqueue(f.toTarget, bp, n, p.due(now))
	}
}

// lookup returns the live flow of a client address, refreshing its last
// datagram time, or starts one. It returns nil when the datagram is to be
// dropped: the address was dropped, or the proxy refuses, stalls, is closed
// or cannot open a socket.
func (p *UDPProxy) lookup(from netip.AddrPort, now int64) *udpFlow {
	p.mu.Lock()
	defer p.mu.Unlock()
	if f := p.flows[from]; f != nil {
		f.lastSeen.Store(now)
		return f
	}
	if _, ok := p.dropped[from]; ok {
		p.dropped[from] = now
		return nil
	}
	if p.closed || p.refuse.Load() || p.stalled.Load() {
		return nil
	}
	up, err := net.DialUDP("udp", nil, p.target)
	if err != nil {
		// Out of descriptors: lose this datagram; the next one tries again.
		return nil
	}
	setBuffers(up)
	if len(p.flows) >= p.limits.maxFlows {
		p.evictFlow()
	}
	f := &udpFlow{
		p:        p,
		client:   from,
		up:       up,
		toTarget: newDelayLine(),
		toClient: newDelayLine(),
		done:     make(chan struct{}),
		exited:   make(chan struct{}),
	}
	f.lastSeen.Store(now)
	p.flows[from] = f
	p.wg.Add(1) // while closed is false, Close has not started waiting
	go f.run()
	return f
}

// evictFlow stops and forgets the flow silent longest. Its client gets a
// new flow if it sends again. Called with mu held.
func (p *UDPProxy) evictFlow() {
	var (
		oldest netip.AddrPort
		seen   int64
		found  bool
	)
	for from, f := range p.flows {
		if t := f.lastSeen.Load(); !found || t < seen {
			oldest, seen, found = from, t, true
		}
	}
	if found {
		p.flows[oldest].stop()
		delete(p.flows, oldest)
	}
}

// addDropped remembers a dropped client address. When the list is full,
// the address silent longest, possibly this one, is not remembered. Called
// with mu held.
func (p *UDPProxy) addDropped(from netip.AddrPort, seen int64) {
	if len(p.dropped) >= p.limits.maxDropped {
		var (
			oldest     netip.AddrPort
			oldestSeen int64
			found      bool
		)
		for a, t := range p.dropped {
			if !found || t < oldestSeen {
				oldest, oldestSeen, found = a, t, true
			}
		}
		if found && seen < oldestSeen {
			return
		}
		delete(p.dropped, oldest)
	}
	if p.limits.maxDropped > 0 {
		p.dropped[from] = seen
	}
}

// sweep forgets idle flows and dropped addresses now and then.
func (p *UDPProxy) sweep() {
	defer p.wg.Done()
	t := time.NewTicker(max(p.limits.idle/8, time.Second))
	defer t.Stop()
	for {
		select {
		case now := <-t.C:
			p.expire(now)
		case <-p.done:
			return
		}
	}
}

// expire forgets the flows and dropped addresses that have been silent for
// the idle timeout at now.
func (p *UDPProxy) expire(now time.Time) {
	cutoff := now.Add(-p.limits.idle).UnixNano()
	p.mu.Lock()
	defer p.mu.Unlock()
	for from, f := range p.flows {
		if f.lastSeen.Load() < cutoff {
			delete(p.flows, from)
			f.stop()
		}
	}
	for from, seen := range p.dropped {
		if seen < cutoff {
			delete(p.dropped, from)
		}
	}
}

// due returns when a datagram received at now may be sent on, or the zero
// time when there is no latency.
func (p *UDPProxy) due(now time.Time) time.Time {
	if d := time.Duration(p.latency.Load()); d > 0 {
		return now.Add(d)
	}
	return time.Time{}
}

// setBuffers asks for large socket buffers; the kernel may grant less,
// which costs throughput, not correctness.
func setBuffers(c *net.UDPConn) {
	c.SetReadBuffer(udpSocketBuffer)
	c.SetWriteBuffer(udpSocketBuffer)
}

// enqueue queues the n bytes read into *scratch on l and returns the buffer
// to read into next. A full or closed line drops the datagram.
func enqueue(l *delayLine, scratch *[]byte, n int, due time.Time) *[]byte {
	bp := scratch
	if n <= smallDatagram {
		bp = smallBufs.Get().(*[]byte)
		copy(*bp, (*scratch)[:n])
	} else {
		scratch = largeBufs.Get().(*[]byte)
	}
	if !l.push(datagram{buf: bp, n: n, due: due}) {
		putBuf(bp)
	}
	return scratch
}

// udpFlow is one client source address and its socket to the target. Each
// direction has a delay line with a writer draining it: serve fills the one
// towards the target, readReplies the one towards the client.
type udpFlow struct {
	// Static after lookup.
	p        *UDPProxy
	client   netip.AddrPort
	up       *net.UDPConn // connected to the target
	toTarget *delayLine
	toClient *delayLine
	done     chan struct{} // closed by stop; ends every wait
	exited   chan struct{} // closed when run has returned

	lastSeen atomic.Int64 // Unix ns of the last datagram either way
	stopOnce sync.Once
}

// run relays until stop, then waits for the flow's goroutines and drops
// what is still waiting in its delay lines.
func (f *udpFlow) run() {
	defer f.p.wg.Done()
	defer close(f.exited)
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		f.readReplies()
	}()
	go func() {
		defer wg.Done()
		f.deliver(f.toClient, func(b []byte) { f.p.pc.WriteToUDPAddrPort(b, f.client) })
	}()
	f.deliver(f.toTarget, func(b []byte) { f.up.Write(b) })
	wg.Wait()
	f.toTarget.close()
	f.toClient.close()
}

// stop ends the flow's goroutines without waiting for them. Only the first
// call does anything.
func (f *udpFlow) stop() {
	f.stopOnce.Do(func() {
		close(f.done)
		f.up.Close()
	})
}

// readReplies queues what the target sends until the socket is closed.
func (f *udpFlow) readReplies() {
	bp := largeBufs.Get().(*[]byte)
	defer func() { putBuf(bp) }()
	for {
		n, err := f.up.Read(*bp)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			// The target's port is closed (ICMP port unreachable, reported
			// on the connected socket). Over UDP that is one lost datagram,
			// not the end of the flow.
			select {
			case <-f.done:
				return
			default:
				continue
			}
		}
		now := time.Now()
		f.lastSeen.Store(now.UnixNano())
		if f.p.stalled.Load() {
			continue
		}
		bp = enqueue(f.toClient, bp, n, f.p.due(now))
	}
}

// deliver drains l through send, each datagram no earlier than its due
// time, dropping those that fall due while the proxy is stalled. Send errors
// are ignored: over UDP a failed send is a lost datagram.
func (f *udpFlow) deliver(l *delayLine, send func([]byte)) {
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	defer timer.Stop()
	for {
		d, ok := l.pop(f.done)
		if !ok {
			return
		}
		if !d.due.IsZero() {
			if wait := time.Until(d.due); wait > 0 {
				timer.Reset(wait)
				select {
				case <-timer.C:
				case <-f.done:
					putBuf(d.buf)
					return
				}
			}
		}
		if !f.p.stalled.Load() {
			send((*d.buf)[:d.n])
		}
		putBuf(d.buf)
	}
}

// datagram is one datagram waiting in a delay line.
type datagram struct {
	buf *[]byte // from smallBufs or largeBufs
	n   int
	due time.Time // zero when there is no latency
}

// delayLine is the FIFO of datagrams in flight in one direction of a flow,
// between the goroutine that reads them and the one that sends them when
// due. Unlike queue, a full line drops instead of waiting: serve reads for
// every flow, so blocking it on one would stall them all, and tail drop is
// what a congested link does to UDP anyway.
type delayLine struct {
	mu     sync.Mutex
	items  []datagram
	head   int
	queued int // buffer bytes held by items[head:]
	closed bool

	ready chan struct{} // signalled after push; capacity 1
}

func newDelayLine() *delayLine {
	return &delayLine{ready: make(chan struct{}, 1)}
}

// push appends d, or returns false if the line is full or closed; the
// caller then still owns d.buf.
func (l *delayLine) push(d datagram) bool {
	size := cap(*d.buf)
	l.mu.Lock()
	if l.closed || l.queued+size > udpMaxQueued {
		l.mu.Unlock()
		return false
	}
	if l.head > 0 && 2*l.head >= len(l.items) {
		// Reclaim the consumed front so a line that never drains
		// completely does not grow forever.
		n := copy(l.items, l.items[l.head:])
		clear(l.items[n:])
		l.items, l.head = l.items[:n], 0
	}
	l.items = append(l.items, d)
	l.queued += size
	l.mu.Unlock()
	signal(l.ready)
	return true
}

// pop removes the oldest datagram, waiting while the line is empty. It
// returns false if done is closed first.
func (l *delayLine) pop(done <-chan struct{}) (datagram, bool) {
	for {
		l.mu.Lock()
		if l.head < len(l.items) {
			d := l.items[l.head]
			l.items[l.head] = datagram{}
			l.head++
			l.queued -= cap(*d.buf)
			if l.head == len(l.items) {
				// Empty: start over, and let go of a burst's backing
				// array rather than hold it while the flow idles.
				l.head = 0
				if cap(l.items) > 256 {
					l.items = nil
				} else {
					l.items = l.items[:0]
				}
			}
			l.mu.Unlock()
			return d, true
		}
		l.mu.Unlock()
		select {
		case <-l.ready:
		case <-done:
			return datagram{}, false
		}
	}
}

// close drops whatever is waiting and makes later pushes fail.
func (l *delayLine) close() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.closed = true
	for _, d := range l.items[l.head:] {
		putBuf(d.buf)
	}
	l.items, l.head, l.queued = nil, 0, 0
}

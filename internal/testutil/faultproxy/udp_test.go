package faultproxy

import (
	"fmt"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tunnelrelay/tunnel/internal/testutil/leakcheck"
)

const (
	// resendEvery is how long a UDP round trip waits for its echo before
	// sending again. Loopback rarely loses a datagram, but it may.
	resendEvery = 250 * time.Millisecond
	// silence is how long a test listens to be sure nothing comes through.
	// Loopback delivers within microseconds, so this is generous.
	silence = 300 * time.Millisecond
)

func TestUDPRelay(t *testing.T) {
	leakcheck.Check(t)
	tg := startUDPTarget(t)
	p := NewUDP(t, tg.addr())
	if p.Target() != tg.addr() {
		t.Errorf("Target = %q, want %q", p.Target(), tg.addr())
	}
	// Two flows at once: each must get back its own datagrams, never the
	// other's, including one too large for a small buffer.
	big := "big " + strings.Repeat("x", 60000)
	errs := make(chan error, 2)
	var wg sync.WaitGroup
	for _, tag := range []string{"A", "B"} {
		c := udpDial(t, p.Addr())
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 50 {
				if err := exchange(c, fmt.Sprintf("%s %d", tag, i)); err != nil {
					errs <- err
					return
				}
			}
			if err := exchange(c, tag+" "+big); err != nil {
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if n := p.Flows(); n != 2 {
		t.Errorf("Flows = %d, want 2", n)
	}
	sources := make(map[string]netip.AddrPort) // tag → upstream address
	for _, r := range tg.drain() {
		tag, _, _ := strings.Cut(r.msg, " ")
		if prev, ok := sources[tag]; ok && prev != r.from {
			t.Errorf("flow %s reached the target from %v and %v, want one socket", tag, prev, r.from)
		}
		sources[tag] = r.from
	}
	if len(sources) != 2 || sources["A"] == sources["B"] {
		t.Errorf("target saw sources %v, want one per flow", sources)
	}
}

func TestUDPStallResume(t *testing.T) {
	leakcheck.Check(t)
	tg := startUDPTarget(t)
	p := NewUDP(t, tg.addr())
	c := udpDial(t, p.Addr())
	udpRoundTrip(t, c, "c 1")
	upstream := tg.lastFrom(t)

	p.Stall()
	p.Stall() // idempotent
	expectSilence(t, c, "c 2")
	tg.send(upstream, "c push-1")
	expectNothing(t, c)
	c2 := udpDial(t, p.Addr())
	expectSilence(t, c2, "c2 1")
	if got := tg.drain(); len(got) != 0 {
		t.Errorf("target received %d datagrams while stalled, first %q", len(got), got[0].msg)
	}
	if n := p.Flows(); n != 1 {
		t.Errorf("Flows while stalled = %d, want 1 (no new flow)", n)
	}

	p.Resume()
	p.Resume() // idempotent
	// What was sent while stalled is gone, not held.
	expectNothing(t, c)
	expectNothing(t, c2)
	udpRoundTrip(t, c, "c 3")
	udpRoundTrip(t, c2, "c2 2")
	push(t, tg, upstream, c, "c push-2")
}

func TestUDPDropAll(t *testing.T) {
	leakcheck.Check(t)
	tg := startUDPTarget(t)
	p := NewUDP(t, tg.addr())
	var (
		old       []*net.UDPConn
		upstreams []netip.AddrPort
	)
	for i := range 2 {
		c := udpDial(t, p.Addr())
		udpRoundTrip(t, c, fmt.Sprintf("old%d 1", i))
		old = append(old, c)
		upstreams = append(upstreams, tg.lastFrom(t))
	}
	p.Stall() // dropping must not wait for relaying to resume
	p.DropAll()
	p.Resume()
	if n := p.Flows(); n != 0 {
		t.Errorf("Flows after DropAll = %d, want 0", n)
	}
	for i, c := range old {
		tg.send(upstreams[i], fmt.Sprintf("old%d push", i))
		expectSilence(t, c, fmt.Sprintf("old%d 2", i))
	}
	if got := tg.drain(); len(got) != 0 {
		t.Errorf("target received %d datagrams from dropped flows, first %q", len(got), got[0].msg)
	}

	c := udpDial(t, p.Addr())
	udpRoundTrip(t, c, "new 1")
	if n := p.Flows(); n != 1 {
		t.Errorf("Flows with a new client = %d, want 1", n)
	}
	// The old flows stay dead once a new one works.
	expectSilence(t, old[0], "old0 3")
}

func TestUDPRefuse(t *testing.T) {
	leakcheck.Check(t)
	tg := startUDPTarget(t)
	p := NewUDP(t, tg.addr())
	c1 := udpDial(t, p.Addr())
	udpRoundTrip(t, c1, "c1 1")
	tg.drain()

	p.SetRefuse(true)
	udpRoundTrip(t, c1, "c1 2")
	c2 := udpDial(t, p.Addr())
	expectSilence(t, c2, "c2 1")
	for _, r := range tg.drain() {
		if strings.HasPrefix(r.msg, "c2 ") {
			t.Errorf("target received %q from a refused flow", r.msg)
		}
	}
	if n := p.Flows(); n != 1 {
		t.Errorf("Flows while refusing = %d, want 1", n)
	}

	p.SetRefuse(false)
	udpRoundTrip(t, c2, "c2 2")
	if n := p.Flows(); n != 2 {
		t.Errorf("Flows after SetRefuse(false) = %d, want 2", n)
	}
}

func TestUDPLatency(t *testing.T) {
	leakcheck.Check(t)
	const oneWay = 50 * time.Millisecond
	tg := startUDPTarget(t)
	p := NewUDP(t, tg.addr())
	p.SetLatency(oneWay)
	c := udpDial(t, p.Addr())

	start := time.Now()
	udpRoundTrip(t, c, "ping 0")
	if rtt := time.Since(start); rtt < 2*oneWay {
		t.Errorf("round trip took %v, want at least %v", rtt, 2*oneWay)
	}

	// A stream of datagrams: each is delayed by 2*oneWay, in order, and they
	// wait side by side. A proxy that sleeps per datagram would need
	// count*oneWay = 10s per direction.
	const count = 200
	start = time.Now()
	sent := make([]time.Time, count)
	sendDone := make(chan struct{})
	go func() {
		defer close(sendDone)
		for i := range count {
			sent[i] = time.Now()
			c.Write(fmt.Appendf(nil, "seq %d", i))
			time.Sleep(time.Millisecond)
		}
	}()
	type arrival struct {
		seq int
		at  time.Time
	}
	var got []arrival
	buf := make([]byte, maxDatagram)
	c.SetReadDeadline(time.Now().Add(4 * time.Second))
	for len(got) < count {
		n, err := c.Read(buf)
		if err != nil {
			break
		}
		var seq int
		if _, err := fmt.Sscanf(string(buf[:n]), "seq %d", &seq); err != nil {
			continue // a late echo of the first round trip
		}
		got = append(got, arrival{seq, time.Now()})
	}
	<-sendDone
	took := time.Since(start)
	if len(got) < count*95/100 {
		t.Fatalf("%d of %d datagrams came back within 4s with %v latency", len(got), count, oneWay)
	}
	for i, a := range got {
		if i > 0 && a.seq <= got[i-1].seq {
			t.Fatalf("datagram %d arrived after %d: reordered", a.seq, got[i-1].seq)
		}
		if d := a.at.Sub(sent[a.seq]); d < 2*oneWay {
			t.Fatalf("datagram %d came back after %v, want at least %v", a.seq, d, 2*oneWay)
		}
	}
	t.Logf("%d of %d datagrams with %v one-way latency in %v", len(got), count, oneWay, took)

	p.SetLatency(0)
	fastest := time.Hour
	for i := range 5 {
		start := time.Now()
		udpRoundTrip(t, c, fmt.Sprintf("fast %d", i))
		fastest = min(fastest, time.Since(start))
	}
	if fastest >= 2*oneWay {
		t.Errorf("fastest round trip after SetLatency(0) took %v, want less than %v", fastest, 2*oneWay)
	}
}

func TestUDPClose(t *testing.T) {
	leakcheck.Check(t)
	tg := startUDPTarget(t)
	p, err := ListenUDP("127.0.0.1:0", tg.addr())
	if err != nil {
		t.Fatal(err)
	}
	var clients []*net.UDPConn
	for i := range 2 {
		c := udpDial(t, p.Addr())
		udpRoundTrip(t, c, fmt.Sprintf("c%d 1", i))
		clients = append(clients, c)
	}
	// Leave datagrams waiting in both directions of a flow.
	p.SetLatency(time.Hour)
	clients[0].Write([]byte("c0 held"))
	tg.send(tg.lastFrom(t), "c1 held")
	time.Sleep(50 * time.Millisecond)

	start := time.Now()
	if err := p.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if took := time.Since(start); took > time.Second {
		t.Errorf("Close took %v with datagrams waiting", took)
	}
	if err := p.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if n := p.Flows(); n != 0 {
		t.Errorf("Flows after Close = %d", n)
	}
	for _, c := range clients {
		c.Write([]byte("after close"))
		c.SetReadDeadline(time.Now().Add(silence))
		buf := make([]byte, 64)
		if n, err := c.Read(buf); err == nil {
			t.Errorf("received %q after Close", buf[:n])
		}
	}
}

func TestUDPIdleExpiry(t *testing.T) {
	leakcheck.Check(t)
	tg := startUDPTarget(t)
	p := NewUDP(t, tg.addr())
	c := udpDial(t, p.Addr())
	udpRoundTrip(t, c, "c 1")
	first := tg.lastFrom(t)

	p.expire(time.Now())
	if n := p.Flows(); n != 1 {
		t.Fatalf("Flows after expiring nothing = %d, want 1", n)
	}
	p.expire(time.Now().Add(udpIdleTimeout + time.Second))
	if n := p.Flows(); n != 0 {
		t.Fatalf("Flows after the idle timeout = %d, want 0", n)
	}
	udpRoundTrip(t, c, "c 2")
	if second := tg.lastFrom(t); second == first {
		t.Errorf("after expiry the client still reaches the target from %v, want a new flow", first)
	}

	// A dropped address is forgotten after the idle timeout too.
	p.DropAll()
	expectSilence(t, c, "c 3")
	p.expire(time.Now().Add(udpIdleTimeout + time.Second))
	udpRoundTrip(t, c, "c 4")
}

func TestUDPLimits(t *testing.T) {
	leakcheck.Check(t)
	tg := startUDPTarget(t)
	p, err := listenUDP("127.0.0.1:0", tg.addr(), udpLimits{idle: udpIdleTimeout, maxFlows: 2, maxDropped: 1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })

	upstream := make(map[string]netip.AddrPort)
	clients := make(map[string]*net.UDPConn)
	step := func(name string, wantNewFlow bool) {
		t.Helper()
		c := clients[name]
		if c == nil {
			c = udpDial(t, p.Addr())
			clients[name] = c
		}
		udpRoundTrip(t, c, name+" "+time.Now().String())
		from := tg.lastFrom(t)
		if prev, ok := upstream[name]; ok && (prev != from) != wantNewFlow {
			t.Errorf("%s: upstream %v, before %v; want a new flow: %v", name, from, prev, wantNewFlow)
		}
		upstream[name] = from
		if n := p.Flows(); n > 2 {
			t.Errorf("Flows = %d, limit 2", n)
		}
	}
	step("a", true)
	step("b", true)
	step("c", true)  // evicts a, silent longest
	step("b", false) // still live
	step("a", true)  // evicts c
	if n := p.Flows(); n != 2 {
		t.Errorf("Flows = %d, want 2", n)
	}

	// Live are b, then a. Only one dropped address is remembered: a's,
	// the more recently active.
	p.DropAll()
	expectSilence(t, clients["a"], "a dropped")
	step("b", true)
}

// received is a datagram a udpTarget received and where it came from.
type received struct {
	msg  string
	from netip.AddrPort
}

// udpTarget is a UDP echo server that also reports what it receives and
// can send to any address unprompted.
type udpTarget struct {
	pc  *net.UDPConn
	got chan received // buffered; datagrams beyond its capacity go unreported
}

// startUDPTarget serves on 127.0.0.1:0 until the test ends.
func startUDPTarget(t *testing.T) *udpTarget {
	t.Helper()
	pc, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	tg := &udpTarget{pc: pc, got: make(chan received, 1024)}
	exited := make(chan struct{})
	go func() {
		defer close(exited)
		buf := make([]byte, maxDatagram)
		for {
			n, from, err := pc.ReadFromUDPAddrPort(buf)
			if err != nil {
				return
			}
			select {
			case tg.got <- received{string(buf[:n]), from}:
			default:
			}
			pc.WriteToUDPAddrPort(buf[:n], from)
		}
	}()
	t.Cleanup(func() {
		pc.Close()
		<-exited
	})
	return tg
}

func (tg *udpTarget) addr() string { return tg.pc.LocalAddr().String() }

func (tg *udpTarget) send(to netip.AddrPort, msg string) {
	tg.pc.WriteToUDPAddrPort([]byte(msg), to)
}

// drain returns what the target has received and not yet reported.
func (tg *udpTarget) drain() []received {
	var rs []received
	for {
		select {
		case r := <-tg.got:
			rs = append(rs, r)
		default:
			return rs
		}
	}
}

// lastFrom returns the source of the last datagram the target received,
// which a completed round trip guarantees is there.
func (tg *udpTarget) lastFrom(t *testing.T) netip.AddrPort {
	t.Helper()
	rs := tg.drain()
	if len(rs) == 0 {
		t.Fatal("target received nothing")
	}
	return rs[len(rs)-1].from
}

func udpDial(t *testing.T, addr string) *net.UDPConn {
	t.Helper()
	raddr, err := net.ResolveUDPAddr("udp", addr)
	if err != nil {
		t.Fatal(err)
	}
	c, err := net.DialUDP("udp", nil, raddr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func udpRoundTrip(t *testing.T, c *net.UDPConn, msg string) {
	t.Helper()
	if err := exchange(c, msg); err != nil {
		t.Fatal(err)
	}
}

// exchange sends msg, "TAG rest", until its echo comes back, for up to
// ioTimeout. Echoes of earlier messages with the same tag are skipped; a
// datagram with another tag is an error, as it was meant for another client.
func exchange(c *net.UDPConn, msg string) error {
	tag, _, _ := strings.Cut(msg, " ")
	name := msg[:min(len(msg), 20)]
	buf := make([]byte, maxDatagram)
	deadline := time.Now().Add(ioTimeout)
	for time.Now().Before(deadline) {
		if _, err := c.Write([]byte(msg)); err != nil {
			return fmt.Errorf("send %q: %w", name, err)
		}
		wait := time.Now().Add(resendEvery)
		if wait.After(deadline) {
			wait = deadline
		}
		c.SetReadDeadline(wait)
		for {
			n, err := c.Read(buf)
			if isTimeout(err) {
				break
			}
			if err != nil {
				return fmt.Errorf("read echo of %q: %w", name, err)
			}
			got := string(buf[:n])
			if got == msg {
				return nil
			}
			if gotTag, _, _ := strings.Cut(got, " "); gotTag != tag {
				return fmt.Errorf("client %s received %q, meant for another client", tag, got[:min(n, 20)])
			}
		}
	}
	return fmt.Errorf("no echo of %q within %v", name, ioTimeout)
}

// expectSilence sends msg and fails the test if anything comes back.
func expectSilence(t *testing.T, c *net.UDPConn, msg string) {
	t.Helper()
	if _, err := c.Write([]byte(msg)); err != nil {
		t.Fatalf("send %q: %v", msg, err)
	}
	expectNothing(t, c)
}

// expectNothing fails the test if c receives anything for a while.
func expectNothing(t *testing.T, c *net.UDPConn) {
	t.Helper()
	buf := make([]byte, maxDatagram)
	c.SetReadDeadline(time.Now().Add(silence))
	n, err := c.Read(buf)
	if err == nil {
		t.Fatalf("received %q, want silence", buf[:min(n, 40)])
	}
	if !isTimeout(err) {
		t.Fatalf("read: %v, want silence", err)
	}
}

// push has the target send msg to upstream until c receives it.
func push(t *testing.T, tg *udpTarget, upstream netip.AddrPort, c *net.UDPConn, msg string) {
	t.Helper()
	buf := make([]byte, maxDatagram)
	deadline := time.Now().Add(ioTimeout)
	for time.Now().Before(deadline) {
		tg.send(upstream, msg)
		c.SetReadDeadline(time.Now().Add(resendEvery))
		if n, err := c.Read(buf); err == nil && string(buf[:n]) == msg {
			return
		}
	}
	t.Fatalf("%q sent by the target did not reach the client within %v", msg, ioTimeout)
}

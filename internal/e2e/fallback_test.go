package e2e

import (
	"bytes"
	"io"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tunnelrelay/tunnel/internal/admin"
	"github.com/tunnelrelay/tunnel/internal/agent"
	"github.com/tunnelrelay/tunnel/internal/harness"
	"github.com/tunnelrelay/tunnel/internal/testutil/faultproxy"
	"github.com/tunnelrelay/tunnel/internal/testutil/tcptest"
)

// These tests are about transport auto: QUIC first, TLS when UDP does not
// get through, and back to QUIC when it does again.

// auto is the env transport of these tests: agents prefer QUIC and fall
// back to TLS.
var auto = transport{name: agent.TransportAuto}

// autoAgent is an agent with transport auto whose QUIC attempts dial
// quicAddr, giving up on QUIC after a second and trying it again after
// retry.
func autoAgent(quicAddr func() string, retry time.Duration) harness.AgentConfig {
	opt := testAgentOptions()
	opt.QUICTimeout = time.Second
	opt.QUICRetry = retry
	return harness.AgentConfig{Name: "a1", Transport: agent.TransportAuto, ViaQUIC: quicAddr, Options: opt}
}

// waitTransport polls the server's view of agent a1 until it is online over
// the transport, and returns the view.
func (e *env) waitTransport(transport string, within time.Duration) admin.Agent {
	e.t.Helper()
	deadline := time.Now().Add(within)
	for {
		v := e.agentView("a1")
		if v.Online && v.Transport == transport {
			return v
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("agent not online over %s within %v: %+v", transport, within, v)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// echoWorks runs a session through the route and checks what comes back.
func echoWorks(t *testing.T, route string) {
	t.Helper()
	c, err := net.Dial("tcp", route)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if err := checksumExchange(c, 200_000, 3); err != nil {
		t.Fatal(err)
	}
}

// TestUDPBlocked: an agent that prefers QUIC, on a network where UDP to the
// server goes nowhere, is connected over TLS within a few seconds; the
// server's status says it fell back and why, and routes work.
func TestUDPBlocked(t *testing.T) {
	for _, tc := range []struct {
		name string
		// quicAddr blocks UDP one way and returns where QUIC dials.
		quicAddr func(t *testing.T, server string) string
	}{
		{"every datagram dropped", func(t *testing.T, server string) string {
			p := faultproxy.NewUDP(t, server)
			p.Stall()
			return p.Addr()
		}},
		{"new flows dropped", func(t *testing.T, server string) string {
			p := faultproxy.NewUDP(t, server)
			p.SetRefuse(true)
			return p.Addr()
		}},
		{"port unreachable", func(t *testing.T, server string) string {
			// Nothing listens there: the kernel answers with ICMP, as a
			// firewall that rejects instead of dropping would.
			pc, err := net.ListenPacket("udp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			pc.Close()
			return pc.LocalAddr().String()
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, auto, testServerOptions())
			quicAddr := tc.quicAddr(t, e.srv.Addr)
			start := time.Now()
			e.agentWith(autoAgent(func() string { return quicAddr }, time.Hour), "echo="+tcptest.Echo(t))
			v := e.waitTransport(agent.TransportTLS, 10*time.Second)
			el := time.Since(start)
			t.Logf("connected over TLS after %v; fallback %q", el.Round(time.Millisecond), v.Fallback)
			if el > 10*time.Second {
				t.Errorf("connected after %v", el)
			}
			if !strings.Contains(v.Fallback, "QUIC") {
				t.Errorf("the server's view does not say why the agent is on TLS: fallback %q", v.Fallback)
			}
			e.log.waitFor(t, time.Second, "QUIC failed; falling back to TLS", "module=agent")
			echoWorks(t, e.route("r", "a1", "echo"))
			if v := e.agentView("a1"); v.Transport != agent.TransportTLS {
				t.Errorf("the agent moved to %s with UDP still blocked", v.Transport)
			}
		})
	}
}

// TestQUICComesBack: once UDP gets through again, an agent that fell back
// to TLS moves its connection to QUIC at its next retry, but only while no
// session is open on it: a session in progress keeps working on TLS with
// nothing lost, and the move follows when it ends.
func TestQUICComesBack(t *testing.T) {
	const retry = 1500 * time.Millisecond
	for _, tc := range []struct {
		name string
		busy bool
	}{
		{"idle", false},
		{"session open", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, auto, testServerOptions())
			udp := faultproxy.NewUDP(t, e.srv.Addr)
			udp.SetRefuse(true)
			e.agentWith(autoAgent(udp.Addr, retry), "echo="+tcptest.Echo(t))
			if v := e.waitTransport(agent.TransportTLS, 10*time.Second); v.Fallback == "" {
				t.Fatal("on TLS with no fallback reason")
			}
			route := e.route("r", "a1", "echo")

			var session *busySession
			if tc.busy {
				session = startBusySession(t, route)
			}
			udp.SetRefuse(false)
			unblocked := time.Now()
			if tc.busy {
				// Several retries come due while the session runs; the
				// connection stays where it is.
				for time.Since(unblocked) < 3*retry {
					if v := e.agentView("a1"); v.Transport != agent.TransportTLS {
						t.Fatalf("moved to %s with a session open", v.Transport)
					}
					time.Sleep(50 * time.Millisecond)
				}
				moved := strings.Contains(e.log.String(), "moving the connection from TLS to QUIC")
				n := session.stop(t)
				t.Logf("the session echoed %d bytes over TLS after UDP was unblocked", n)
				if moved {
					t.Fatal("the agent moved to QUIC while a session was open")
				}
			}
			start := time.Now()
			v := e.waitTransport(agent.TransportQUIC, 10*time.Second)
			t.Logf("on QUIC %v after UDP was unblocked, %v after the last session", time.Since(unblocked).Round(time.Millisecond), time.Since(start).Round(time.Millisecond))
			if v.Fallback != "" {
				t.Errorf("on QUIC with a fallback reason %q", v.Fallback)
			}
			e.log.waitFor(t, time.Second, "QUIC works again; moving the connection from TLS to QUIC")
			echoWorks(t, route)
			if v := e.agentView("a1"); v.Transport != agent.TransportQUIC {
				t.Errorf("back on %s after the move", v.Transport)
			}
		})
	}
}

// busySession is a session that echoes chunks through a route, and checks
// each one, until stopped.
type busySession struct {
	conn   net.Conn
	echoed atomic.Int64
	stopc  chan struct{}
	done   chan error
}

func startBusySession(t *testing.T, route string) *busySession {
	t.Helper()
	c, err := net.Dial("tcp", route)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	s := &busySession{conn: c, stopc: make(chan struct{}), done: make(chan error, 1)}
	go func() {
		out := make([]byte, 16<<10)
		in := make([]byte, len(out))
		src := &patternReader{n: 1 << 62, seed: 11}
		for {
			select {
			case <-s.stopc:
				s.done <- nil
				return
			default:
			}
			src.Read(out)
			c.SetDeadline(time.Now().Add(5 * time.Second))
			if _, err := c.Write(out); err != nil {
				s.done <- err
				return
			}
			if _, err := io.ReadFull(c, in); err != nil {
				s.done <- err
				return
			}
			if !bytes.Equal(in, out) {
				s.done <- io.ErrUnexpectedEOF
				return
			}
			s.echoed.Add(int64(len(in)))
		}
	}()
	// Under way before the test goes on.
	deadline := time.Now().Add(5 * time.Second)
	for s.echoed.Load() == 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if s.echoed.Load() == 0 {
		t.Fatal("the session echoed nothing")
	}
	return s
}

// stop ends the session: it stops sending, checks that all went well and
// closes the connection. It returns the bytes echoed.
func (s *busySession) stop(t *testing.T) int64 {
	t.Helper()
	close(s.stopc)
	if err := <-s.done; err != nil {
		t.Fatalf("the session broke after %d bytes: %v", s.echoed.Load(), err)
	}
	s.conn.(*net.TCPConn).CloseWrite()
	s.conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	if n, err := io.Copy(io.Discard, s.conn); n != 0 || err != nil {
		t.Errorf("the session ended with %d stray bytes, %v", n, err)
	}
	s.conn.Close()
	return s.echoed.Load()
}

// TestQUICMoveKeepsSessions: a session that starts after the agent found its
// TLS connection idle, but before the server has its QUIC one, lives through
// the move: the old connection serves it until it ends.
func TestQUICMoveKeepsSessions(t *testing.T) {
	e := newEnv(t, auto, testServerOptions())
	udp := faultproxy.NewUDP(t, e.srv.Addr)
	udp.SetRefuse(true)
	e.agentWith(autoAgent(udp.Addr, 1500*time.Millisecond), "echo="+tcptest.Echo(t))
	e.waitTransport(agent.TransportTLS, 10*time.Second)
	route := e.route("r", "a1", "echo")
	// QUIC comes back slowly: the move takes a few round trips of 300 ms.
	udp.SetLatency(150 * time.Millisecond)
	udp.SetRefuse(false)
	deadline := time.Now().Add(10 * time.Second)
	for udp.Flows() == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the agent made no QUIC attempt within 10s")
		}
		time.Sleep(time.Millisecond)
	}
	c, err := net.Dial("tcp", route) // while the move is under way
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for i := range 20 {
		c.SetDeadline(time.Now().Add(5 * time.Second))
		if _, err := c.Write([]byte("ping")); err != nil {
			t.Fatalf("exchange %d: write: %v", i, err)
		}
		if _, err := io.ReadFull(c, make([]byte, 4)); err != nil {
			t.Fatalf("exchange %d, %v into the move: read: %v", i, time.Duration(i)*100*time.Millisecond, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	c.Close()
	e.waitTransport(agent.TransportQUIC, 10*time.Second)
}

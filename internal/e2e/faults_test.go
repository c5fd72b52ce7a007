package e2e

import (
	"context"
	"errors"
	"io"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/tunnelrelay/tunnel/internal/testutil/tcptest"

	"github.com/tunnelrelay/tunnel/internal/admin"
	"github.com/tunnelrelay/tunnel/internal/harness"
	"github.com/tunnelrelay/tunnel/internal/proto"
	"github.com/tunnelrelay/tunnel/internal/testutil/blackhole"
	"github.com/tunnelrelay/tunnel/pkg/auth"
	"github.com/tunnelrelay/tunnel/pkg/mux"
)

// TestPinnedCAMismatch: an agent pinned to another CA refuses the server,
// says why, and keeps retrying.
func TestPinnedCAMismatch(t *testing.T) {
	forEachTransport(t, func(t *testing.T, tr transport) {
		e := newEnv(t, tr, testServerOptions())
		other, err := auth.NewCA("some other CA", time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		a := e.agentWith(harness.AgentConfig{Name: "a1", CAPEM: other.CertPEM()})
		line := e.log.waitFor(t, 5*time.Second, "server certificate not trusted", "retrying")
		if !strings.Contains(line, "certificate signed by unknown authority") {
			t.Errorf("the agent's log does not say what is wrong with the certificate: %s", line)
		}
		if !tr.quic() {
			// The server's side of it. quic-go's listener hands over
			// only the handshakes that complete, so over QUIC the server
			// neither sees nor logs the ones its clients abort.
			e.log.waitFor(t, 5*time.Second, "handshake failed", "module=mux")
		}
		// Still retrying, never connected.
		time.Sleep(500 * time.Millisecond)
		if n := strings.Count(e.log.String(), "server certificate not trusted"); n < 2 {
			t.Errorf("the agent tried %d times, want it to keep retrying", n)
		}
		select {
		case <-a.Done():
			t.Fatalf("agent gave up: %v", a.Err())
		default:
		}
		if e.isOnline("a1") {
			t.Fatal("agent with the wrong CA is online")
		}
	})
}

// TestRefusedAgents: unknown, disabled and removed agents are refused
// before any data stream opens; the agent stops with the reason.
func TestRefusedAgents(t *testing.T) {
	forEachTransport(t, func(t *testing.T, tr transport) {
		for _, tc := range []struct {
			name  string
			setup func(e *env) harness.AgentConfig // before the agent starts
			live  func(e *env)                     // after it is online, if set
			code  proto.RefuseCode
		}{
			{
				name: "unknown",
				setup: func(e *env) harness.AgentConfig {
					key, _ := auth.NewAgentKey()
					return harness.AgentConfig{Name: "ghost", Key: key}
				},
				code: proto.RefuseUnknownAgent,
			},
			{
				name: "wrong key",
				setup: func(e *env) harness.AgentConfig {
					registered, _ := auth.NewAgentKey()
					e.srv.AddAgent(e.ctx, admin.AddAgentRequest{Name: "ghost", Fingerprint: registered.Fingerprint()})
					other, _ := auth.NewAgentKey()
					return harness.AgentConfig{Name: "ghost", Key: other}
				},
				code: proto.RefuseKeyMismatch,
			},
			{
				name: "disabled",
				setup: func(e *env) harness.AgentConfig {
					key, _ := auth.NewAgentKey()
					e.srv.AddAgent(e.ctx, admin.AddAgentRequest{Name: "ghost", Fingerprint: key.Fingerprint()})
					if err := e.srv.SetAgentDisabled(e.ctx, "ghost", true); err != nil {
						t.Fatal(err)
					}
					return harness.AgentConfig{Name: "ghost", Key: key}
				},
				code: proto.RefuseAgentDisabled,
			},
			{
				name:  "disabled while connected",
				setup: func(e *env) harness.AgentConfig { return harness.AgentConfig{Name: "ghost"} },
				live: func(e *env) {
					if err := e.srv.SetAgentDisabled(e.ctx, "ghost", true); err != nil {
						t.Fatal(err)
					}
				},
				code: proto.RefuseAgentDisabled,
			},
			{
				name:  "removed while connected",
				setup: func(e *env) harness.AgentConfig { return harness.AgentConfig{Name: "ghost"} },
				live: func(e *env) {
					if err := e.srv.RemoveAgent(e.ctx, "ghost"); err != nil {
						t.Fatal(err)
					}
				},
				code: proto.RefuseUnknownAgent,
			},
		} {
			t.Run(tc.name, func(t *testing.T) {
				e := newEnv(t, tr, testServerOptions())
				a := e.agentWith(tc.setup(e), "db="+tcptest.Echo(t))
				if tc.live != nil {
					e.online("ghost")
					tc.live(e)
				}
				select {
				case <-a.Done():
				case <-time.After(10 * time.Second):
					t.Fatal("refused agent did not stop")
				}
				var ref *proto.Refuse
				if !errors.As(a.Err(), &ref) || ref.Code != tc.code {
					t.Fatalf("agent stopped with %v, want a refusal %q", a.Err(), tc.code)
				}
				if !strings.Contains(ref.Message, `"ghost"`) {
					t.Errorf("refusal %q does not name the agent", ref.Message)
				}
				e.log.waitFor(t, time.Second, "refused by server; giving up", "code="+string(tc.code))
				if tc.live == nil {
					e.log.waitFor(t, time.Second, "agent refused", "agent=ghost", "code="+string(tc.code))
					if strings.Contains(e.log.String(), "agent connected") {
						t.Error("a refused agent was logged as connected")
					}
				}
				if strings.Contains(e.log.String(), "session started") {
					t.Error("a data stream was opened")
				}
			})
		}
	})
}

// TestRouteFailures: a client of a route whose agent is offline, or whose
// target the agent does not declare, is closed at once, and the server
// logs route, agent and reason.
func TestRouteFailures(t *testing.T) {
	forEachTransport(t, func(t *testing.T, tr transport) {
		e := newEnv(t, tr, testServerOptions())
		e.agent("up", "db="+tcptest.Echo(t))
		e.online("up")
		key, _ := auth.NewAgentKey()
		if _, err := e.srv.AddAgent(e.ctx, admin.AddAgentRequest{Name: "down", Fingerprint: key.Fingerprint()}); err != nil {
			t.Fatal(err)
		}
		for _, tc := range []struct {
			name, agent, target, reason string
		}{
			{"agent offline", "down", "db", `agent offline: agent \"down\" is not connected`},
			{"target not declared", "up", "nope", `unknown target: agent \"up\" does not declare target \"nope\"`},
		} {
			t.Run(tc.name, func(t *testing.T) {
				route := strings.ReplaceAll(tc.name, " ", "-")
				c, err := net.Dial("tcp", e.route(route, tc.agent, tc.target))
				if err != nil {
					t.Fatal(err)
				}
				defer c.Close()
				expectClosed(t, c, time.Second)
				e.log.waitFor(t, time.Second, "session refused", "route="+route, "agent="+tc.agent, tc.reason)
			})
		}
	})
}

// TestTargetUnreachable: a target that refuses, or does not answer, closes
// the client within the dial timeout, while another session on the same
// agent goes on undisturbed.
func TestTargetUnreachable(t *testing.T) {
	forEachTransport(t, func(t *testing.T, tr transport) {
		e := newEnv(t, tr, testServerOptions())
		e.agent("a1", "echo="+tcptest.Echo(t), "refusing="+blackhole.RefusedAddr(t), "silent="+blackhole.Listen(t))
		e.online("a1")
		echoAddr := e.route("echo", "a1", "echo")

		// A session that is busy the whole time.
		busy, err := net.Dial("tcp", echoAddr)
		if err != nil {
			t.Fatal(err)
		}
		defer busy.Close()
		var echoed atomic.Int64
		stopBusy := make(chan struct{})
		busyDone := make(chan error, 1)
		go func() {
			buf := make([]byte, 1024)
			for {
				select {
				case <-stopBusy:
					busyDone <- nil
					return
				default:
				}
				busy.SetDeadline(time.Now().Add(2 * time.Second))
				if _, err := busy.Write(buf); err != nil {
					busyDone <- err
					return
				}
				if _, err := io.ReadFull(busy, buf); err != nil {
					busyDone <- err
					return
				}
				echoed.Add(int64(len(buf)))
			}
		}()

		dialTimeout := testAgentOptions().DialTimeout
		for _, tc := range []struct {
			name, target, reason string
			within               time.Duration
		}{
			{"refused", "refusing", `target \"refusing\" refused the connection`, time.Second},
			{"no answer", "silent", `target \"silent\" did not answer within 3s`, dialTimeout + 2*time.Second},
		} {
			t.Run(tc.name, func(t *testing.T) {
				c, err := net.Dial("tcp", e.route(tc.target, "a1", tc.target))
				if err != nil {
					t.Fatal(err)
				}
				defer c.Close()
				before := echoed.Load()
				expectClosed(t, c, tc.within)
				e.log.waitFor(t, time.Second, "session refused", "module=dbproxy", "route="+tc.target, tc.reason)
				if echoed.Load() == before && tc.name == "no answer" {
					t.Error("the busy session made no progress while a dial hung")
				}
			})
		}
		close(stopBusy)
		if err := <-busyDone; err != nil {
			t.Fatalf("the other session failed: %v", err)
		}
		// The agent logs the target's address for its operator; the reason it
		// sends the server does not carry it.
		for line := range strings.SplitSeq(e.log.String(), "\n") {
			if strings.Contains(line, "module=dbproxy") && strings.Contains(line, "session refused") && strings.Contains(line, "127.0.0.1:") && !strings.Contains(line, "client=127.0.0.1:") {
				t.Errorf("the server learned the target's address: %s", line)
			}
		}
	})
}

// TestSilentTunnel: a proxy in the middle stops forwarding without closing
// anything. Both sides notice within the heartbeat timeout, the session on
// the tunnel is closed, and the agent reconnects.
func TestSilentTunnel(t *testing.T) {
	forEachTransport(t, func(t *testing.T, tr transport) {
		opt := testServerOptions()
		e := newEnv(t, tr, opt)
		proxy, cfg := e.proxy(harness.AgentConfig{Name: "a1"})
		e.agentWith(cfg, "echo="+tcptest.Echo(t))
		e.online("a1")
		addr := e.route("r", "a1", "echo")
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.Write([]byte("x"))
		io.ReadFull(c, make([]byte, 1))

		start := time.Now()
		proxy.Stall()
		bound := opt.HeartbeatTimeout + 2*opt.HeartbeatInterval
		e.log.waitFor(t, bound+time.Second, "agent disconnected", "agent=a1", "heartbeat timeout")
		e.log.waitFor(t, bound+time.Second, "connection to server lost", "heartbeat timeout")
		t.Logf("both sides noticed within %v (timeout %v)", time.Since(start).Round(time.Millisecond), opt.HeartbeatTimeout)
		expectClosed(t, c, time.Second)

		proxy.Resume()
		e.online("a1")
		c2, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c2.Close()
		if err := checksumExchange(c2, 10_000, 1); err != nil {
			t.Fatalf("after the reconnect: %v", err)
		}
	})
}

// TestDuplicateAgent: a second healthy copy of an agent is refused with
// "already connected", which both sides log; the first keeps serving.
func TestDuplicateAgent(t *testing.T) {
	forEachTransport(t, func(t *testing.T, tr transport) {
		e := newEnv(t, tr, testServerOptions())
		echo := tcptest.Echo(t)
		first := e.agent("a1", "echo="+echo)
		e.online("a1")
		second := e.agentWith(harness.AgentConfig{Name: "a1", Key: first.Key}, "echo="+echo)
		e.log.waitFor(t, 5*time.Second, "agent refused", "agent=a1", "code=already_connected")
		e.log.waitFor(t, 5*time.Second, "refused by server; retrying", "already connected")
		select {
		case <-second.Done():
			t.Fatalf("the second copy gave up (%v); it should wait its turn", second.Err())
		default:
		}
		c, err := net.Dial("tcp", e.route("r", "a1", "echo"))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if err := checksumExchange(c, 10_000, 1); err != nil {
			t.Fatal(err)
		}
		// When the first copy stops, the second takes over.
		first.Stop()
		e.log.waitForNth(t, 5*time.Second, 2, "agent connected", "agent=a1")
		e.online("a1")
	})
}

// TestStaleConnectionReplaced: after a network drop the server still holds
// the old, silent connection; a reconnect replaces it at once, long before
// the server's own heartbeat timeout would have noticed.
func TestStaleConnectionReplaced(t *testing.T) {
	forEachTransport(t, func(t *testing.T, tr transport) {
		opt := testServerOptions()
		opt.HeartbeatTimeout = 30 * time.Second // the server alone would wait this long
		for _, tc := range []struct {
			name   string
			reason string
		}{
			{"same agent process", "the agent reconnected"},
			{"new agent process", "no answer to a liveness ping"},
		} {
			t.Run(tc.name, func(t *testing.T) {
				e := newEnv(t, tr, opt)
				echo := tcptest.Echo(t)
				proxy := tr.proxy(t, e.srv.Addr)
				var dials atomic.Int32
				var (
					mu       sync.Mutex
					sessions []mux.Session
				)
				cfg := tr.via(harness.AgentConfig{
					Name: "a1",
					OnSession: func(s mux.Session) {
						mu.Lock()
						sessions = append(sessions, s)
						mu.Unlock()
					},
				}, func() string {
					// The first connection goes through the proxy, later ones direct.
					if dials.Add(1) == 1 {
						return proxy.Addr()
					}
					return e.srv.Addr
				})
				a := e.agentWith(cfg, "echo="+echo)
				e.online("a1")
				proxy.Stall() // the old connection goes silent; nothing is closed
				start := time.Now()
				switch tc.name {
				case "same agent process":
					mu.Lock()
					first := sessions[0]
					mu.Unlock()
					first.Close() // the agent notices the drop and reconnects
				case "new agent process":
					a.Stop()
					e.agentWith(harness.AgentConfig{Name: "a1", Key: a.Key}, "echo="+echo)
				}
				e.log.waitFor(t, 5*time.Second, "replacing", "agent=a1", tc.reason)
				e.log.waitForNth(t, 5*time.Second, 2, "agent connected", "agent=a1", "remote=127.0.0.1")
				c, err := net.Dial("tcp", e.route("r", "a1", "echo"))
				if err != nil {
					t.Fatal(err)
				}
				defer c.Close()
				if err := checksumExchange(c, 10_000, 1); err != nil {
					t.Fatal(err)
				}
				if el := time.Since(start); el > 5*time.Second {
					t.Errorf("replaced after %v", el)
				}
			})
		}
	})
}

// TestAllow: a client outside a route's allowed networks is disconnected
// before a byte is read, and no stream is opened for it.
func TestAllow(t *testing.T) {
	forEachTransport(t, func(t *testing.T, tr transport) {
		e := newEnv(t, tr, testServerOptions())
		e.agent("a1", "echo="+tcptest.Echo(t))
		e.online("a1")
		for _, tc := range []struct {
			name  string
			allow []string
			ok    bool
		}{
			{"other network", []string{"10.0.0.0/8", "192.0.2.1"}, false},
			{"loopback allowed", []string{"10.0.0.0/8", "127.0.0.1"}, true},
			{"no allow list", nil, true},
		} {
			t.Run(tc.name, func(t *testing.T) {
				route := strings.ReplaceAll(tc.name, " ", "-")
				c, err := net.Dial("tcp", e.route(route, "a1", "echo", tc.allow...))
				if err != nil {
					if !tc.ok && errors.Is(err, syscall.ECONNRESET) {
						// Reset so fast that connect itself reports it.
						e.log.waitFor(t, time.Second, "client not allowed", "route="+route)
						return
					}
					t.Fatal(err)
				}
				defer c.Close()
				if tc.ok {
					if err := checksumExchange(c, 1000, 1); err != nil {
						t.Fatal(err)
					}
					return
				}
				expectClosed(t, c, time.Second)
				e.log.waitFor(t, time.Second, "client not allowed", "route="+route)
				for line := range strings.SplitSeq(e.log.String(), "\n") {
					if strings.Contains(line, "session started") && strings.Contains(line, "route="+route) {
						t.Fatal("a stream was opened for a client that is not allowed")
					}
				}
			})
		}
	})
}

// TestSessionLimits: a route's and an agent's session limits refuse the
// session beyond them, and the client is closed at once.
func TestSessionLimits(t *testing.T) {
	forEachTransport(t, func(t *testing.T, tr transport) {
		opt := testServerOptions()
		opt.MaxSessionsPerAgent = 2
		e := newEnv(t, tr, opt)
		e.agent("a1", "echo="+tcptest.Echo(t))
		e.online("a1")
		r, err := e.srv.Server.AddRoute(e.ctx, admin.AddRouteRequest{Name: "one", Agent: "a1", Target: "echo", Listen: "127.0.0.1:0", MaxSessions: 1})
		if err != nil {
			t.Fatal(err)
		}
		other := e.route("other", "a1", "echo")
		dial := func(addr string) net.Conn {
			c, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { c.Close() })
			return c
		}
		hold := func(c net.Conn) {
			c.Write([]byte("x"))
			c.SetReadDeadline(time.Now().Add(5 * time.Second))
			if _, err := io.ReadFull(c, make([]byte, 1)); err != nil {
				t.Fatal(err)
			}
		}
		hold(dial(r.Listen))
		expectClosed(t, dial(r.Listen), time.Second)
		e.log.waitFor(t, time.Second, "session refused", "route=one", `session limit reached: route \"one\" is at its limit of 1 open sessions`)
		hold(dial(other))
		expectClosed(t, dial(other), time.Second)
		e.log.waitFor(t, time.Second, "session refused", "route=other", `session limit reached: agent \"a1\" is at the server's limit of 2 open sessions`)
	})
}

// TestRestarts: the agent stops and starts again, the server stops and
// starts again on the same database: routes work again within seconds with
// no operator action.
func TestRestarts(t *testing.T) {
	forEachTransport(t, func(t *testing.T, tr transport) {
		e := newEnv(t, tr, testServerOptions())
		echo := tcptest.Echo(t)
		a := e.agent("a1", "echo="+echo)
		e.online("a1")
		addr := e.route("r", "a1", "echo")
		exchange := func() error {
			c, err := net.Dial("tcp", addr)
			if err != nil {
				return err
			}
			defer c.Close()
			return checksumExchange(c, 10_000, 3)
		}
		if err := exchange(); err != nil {
			t.Fatal(err)
		}
		a.Stop()
		e.log.waitFor(t, 5*time.Second, "agent disconnected", "agent=a1")
		e.agentWith(harness.AgentConfig{Name: "a1", Key: a.Key}, "echo="+echo)
		e.online("a1")
		if err := exchange(); err != nil {
			t.Fatalf("after the agent restart: %v", err)
		}

		// The server restarts on its database, at the same address.
		st, agentAddr := e.srv.Store, e.srv.Addr
		ctx, cancel := context.WithTimeout(e.ctx, 5*time.Second)
		e.srv.Server.Close(ctx)
		cancel()
		tlsConf := e.srv.TLSConfig
		srv2, err := harness.StartServerWith(e.ctx, harness.Config{Listen: agentAddr, Options: withLogger(testServerOptions(), e.lg)}, st, tlsConf)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			c, cancel := context.WithTimeout(context.Background(), time.Second)
			srv2.Server.Close(c)
			cancel()
		})
		start := time.Now()
		ctx, cancel = context.WithTimeout(e.ctx, 10*time.Second)
		defer cancel()
		if err := srv2.WaitOnline(ctx, "a1"); err != nil {
			t.Fatal(err)
		}
		if err := exchange(); err != nil {
			t.Fatalf("after the server restart: %v", err)
		}
		el := time.Since(start)
		t.Logf("working again %v after the server restart", el.Round(time.Millisecond))
		if el > 5*time.Second {
			t.Errorf("the agent took %v to come back", el)
		}
		agents, err := srv2.Agents(e.ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(agents) != 1 || agents[0].Transport != tr.name {
			t.Errorf("after the restart the server lists %+v, want a1 over %s", agents, tr.name)
		}
	})
}

// TestResetPropagates: a connection that fails at one end fails at the
// other, through the tunnel, instead of ending cleanly with data missing.
func TestResetPropagates(t *testing.T) {
	forEachTransport(t, func(t *testing.T, tr transport) {
		e := newEnv(t, tr, testServerOptions())
		targetSaw := make(chan error, 1)
		target := tcptest.Serve(t, func(c *net.TCPConn) {
			var first [1]byte
			io.ReadFull(c, first[:])
			switch first[0] {
			case 'R': // send some, then reset
				c.Write(make([]byte, 100_000))
				time.Sleep(50 * time.Millisecond)
				c.SetLinger(0)
			case 'W': // wait for the client to go away
				c.SetReadDeadline(time.Now().Add(10 * time.Second))
				_, err := io.Copy(io.Discard, c)
				targetSaw <- err
			}
		})
		e.agent("a1", "t="+target)
		e.online("a1")
		addr := e.route("r", "a1", "t")

		t.Run("target resets", func(t *testing.T) {
			c, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			c.Write([]byte("R"))
			c.SetReadDeadline(time.Now().Add(5 * time.Second))
			n, err := io.Copy(io.Discard, c)
			if !errors.Is(err, syscall.ECONNRESET) {
				t.Fatalf("client read %d bytes and %v, want a reset", n, err)
			}
		})

		t.Run("client resets", func(t *testing.T) {
			c, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			c.Write([]byte("W"))
			time.Sleep(100 * time.Millisecond) // the session is up
			start := time.Now()
			c.(*net.TCPConn).SetLinger(0)
			c.Close()
			select {
			case err := <-targetSaw:
				var ne net.Error
				if errors.As(err, &ne) && ne.Timeout() {
					t.Fatal("the target never learned the client had gone")
				}
				if !errors.Is(err, syscall.ECONNRESET) {
					t.Errorf("the target read %v, want a reset", err)
				}
				if el := time.Since(start); el > 2*time.Second {
					t.Errorf("the target learned after %v", el)
				}
			case <-time.After(10 * time.Second):
				t.Fatal("target handler did not finish")
			}
			e.log.waitFor(t, 2*time.Second, "session ended", "module=agent", "err=")
		})
	})
}

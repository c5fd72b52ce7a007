package e2e

import (
	"context"
	"net"
	"regexp"
	"slices"
	"testing"
	"time"

	"github.com/tunnelrelay/tunnel/internal/agent"
	"github.com/tunnelrelay/tunnel/internal/harness"
	"github.com/tunnelrelay/tunnel/internal/testutil/tcptest"
)

// TestAgentReloadTargets: new targets replace the old ones on the live
// connection. An added target serves at once, a removed one refuses new
// sessions, and a session in flight to the removed target goes on, all
// without a reconnect.
func TestAgentReloadTargets(t *testing.T) {
	forEachTransport(t, func(t *testing.T, tr transport) {
		e := newEnv(t, tr, testServerOptions())
		echo1, echo2 := tcptest.Echo(t), tcptest.Echo(t)
		a := e.agent("acme", "old="+echo1)
		e.online("acme")
		oldRoute := e.route("old", "acme", "old")
		newRoute := e.route("new", "acme", "new")
		since := *e.agentView("acme").Since

		busy := startBusySession(t, oldRoute)
		ch, err := a.SetTargets([]agent.Target{{Name: "new", Address: echo2}})
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(ch.Added, []string{"new"}) || !slices.Equal(ch.Removed, []string{"old"}) || len(ch.Changed) != 0 {
			t.Fatalf("change %+v, want new added and old removed", ch)
		}
		waitUntil(t, 5*time.Second, func() bool { return slices.Equal(e.agentView("acme").Targets, []string{"new"}) })
		echoWorks(t, newRoute)

		c, err := net.Dial("tcp", oldRoute)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.Write([]byte("hello"))
		expectClosed(t, c, 5*time.Second)
		e.log.waitFor(t, time.Second, "session refused", `agent \"acme\" does not declare target \"old\"`)

		if n := busy.stop(t); n == 0 {
			t.Fatal("the session in flight echoed nothing")
		}
		v := e.agentView("acme")
		if !v.Online || !v.Since.Equal(since) {
			t.Errorf("the agent reconnected for a reload: online %v since %v, was %v", v.Online, v.Since, since)
		}
		// A bad target set changes nothing.
		if _, err := a.SetTargets([]agent.Target{{Name: "x", Address: echo1}, {Name: "x", Address: echo2}}); err == nil {
			t.Error("two targets of one name were accepted")
		}
		echoWorks(t, newRoute)
	})
}

// TestAgentMovesConnection: a new credential moves the agent to a new
// connection; a session in flight on the old one finishes there, however
// long it lasts, and new sessions use the new one.
func TestAgentMovesConnection(t *testing.T) {
	forEachTransport(t, func(t *testing.T, tr transport) {
		e := newEnv(t, tr, testServerOptions())
		cfg := harness.AgentConfig{Name: "acme", Options: testAgentOptions()}
		// A short half-close bound, which must not bound the old
		// connection's life.
		cfg.Options.HalfCloseTimeout = time.Second
		a := e.agentWith(cfg, "echo="+tcptest.Echo(t))
		e.online("acme")
		route := e.route("echo", "acme", "echo")
		since := *e.agentView("acme").Since

		busy := startBusySession(t, route)
		a.SetTLSConfig(a.TLSConfig())
		e.log.waitFor(t, 10*time.Second, "replacing connection", "the agent reconnected")
		waitUntil(t, 5*time.Second, func() bool {
			v := e.agentView("acme")
			return v.Online && v.Since.After(since)
		})
		echoWorks(t, route)
		// Well past any bound derived from the half-close timeout.
		mid := busy.echoed.Load()
		time.Sleep(cfg.Options.HalfCloseTimeout + 6*time.Second)
		if busy.echoed.Load() == mid {
			t.Fatal("the session on the old connection stopped moving")
		}
		if n := busy.stop(t); n == 0 {
			t.Fatal("the session in flight echoed nothing")
		}
	})
}

// TestAgentDrain: a draining agent gets no new sessions, its session in
// flight goes on to the end, and Drain returns once it has. A new session
// meanwhile waits for the agent's successor, up to the open timeout: it
// fails without one, and goes through the successor when it comes.
func TestAgentDrain(t *testing.T) {
	forEachTransport(t, func(t *testing.T, tr transport) {
		opt := testServerOptions()
		e := newEnv(t, tr, opt)
		echo := tcptest.Echo(t)
		a := e.agent("acme", "echo="+echo)
		e.online("acme")
		route := e.route("echo", "acme", "echo")
		busy := startBusySession(t, route)

		left := make(chan int, 1)
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			left <- a.Drain(ctx)
		}()
		e.log.waitFor(t, 5*time.Second, "agent is stopping: no new sessions through this connection")

		// No successor: refused after the open timeout.
		c, err := net.Dial("tcp", route)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.Write([]byte("hello"))
		expectClosed(t, c, opt.OpenTimeout+3*time.Second)
		e.log.waitFor(t, time.Second, "session refused", `agent \"acme\" is shutting down`)

		// A successor (a new agent process with the same key) comes while
		// a client waits: the client's session goes through it.
		waited := make(chan error, 1)
		go func() {
			c, err := net.Dial("tcp", route)
			if err != nil {
				waited <- err
				return
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(15 * time.Second))
			waited <- checksumExchange(c, 100_000, 5)
		}()
		time.Sleep(500 * time.Millisecond)
		e.agentWith(harness.AgentConfig{Name: "acme", Key: a.Key}, "echo="+echo)
		if err := <-waited; err != nil {
			t.Fatalf("the session that waited for the successor: %v", err)
		}
		e.log.waitFor(t, time.Second, "replacing connection", "the agent was stopping")

		select {
		case n := <-left:
			t.Fatalf("Drain returned with a session in flight (%d left)", n)
		case <-time.After(200 * time.Millisecond):
		}
		busy.stop(t)
		select {
		case n := <-left:
			if n != 0 {
				t.Errorf("Drain left %d sessions, want 0", n)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("Drain did not return after the last session ended")
		}
	})
}

// TestServerRestartQuickRetry: a stopping server asks its agents to
// reconnect; an agent whose normal backoff would wait seconds retries
// within restartBackoff (1 s) until the server is back.
func TestServerRestartQuickRetry(t *testing.T) {
	forEachTransport(t, func(t *testing.T, tr transport) {
		e := newEnv(t, tr, testServerOptions())
		cfg := harness.AgentConfig{Name: "acme", Options: testAgentOptions()}
		// Long enough that the normal backoff is unlikely to pick only
		// delays below a second, three times over.
		cfg.Options.BackoffBase, cfg.Options.BackoffMax = 8*time.Second, 30*time.Second
		e.agentWith(cfg, "echo="+tcptest.Echo(t))
		e.online("acme")

		st, agentAddr := e.srv.Store, e.srv.Addr
		mark := len(e.log.String())
		ctx, cancel := context.WithTimeout(e.ctx, 5*time.Second)
		e.srv.Server.Close(ctx)
		cancel()
		// Down for a while: several retries happen meanwhile.
		time.Sleep(2500 * time.Millisecond)
		srv2, err := harness.StartServerWith(e.ctx, harness.Config{Listen: agentAddr, Options: withLogger(testServerOptions(), e.lg)}, st, e.srv.TLSConfig)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			c, cancel := context.WithTimeout(context.Background(), time.Second)
			srv2.Server.Close(c)
			cancel()
		})
		ctx, cancel = context.WithTimeout(e.ctx, 10*time.Second)
		defer cancel()
		if err := srv2.WaitOnline(ctx, "acme"); err != nil {
			t.Fatal(err)
		}
		retries := regexp.MustCompile(`retrying.* retry_in=(\S+)`).FindAllStringSubmatch(e.log.String()[mark:], -1)
		if len(retries) < 2 {
			t.Fatalf("%d retries logged while the server was down, want several:\n%s", len(retries), e.log.String()[mark:])
		}
		for _, r := range retries {
			d, err := time.ParseDuration(r[1])
			if err != nil || d > time.Second {
				t.Errorf("retry in %s after the server asked for a reconnect, want within 1s", r[1])
			}
		}
	})
}

// TestDrainingAgentDisabled: a client waiting for a draining agent's
// successor is told at once when the agent is disabled meanwhile: no
// successor will come.
func TestDrainingAgentDisabled(t *testing.T) {
	opt := testServerOptions()
	opt.OpenTimeout = 10 * time.Second
	e := newEnv(t, transports[0], opt)
	a := e.agent("acme", "echo="+tcptest.Echo(t))
	e.online("acme")
	route := e.route("echo", "acme", "echo")
	busy := startBusySession(t, route)
	go a.Drain(e.ctx)
	e.log.waitFor(t, 5*time.Second, "agent is stopping: no new sessions through this connection")

	c, err := net.Dial("tcp", route)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.Write([]byte("hello"))
	time.Sleep(300 * time.Millisecond) // the client is waiting now
	if err := e.srv.SetAgentDisabled(e.ctx, "acme", true); err != nil {
		t.Fatal(err)
	}
	// Well under the open timeout: the kick's linger, and no wait after.
	expectClosed(t, c, 4*time.Second)
	busy.conn.Close()
}

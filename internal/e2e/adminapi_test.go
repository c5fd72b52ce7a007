package e2e

import (
	"context"
	"io"
	"net"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/tunnelrelay/tunnel/internal/admin"
	"github.com/tunnelrelay/tunnel/internal/testutil/leakcheck"
	"github.com/tunnelrelay/tunnel/internal/testutil/tcptest"
)

// adminClient serves the env's server through the admin HTTP handler and
// returns a client for it, as the CLI would have.
func (e *env) adminClient(token string) *admin.Client {
	e.t.Helper()
	web := httptest.NewServer(admin.Handler(e.srv.Server, token, e.lg))
	e.t.Cleanup(web.Close)
	return admin.NewClient(strings.TrimPrefix(web.URL, "http://"), token)
}

// TestSessionsAndThroughput checks the admin API's live sessions and its
// throughput history against bytes moved through a route: every byte is
// in exactly one sample, in total and for its route, during the session
// and after it ends. The sampler stops with the server.
func TestSessionsAndThroughput(t *testing.T) {
	leakcheck.Check(t)
	opt := testServerOptions()
	opt.ThroughputInterval = 50 * time.Millisecond
	e := newEnv(t, transports[0], opt)
	e.agent("a1", "echo="+tcptest.Echo(t))
	e.online("a1")
	addr := e.route("r1", "a1", "echo")
	e.route("idle", "a1", "echo")
	c := e.adminClient("t0ken")

	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	const n = 100_000
	echo := func(size int) {
		t.Helper()
		go conn.Write(make([]byte, size))
		conn.SetReadDeadline(time.Now().Add(10 * time.Second))
		if _, err := io.ReadFull(conn, make([]byte, size)); err != nil {
			t.Fatal(err)
		}
	}
	echo(n / 2)

	// The server counts a byte once its write to the other side has
	// returned, which can be just after the client has read it.
	var sessions []admin.Session
	waitUntil(t, 5*time.Second, func() bool {
		sessions, err = c.Sessions(e.ctx)
		if err != nil {
			t.Fatal(err)
		}
		return len(sessions) == 1 && sessions[0].BytesUp == n/2 && sessions[0].BytesDown == n/2
	})
	if len(sessions) != 1 || sessions[0].Route != "r1" || sessions[0].Agent != "a1" || sessions[0].Target != "echo" ||
		sessions[0].Client != conn.LocalAddr().String() || sessions[0].BytesUp != n/2 || sessions[0].BytesDown != n/2 {
		t.Fatalf("sessions = %+v, want one of route r1 from %s with %d bytes each way", sessions, conn.LocalAddr(), n/2)
	}
	routes, err := c.Routes(e.ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range routes {
		if r.Name == "r1" && (r.BytesUp != n/2 || r.BytesDown != n/2 || r.Sessions != 1) {
			t.Errorf("route r1 = %+v; want its live session's %d bytes each way", r, n/2)
		}
	}
	// Bytes of a live session are sampled as they move.
	waitThroughput(t, e.ctx, c, n/2)

	echo(n / 2)
	conn.Close()
	waitUntil(t, 10*time.Second, func() bool { s, err := c.Sessions(e.ctx); return err == nil && len(s) == 0 })
	tp := waitThroughput(t, e.ctx, c, n)
	if tp.IntervalSeconds != 0.05 || tp.WindowSeconds != 600 {
		t.Errorf("interval %vs, window %vs; want 0.05 and 600", tp.IntervalSeconds, tp.WindowSeconds)
	}
	var route admin.RouteBytes
	for _, s := range tp.Samples {
		if _, ok := s.Routes["idle"]; ok {
			t.Errorf("sample %v lists route idle, which moved nothing", s.Time)
		}
		route.BytesUp += s.Routes["r1"].BytesUp
		route.BytesDown += s.Routes["r1"].BytesDown
	}
	if route != (admin.RouteBytes{BytesUp: n, BytesDown: n}) {
		t.Errorf("route r1's samples add up to %+v, want %d each way", route, n)
	}
	for i := 1; i < len(tp.Samples); i++ {
		if !tp.Samples[i].Time.After(tp.Samples[i-1].Time) {
			t.Fatalf("samples not oldest first: %v then %v", tp.Samples[i-1].Time, tp.Samples[i].Time)
		}
	}
}

// waitThroughput waits until the throughput samples add up to want bytes
// each way, and fails if they ever add up to more.
func waitThroughput(t *testing.T, ctx context.Context, c *admin.Client, want int64) *admin.Throughput {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		tp, err := c.Throughput(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var up, down int64
		for _, s := range tp.Samples {
			up += s.BytesUp
			down += s.BytesDown
		}
		if up > want || down > want {
			t.Fatalf("samples add up to %d up and %d down, more than the %d moved", up, down, want)
		}
		if up == want && down == want {
			return tp
		}
		if time.Now().After(deadline) {
			t.Fatalf("samples add up to %d up and %d down after 10s, want %d", up, down, want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

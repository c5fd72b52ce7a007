package e2e

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/tunnelrelay/tunnel/internal/admin"
	"github.com/tunnelrelay/tunnel/internal/harness"
	"github.com/tunnelrelay/tunnel/internal/metrics"
	"github.com/tunnelrelay/tunnel/internal/testutil/metricstest"
	"github.com/tunnelrelay/tunnel/internal/testutil/tcptest"
)

const metricsToken = "metrics-test-token"

// serverMetricsURL serves the env's server metrics behind the admin token,
// as tunnel-server run mounts them on the admin listener.
func (e *env) serverMetricsURL() string {
	e.t.Helper()
	mux := http.NewServeMux()
	mux.Handle("GET "+metrics.Path, admin.Protect(metricsToken, metrics.Handler(e.srv.Gatherer(), e.lg)))
	mux.Handle("/", admin.Handler(e.srv, metricsToken, e.lg))
	hs := httptest.NewServer(mux)
	e.t.Cleanup(hs.Close)
	return hs.URL + metrics.Path
}

// agentMetricsURL serves a's metrics as [agent] metrics_listen does.
func agentMetricsURL(t *testing.T, a *harness.Agent) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- metrics.Serve(ctx, ln, a.Gatherer(), slog.New(slog.DiscardHandler)) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("agent metrics endpoint: %v", err)
		}
	})
	return "http://" + ln.Addr().String() + metrics.Path
}

// failedSession connects to a route that cannot be served and waits for
// the server to hang up.
func failedSession(t *testing.T, addr string) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.Copy(io.Discard, c); err != nil {
		t.Fatalf("route %s: %v, want the server to hang up", addr, err)
	}
}

// TestMetrics pushes known bytes and known failures through a server and
// an agent and checks what their /metrics endpoints say, parsed as
// Prometheus parses them, and linted.
func TestMetrics(t *testing.T) {
	forEachTransport(t, func(t *testing.T, tr transport) {
		e := newEnv(t, tr, testServerOptions())
		echo := tcptest.Echo(t)
		refused := freeAddr(t) // nothing listens there
		a := e.agent("acme", "echo="+echo, "down="+refused)
		e.online("acme")
		echoRoute := e.route("echo", "acme", "echo")
		downRoute := e.route("down", "acme", "down")
		ghostRoute := e.route("ghost", "acme", "undeclared")
		srvURL, agentURL := e.serverMetricsURL(), agentMetricsURL(t, a)

		t.Run("token required", func(t *testing.T) {
			for _, token := range []string{"", "wrong"} {
				if code, body := metricstest.Get(t, srvURL, token); code != http.StatusUnauthorized {
					t.Errorf("token %q: status %d, want 401: %s", token, code, body)
				}
			}
		})

		sizes := []int64{100_000, 37_123}
		var total int64
		for i, n := range sizes {
			c, err := net.Dial("tcp", echoRoute)
			if err != nil {
				t.Fatal(err)
			}
			c.SetDeadline(time.Now().Add(20 * time.Second))
			if err := checksumExchange(c, n, byte(i)); err != nil {
				t.Fatal(err)
			}
			c.Close()
			total += n
		}
		failedSession(t, downRoute)
		failedSession(t, ghostRoute)

		// Sessions end, and heartbeats come, a moment after the client
		// sees the last byte: wait for both.
		var srv, ag metricstest.Families
		var srvText, agText string
		waitUntil(t, 10*time.Second, func() bool {
			srv, srvText = metricstest.Scrape(t, srvURL, metricsToken)
			ag, agText = metricstest.Scrape(t, agentURL, "")
			active, _ := srv.Value("tunnel_server_sessions_active", "route=echo")
			agActive, _ := ag.Value("tunnel_agent_sessions_active", "target=echo")
			srvRTT, _ := srv.Count("tunnel_server_heartbeat_rtt_seconds")
			agRTT, _ := ag.Count("tunnel_agent_heartbeat_rtt_seconds")
			return active == 0 && agActive == 0 && srvRTT > 0 && agRTT > 0
		})

		t.Run("server", func(t *testing.T) {
			metricstest.Lint(t, srvText)
			f := srv
			f.Want(t, 1, "tunnel_server_agents_connected")
			f.WantAtLeast(t, 1, "tunnel_server_agent_handshakes_total", "result=ok")
			f.Want(t, 0, "tunnel_server_agent_reconnects_total")
			f.Want(t, float64(len(sizes)), "tunnel_server_sessions_total", "route=echo")
			f.Want(t, float64(total), "tunnel_server_bytes_total", "route=echo", "direction=up")
			f.Want(t, float64(total), "tunnel_server_bytes_total", "route=echo", "direction=down")
			f.Want(t, 0, "tunnel_server_sessions_total", "route=down")
			f.Want(t, 1, "tunnel_server_dial_failures_total", "route=down", "reason=dial_failed")
			f.Want(t, 1, "tunnel_server_dial_failures_total", "route=ghost", "reason=unknown_target")
			if n, err := f.Count("tunnel_server_stream_open_duration_seconds"); err != nil || n < uint64(len(sizes)) {
				t.Errorf("stream open histogram count %d (%v), want at least %d", n, err, len(sizes))
			}
			if f.Type("go_goroutines") == "" || f.Type("process_resident_memory_bytes") == "" {
				t.Error("the Go or process collector is missing")
			}
		})

		t.Run("agent", func(t *testing.T) {
			metricstest.Lint(t, agText)
			f := ag
			f.Want(t, 1, "tunnel_agent_connected", "transport="+tr.name)
			f.Want(t, 0, "tunnel_agent_reconnects_total")
			f.Want(t, float64(len(sizes)), "tunnel_agent_sessions_total", "target=echo")
			f.Want(t, float64(total), "tunnel_agent_bytes_total", "target=echo", "direction=up")
			f.Want(t, float64(total), "tunnel_agent_bytes_total", "target=echo", "direction=down")
			f.Want(t, 1, "tunnel_agent_dial_failures_total", "target=down", "reason=refused")
			f.Want(t, 0, "tunnel_agent_sessions_total", "target=down")
			if n, err := f.Count("tunnel_agent_dial_duration_seconds", "target=echo"); err != nil || n != uint64(len(sizes)) {
				t.Errorf("dial histogram count %d (%v), want %d", n, err, len(sizes))
			}
		})
	})
}

// TestMetricsReconnect: a dropped tunnel counts as a reconnect on both
// sides once the agent is back, and the agent shows as disconnected while
// it is away.
func TestMetricsReconnect(t *testing.T) {
	forEachTransport(t, func(t *testing.T, tr transport) {
		e := newEnv(t, tr, testServerOptions())
		p, cfg := e.proxy(harness.AgentConfig{Name: "acme"})
		a := e.agentWith(cfg)
		e.online("acme")
		srvURL, agentURL := e.serverMetricsURL(), agentMetricsURL(t, a)
		// The server lists the agent online a moment before the agent
		// has its welcome: a drop in between would be no reconnect.
		waitUntil(t, 10*time.Second, func() bool {
			f, _ := metricstest.Scrape(t, agentURL, "")
			v, _ := f.Value("tunnel_agent_connected", "transport="+tr.name)
			return v == 1
		})

		p.SetRefuse(true)
		p.DropAll()
		waitUntil(t, 10*time.Second, func() bool {
			f, _ := metricstest.Scrape(t, agentURL, "")
			v, _ := f.Value("tunnel_agent_connected", "transport="+tr.name)
			return v == 0
		})
		p.SetRefuse(false)
		waitUntil(t, 20*time.Second, func() bool {
			ag, _ := metricstest.Scrape(t, agentURL, "")
			srv, _ := metricstest.Scrape(t, srvURL, metricsToken)
			agentSide, _ := ag.Value("tunnel_agent_reconnects_total")
			serverSide, _ := srv.Value("tunnel_server_agent_reconnects_total")
			connected, _ := ag.Value("tunnel_agent_connected", "transport="+tr.name)
			return agentSide >= 1 && serverSide >= 1 && connected == 1
		})
		srv, _ := metricstest.Scrape(t, srvURL, metricsToken)
		srv.WantAtLeast(t, 2, "tunnel_server_agent_handshakes_total", "result=ok")
	})
}

// TestBinariesMetrics: tunnel-server run serves /metrics on its admin
// listener with the admin token, and tunnel-agent run serves them at
// [agent] metrics_listen, as docs/METRICS.md says.
func TestBinariesMetrics(t *testing.T) {
	echo := tcptest.Echo(t)
	c := newCluster(t, map[string]string{"echo": echo})
	agentMetrics := freeAddr(t)
	setKey(t, c.agentCfg, "metrics_listen", fmt.Sprintf("%q", agentMetrics))
	c.startAgent(t)
	c.waitOnline(t, 10*time.Second)
	c.agent.log.waitFor(t, 5*time.Second, "serving metrics", agentMetrics)
	exchangeWithin(t, c.addRoute(t, "echo", "echo"), 5*time.Second)

	srvCfg, err := os.ReadFile(c.serverCfg)
	if err != nil {
		t.Fatal(err)
	}
	adminAddr := regexp.MustCompile(`(?s)\[admin\].*?\nlisten = "([^"]+)"`).FindSubmatch(srvCfg)
	token, err := os.ReadFile(filepath.Join(c.dir, "srv", "admin.token"))
	if adminAddr == nil || err != nil {
		t.Fatalf("admin address %q, token: %v", adminAddr, err)
	}
	srvURL := "http://" + string(adminAddr[1]) + metrics.Path
	if code, _ := metricstest.Get(t, srvURL, ""); code != http.StatusUnauthorized {
		t.Errorf("server metrics without the token: status %d, want 401", code)
	}
	srv, text := metricstest.Scrape(t, srvURL, strings.TrimSpace(string(token)))
	metricstest.Lint(t, text)
	srv.Want(t, 1, "tunnel_server_agents_connected")
	srv.WantAtLeast(t, 1, "tunnel_server_sessions_total", "route=echo")
	srv.WantAtLeast(t, 50_000, "tunnel_server_bytes_total", "route=echo", "direction=up")
	srv.Want(t, 1, "tunnel_server_build_info", "version=dev")

	ag, text := metricstest.Scrape(t, "http://"+agentMetrics+metrics.Path, "")
	metricstest.Lint(t, text)
	tlsUp, _ := ag.Value("tunnel_agent_connected", "transport=tls")
	quicUp, _ := ag.Value("tunnel_agent_connected", "transport=quic")
	if tlsUp+quicUp != 1 {
		t.Errorf("tunnel_agent_connected: tls %v, quic %v; want one of them 1", tlsUp, quicUp)
	}
	ag.WantAtLeast(t, 1, "tunnel_agent_sessions_total", "target=echo")
	ag.WantAtLeast(t, 50_000, "tunnel_agent_bytes_total", "target=echo", "direction=down")
}

package metrics

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/expfmt"

	"github.com/tunnelrelay/tunnel/internal/proto"
	"github.com/tunnelrelay/tunnel/internal/testutil/metricstest"
	"github.com/tunnelrelay/tunnel/pkg/dbproxy"
)

// gather returns reg's metrics in the text format, parsed and as text.
func gather(t *testing.T, reg prometheus.Gatherer) (metricstest.Families, string) {
	t.Helper()
	fams, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	enc := expfmt.NewEncoder(&b, expfmt.NewFormat(expfmt.TypeTextPlain))
	for _, f := range fams {
		if err := enc.Encode(f); err != nil {
			t.Fatal(err)
		}
	}
	return metricstest.Parse(t, b.String()), b.String()
}

func TestServerMetrics(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	stats := ServerStats{AgentsConnected: 2, Routes: []RouteStats{
		{Name: "pg", Active: 1, Sessions: 3, BytesUp: 100, BytesDown: 2000},
		{Name: "idle"},
	}}
	reg := NewRegistry()
	m := NewServer(reg, "1.2.3", func() ServerStats { mu.Lock(); defer mu.Unlock(); return stats })

	m.AgentConnected("a")
	m.AgentConnected("b")
	m.AgentConnected("a") // again: a reconnect
	m.Handshake(HandshakeProbe)
	m.Handshake(string(proto.RefuseKeyMismatch))
	m.Handshake(string(proto.RefuseKeyMismatch))
	m.DialFailed("pg", DialReason(dbproxy.ErrDialFailed))
	m.DialFailed("pg", ReasonTimeout)
	m.DialFailed("", DialReason(dbproxy.ErrUnknownRoute))
	m.StreamOpened(3 * time.Millisecond)
	m.HeartbeatRTT(time.Millisecond)
	m.HeartbeatRTT(2 * time.Millisecond)

	f, text := gather(t, reg)
	metricstest.Lint(t, text)
	f.Want(t, 2, "tunnel_server_agents_connected")
	f.Want(t, 3, "tunnel_server_agent_handshakes_total", "result=ok")
	f.Want(t, 1, "tunnel_server_agent_handshakes_total", "result=probe")
	f.Want(t, 2, "tunnel_server_agent_handshakes_total", "result=key_mismatch")
	// Every result is there from the start, so rate() works from the
	// first refusal on.
	f.Want(t, 0, "tunnel_server_agent_handshakes_total", "result=failed")
	f.Want(t, 0, "tunnel_server_agent_handshakes_total", "result=agent_disabled")
	f.Want(t, 1, "tunnel_server_agent_reconnects_total")
	f.Want(t, 1, "tunnel_server_dial_failures_total", "route=pg", "reason=dial_failed")
	f.Want(t, 1, "tunnel_server_dial_failures_total", "route=pg", "reason=timeout")
	f.Want(t, 1, "tunnel_server_dial_failures_total", "route=", "reason=unknown_route")
	f.Want(t, 1, "tunnel_server_sessions_active", "route=pg")
	f.Want(t, 3, "tunnel_server_sessions_total", "route=pg")
	f.Want(t, 100, "tunnel_server_bytes_total", "route=pg", "direction=up")
	f.Want(t, 2000, "tunnel_server_bytes_total", "route=pg", "direction=down")
	f.Want(t, 0, "tunnel_server_sessions_total", "route=idle")
	f.Want(t, 1, "tunnel_server_build_info", "version=1.2.3")
	f.WantCount(t, 1, "tunnel_server_stream_open_duration_seconds")
	f.WantCount(t, 2, "tunnel_server_heartbeat_rtt_seconds")
	for _, name := range []string{"go_goroutines", "process_cpu_seconds_total"} {
		if f.Type(name) == "" {
			t.Errorf("no %s: the Go and process collectors are missing", name)
		}
	}

	// A removed route's series go away with it.
	mu.Lock()
	stats.Routes = stats.Routes[1:]
	mu.Unlock()
	f, _ = gather(t, reg)
	if _, err := f.Value("tunnel_server_sessions_total", "route=pg"); err == nil {
		t.Error("route pg still has series after its removal")
	}
}

// TestRegistriesAreSeparate: two engines in one process each have their
// own metrics; nothing is global.
func TestRegistriesAreSeparate(t *testing.T) {
	t.Parallel()
	r1, r2 := NewRegistry(), NewRegistry()
	s1 := NewServer(r1, "", func() ServerStats { return ServerStats{AgentsConnected: 1} })
	NewServer(r2, "", func() ServerStats { return ServerStats{AgentsConnected: 2} })
	a1 := NewAgent(r1, "", nil)
	NewAgent(r2, "", nil)
	s1.Handshake(HandshakeFailed)
	a1.Connected("quic")
	f1, _ := gather(t, r1)
	f2, _ := gather(t, r2)
	f1.Want(t, 1, "tunnel_server_agents_connected")
	f2.Want(t, 2, "tunnel_server_agents_connected")
	f1.Want(t, 1, "tunnel_server_agent_handshakes_total", "result=failed")
	f2.Want(t, 0, "tunnel_server_agent_handshakes_total", "result=failed")
	f1.Want(t, 1, "tunnel_agent_connected", "transport=quic")
	f2.Want(t, 0, "tunnel_agent_connected", "transport=quic")
	f1.Want(t, 1, "tunnel_server_build_info", "version=unknown")
}

func TestAgentMetrics(t *testing.T) {
	t.Parallel()
	reg := NewRegistry()
	m := NewAgent(reg, "1.2.3", []string{"pg", "idle"})

	f, text := gather(t, reg)
	metricstest.Lint(t, text)
	f.Want(t, 0, "tunnel_agent_connected", "transport=tls")
	f.Want(t, 0, "tunnel_agent_connected", "transport=quic")
	f.Want(t, 0, "tunnel_agent_sessions_total", "target=idle")

	m.Connected("tls")
	f, _ = gather(t, reg)
	f.Want(t, 1, "tunnel_agent_connected", "transport=tls")
	f.Want(t, 0, "tunnel_agent_reconnects_total")
	m.Disconnected()
	m.Connected("quic")
	f, _ = gather(t, reg)
	f.Want(t, 0, "tunnel_agent_connected", "transport=tls")
	f.Want(t, 1, "tunnel_agent_connected", "transport=quic")
	f.Want(t, 1, "tunnel_agent_reconnects_total")
	m.Disconnected()
	f, _ = gather(t, reg)
	f.Want(t, 0, "tunnel_agent_connected", "transport=quic")

	// Bytes of a live session count at once, and exactly once after it
	// ends.
	s1 := m.SessionStarted("pg")
	s2 := m.SessionStarted("pg")
	s1.Counters.AToB.Add(10)
	s1.Counters.BToA.Add(1000)
	s2.Counters.AToB.Add(5)
	f, _ = gather(t, reg)
	f.Want(t, 2, "tunnel_agent_sessions_active", "target=pg")
	f.Want(t, 2, "tunnel_agent_sessions_total", "target=pg")
	f.Want(t, 15, "tunnel_agent_bytes_total", "target=pg", "direction=up")
	f.Want(t, 1000, "tunnel_agent_bytes_total", "target=pg", "direction=down")
	s1.End()
	s1.End()
	s2.Counters.AToB.Add(5)
	f, _ = gather(t, reg)
	f.Want(t, 1, "tunnel_agent_sessions_active", "target=pg")
	f.Want(t, 2, "tunnel_agent_sessions_total", "target=pg")
	f.Want(t, 20, "tunnel_agent_bytes_total", "target=pg", "direction=up")
	f.Want(t, 1000, "tunnel_agent_bytes_total", "target=pg", "direction=down")
	s2.End()
	f, _ = gather(t, reg)
	f.Want(t, 0, "tunnel_agent_sessions_active", "target=pg")
	f.Want(t, 20, "tunnel_agent_bytes_total", "target=pg", "direction=up")

	m.DialFailed("pg", ReasonRefused)
	m.DialFailed("", ReasonUnknownTarget)
	m.Dialed("pg", 2*time.Millisecond)
	m.HeartbeatRTT(time.Millisecond)
	f, text = gather(t, reg)
	metricstest.Lint(t, text)
	f.Want(t, 1, "tunnel_agent_dial_failures_total", "target=pg", "reason=refused")
	f.Want(t, 1, "tunnel_agent_dial_failures_total", "target=", "reason=unknown_target")
	f.WantCount(t, 1, "tunnel_agent_dial_duration_seconds", "target=pg")
	f.WantCount(t, 1, "tunnel_agent_heartbeat_rtt_seconds")
	f.Want(t, 1, "tunnel_agent_build_info", "version=1.2.3")
}

// TestAgentBytesMonotonic: scrapes racing with sessions that move bytes
// and end never see a byte counter go down.
func TestAgentBytesMonotonic(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewRegistry()
	m := NewAgent(reg, "", []string{"pg"})
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for range 200 {
				s := m.SessionStarted("pg")
				s.Counters.AToB.Add(3)
				s.Counters.BToA.Add(7)
				s.End()
			}
		})
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	var last float64
	for scraping := true; scraping; {
		select {
		case <-done:
			scraping = false
		default:
		}
		f, _ := gather(t, reg)
		v, err := f.Value("tunnel_agent_bytes_total", "target=pg", "direction=down")
		if err != nil {
			t.Fatal(err)
		}
		if v < last {
			t.Fatalf("bytes went down from %v to %v", last, v)
		}
		last = v
	}
	f, _ := gather(t, reg)
	f.Want(t, 4*200*7, "tunnel_agent_bytes_total", "target=pg", "direction=down")
	f.Want(t, 4*200, "tunnel_agent_sessions_total", "target=pg")
}

func TestDialReason(t *testing.T) {
	t.Parallel()
	for code, want := range map[dbproxy.ErrorCode]string{
		dbproxy.ErrInternal:      "internal",
		dbproxy.ErrUnknownRoute:  "unknown_route",
		dbproxy.ErrAgentOffline:  "agent_offline",
		dbproxy.ErrUnknownTarget: "unknown_target",
		dbproxy.ErrDialFailed:    "dial_failed",
		dbproxy.ErrLimitReached:  "limit_reached",
		dbproxy.ErrForbidden:     "forbidden",
		dbproxy.ErrorCode(99):    "internal",
	} {
		if got := DialReason(code); got != want {
			t.Errorf("DialReason(%v) = %q, want %q", code, got, want)
		}
	}
}

func TestServe(t *testing.T) {
	t.Parallel()
	reg := NewRegistry()
	NewAgent(reg, "v", []string{"pg"})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	served := make(chan error, 1)
	go func() { served <- Serve(ctx, ln, reg, slog.New(slog.DiscardHandler)) }()
	base := "http://" + ln.Addr().String()

	f, text := metricstest.Scrape(t, base+Path, "")
	metricstest.Lint(t, text)
	f.Want(t, 0, "tunnel_agent_sessions_total", "target=pg")
	if code, _ := metricstest.Get(t, base+"/", ""); code != http.StatusNotFound {
		t.Errorf("GET /: status %d, want 404", code)
	}

	cancel()
	select {
	case err := <-served:
		if err != nil {
			t.Fatalf("Serve: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Serve did not return after its context ended")
	}
	if c, err := net.DialTimeout("tcp", ln.Addr().String(), time.Second); err == nil {
		c.Close()
		t.Error("the listener is still open after Serve returned")
	}
}

func TestServeListenerError(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln.Close()
	err = Serve(t.Context(), ln, NewRegistry(), nil)
	if err == nil || errors.Is(err, http.ErrServerClosed) {
		t.Fatalf("Serve on a closed listener: %v, want its error", err)
	}
}

// TestHandlerKeepsGoingOnError: a failing collector is logged and the
// other metrics are still served.
func TestHandlerKeepsGoingOnError(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewRegistry()
	NewAgent(reg, "", []string{"pg"})
	reg.MustRegister(failing{prometheus.NewDesc("broken", "always fails", nil, nil)})
	var logs bytes.Buffer
	h := Handler(reg, slog.New(slog.NewTextHandler(&logs, nil)))
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", Path, nil))
	if rec.Code != http.StatusOK || !strings.Contains(rec.Body.String(), "tunnel_agent_sessions_total") {
		t.Fatalf("status %d:\n%s", rec.Code, rec.Body.String())
	}
	if !strings.Contains(logs.String(), "collector down") {
		t.Errorf("the failure is not logged: %q", logs.String())
	}
}

type failing struct{ d *prometheus.Desc }

func (f failing) Describe(ch chan<- *prometheus.Desc) { ch <- f.d }
func (f failing) Collect(ch chan<- prometheus.Metric) {
	ch <- prometheus.NewInvalidMetric(f.d, errors.New("collector down"))
}

// TestDocListsEveryMetric keeps docs/METRICS.md and the code in step:
// every metric exported is documented, and every metric documented exists.
func TestDocListsEveryMetric(t *testing.T) {
	t.Parallel()
	doc, err := os.ReadFile(filepath.Join("..", "..", "docs", "METRICS.md"))
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	s := NewServer(reg, "", func() ServerStats { return ServerStats{Routes: []RouteStats{{Name: "r"}}} })
	a := NewAgent(reg, "", []string{"t"})
	// Vectors show only once a series exists.
	s.DialFailed("r", ReasonTimeout)
	a.DialFailed("t", ReasonRefused)
	a.Dialed("t", time.Millisecond)
	fams, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	exported := map[string]bool{}
	for _, f := range fams {
		exported[f.GetName()] = true
		if !bytes.Contains(doc, []byte("| `"+f.GetName()+"` |")) {
			t.Errorf("docs/METRICS.md has no table row for %s", f.GetName())
		}
	}
	for _, m := range regexp.MustCompile("\\| `(tunnel_[a-z_]+)` \\|").FindAllSubmatch(doc, -1) {
		if !exported[string(m[1])] {
			t.Errorf("docs/METRICS.md documents %s, which does not exist", m[1])
		}
	}
}

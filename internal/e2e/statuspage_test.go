package e2e

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/tunnelrelay/tunnel/internal/admin"
	"github.com/tunnelrelay/tunnel/internal/harness"
	"github.com/tunnelrelay/tunnel/internal/testutil/fixture"
	"github.com/tunnelrelay/tunnel/internal/testutil/tcptest"
	"github.com/tunnelrelay/tunnel/pkg/auth"
)

// envRequireChromium turns a missing Chromium into a failure (CI sets it).
const envRequireChromium = "TUNNEL_REQUIRE_CHROMIUM"

// envArtifactDir is where tests save files for people to look at.
const envArtifactDir = "TUNNEL_ARTIFACT_DIR"

// requireChromium returns the path of a Chromium or Chrome binary, or skips
// the test, or fails it when TUNNEL_REQUIRE_CHROMIUM=1.
func requireChromium(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "headless-shell"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	fixture.Unavailable(t, "status page", envRequireChromium, "no chromium on PATH (Debian: apt-get install chromium)")
	return ""
}

// saveArtifact writes data as name into $TUNNEL_ARTIFACT_DIR, or
// os.TempDir()/tunnel-artifacts, and logs the path.
func saveArtifact(t *testing.T, name string, data []byte) {
	t.Helper()
	dir := os.Getenv(envArtifactDir)
	if dir == "" {
		dir = filepath.Join(os.TempDir(), "tunnel-artifacts")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	path, err := filepath.Abs(filepath.Join(dir, name))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("artifact: %s", path)
}

// browser starts a headless Chromium for the test and returns a tab.
func browser(t *testing.T, ctx context.Context, path string) context.Context {
	t.Helper()
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(path),
		chromedp.WindowSize(1280, 860),
		// Containers often have a small /dev/shm.
		chromedp.Flag("disable-dev-shm-usage", true),
	)
	if os.Geteuid() == 0 {
		// Chromium refuses to run as root with its sandbox.
		opts = append(opts, chromedp.NoSandbox)
	}
	actx, cancelAlloc := chromedp.NewExecAllocator(ctx, opts...)
	tab, cancelTab := chromedp.NewContext(actx, chromedp.WithLogf(t.Logf))
	t.Cleanup(func() {
		cancelTab()
		cancelAlloc()
	})
	return tab
}

// pageState is what the status page shows, read from its DOM.
type pageState struct {
	Agents   [][]string `json:"agents"`
	Routes   [][]string `json:"routes"`
	Sessions [][]string `json:"sessions"`
	Samples  int        `json:"samples"`
	Conn     string     `json:"conn"`
	Banner   string     `json:"banner"` // empty when hidden
	Login    bool       `json:"login"`  // the sign-in form shows
	Error    string     `json:"error"`  // the sign-in form's error, when shown
}

const readPage = `(() => {
  const rows = (id) => Array.from(document.querySelectorAll('#' + id + ' tbody tr'),
    (tr) => Array.from(tr.cells, (td) => td.textContent.trim()));
  const shown = (id) => document.getElementById(id).checkVisibility();
  return {
    agents: rows('agents'), routes: rows('routes'), sessions: rows('sessions'),
    samples: Number(document.getElementById('chart').getAttribute('data-samples') || 0),
    conn: document.getElementById('conn').textContent,
    banner: shown('banner') ? document.getElementById('banner').textContent : '',
    login: shown('login'),
    error: shown('login-error') ? document.getElementById('login-error').textContent : '',
  };
})()`

// waitPage reads the page until ok accepts it, for at most 30 s.
func waitPage(t *testing.T, tab context.Context, what string, ok func(pageState) bool) pageState {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		st, err := chromedp.Run(tab, chromedp.Evaluate[pageState](readPage))
		if err != nil {
			t.Fatalf("read the page: %v", err)
		}
		if ok(st) {
			return st
		}
		if time.Now().After(deadline) {
			t.Fatalf("the page did not show %s within 30s; it shows %+v", what, st)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func hasRow(rows [][]string, cells ...string) bool {
	for _, r := range rows {
		if len(r) < len(cells) {
			continue
		}
		match := true
		for i, c := range cells {
			if c != "*" && r[i] != c {
				match = false
				break
			}
		}
		if match {
			return true
		}
	}
	return false
}

// TestStatusPage loads the admin status page in headless Chromium, signs
// in through its form, checks that the connected agent and a live session
// appear, saves a screenshot, then checks that the page says so when the
// server goes away.
func TestStatusPage(t *testing.T) {
	chromium := requireChromium(t)
	opt := testServerOptions()
	opt.Version = "1.4.0"
	opt.ThroughputInterval = 250 * time.Millisecond
	e := newEnv(t, transports[0], opt)
	agentOpt := testAgentOptions()
	agentOpt.Version = "2.0.1"
	e.agentWith(harness.AgentConfig{Name: "acme-bastion", Options: agentOpt}, "warehouse="+tcptest.Echo(t), "crm="+tcptest.Echo(t))
	e.online("acme-bastion")
	// Registered, never connected: shown offline.
	key, err := auth.NewAgentKey()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.srv.AddAgent(e.ctx, admin.AddAgentRequest{Name: "globex-dc", Fingerprint: key.Fingerprint()}); err != nil {
		t.Fatal(err)
	}
	addr := e.route("acme-dw", "acme-bastion", "warehouse")
	e.route("acme-crm", "acme-bastion", "crm")

	// One live session, moving a little so the chart has a shape.
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	client := conn.LocalAddr().String()
	ctx, stopTraffic := context.WithCancel(e.ctx)
	trafficDone := make(chan error, 1)
	go func() { trafficDone <- traffic(ctx, conn) }()
	t.Cleanup(func() {
		stopTraffic()
		if err := <-trafficDone; err != nil {
			t.Errorf("traffic through the session: %v", err)
		}
	})

	const token = "page-test-admin-token"
	web := httptest.NewServer(admin.Handler(e.srv.Server, token, e.lg))
	t.Cleanup(web.Close)

	bctx, cancel := context.WithTimeout(e.ctx, 90*time.Second)
	defer cancel()
	tab := browser(t, bctx, chromium)
	if err := chromedp.Do(tab,
		chromedp.Navigate(web.URL),
		chromedp.WaitVisible(chromedp.CSS("#token")),
		chromedp.SendKeys(chromedp.CSS("#token"), "not-the-token"),
		chromedp.Click(chromedp.CSS("#login-form button[type=submit]")),
	); err != nil {
		t.Fatal(err)
	}
	waitPage(t, tab, "the sign-in error", func(p pageState) bool { return p.Login && strings.Contains(p.Error, "wrong admin token") })
	if err := chromedp.Do(tab,
		chromedp.Clear(chromedp.CSS("#token")),
		chromedp.SendKeys(chromedp.CSS("#token"), token),
		chromedp.Click(chromedp.CSS("#login-form button[type=submit]")),
	); err != nil {
		t.Fatal(err)
	}

	// The RTT comes with the first heartbeat.
	rttShown := func(p pageState) bool {
		for _, r := range p.Agents {
			if len(r) > 4 && r[0] == "acme-bastion" && strings.HasSuffix(r[4], " ms") {
				return true
			}
		}
		return false
	}
	st := waitPage(t, tab, "the online agent, the live session and a chart", func(p pageState) bool {
		return hasRow(p.Agents, "acme-bastion", "online") && hasRow(p.Sessions, "*", "acme-dw", "*", client) && p.Samples >= 12 &&
			rttShown(p)
	})
	if !hasRow(st.Agents, "acme-bastion", "online", "*", "tls", "*", "2.0.1", "1") {
		t.Errorf("agent row: want acme-bastion online over tls, version 2.0.1, with 1 session; agents: %q", st.Agents)
	}
	if !hasRow(st.Agents, "globex-dc", "offline") {
		t.Errorf("agent globex-dc is not shown offline; agents: %q", st.Agents)
	}
	if !hasRow(st.Sessions, "*", "acme-dw", "acme-bastion → warehouse", client) {
		t.Errorf("session row: want route acme-dw to acme-bastion → warehouse from %s; sessions: %q", client, st.Sessions)
	}
	if !hasRow(st.Routes, "acme-dw", "acme-bastion → warehouse", "*", "tcp", "listening", "1") {
		t.Errorf("route row: want acme-dw listening with 1 session; routes: %q", st.Routes)
	}
	if st.Login || st.Banner != "" || st.Conn != "live" {
		t.Errorf("login form %v, banner %q, connection %q; want the dashboard, live", st.Login, st.Banner, st.Conn)
	}
	shot, err := chromedp.Run(tab, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatal(err)
	}
	saveArtifact(t, "status-page.png", shot)

	// The server goes away: the page says so and keeps the last data.
	web.CloseClientConnections()
	web.Close()
	st = waitPage(t, tab, "that the server is unreachable", func(p pageState) bool {
		return strings.Contains(p.Banner, "Cannot reach tunnel-server") && p.Conn == "unreachable"
	})
	if !hasRow(st.Agents, "acme-bastion", "online") {
		t.Errorf("the last data is gone; agents: %q", st.Agents)
	}
	shot, err = chromedp.Run(tab, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatal(err)
	}
	saveArtifact(t, "status-page-unreachable.png", shot)
}

// traffic echoes bursts of varying size through conn until ctx is done.
func traffic(ctx context.Context, conn net.Conn) error {
	buf := make([]byte, 64<<10)
	for i := 0; ctx.Err() == nil && i < 10_000; i++ {
		n := (8 + 7*(i%9)) << 10
		conn.SetDeadline(time.Now().Add(10 * time.Second))
		if _, err := conn.Write(buf[:n]); err != nil {
			return fmt.Errorf("write: %w", err)
		}
		if _, err := io.ReadFull(conn, buf[:n]); err != nil {
			return fmt.Errorf("read: %w", err)
		}
		select {
		case <-ctx.Done():
		case <-time.After(50 * time.Millisecond):
		}
	}
	if errors.Is(ctx.Err(), context.Canceled) {
		return nil
	}
	return ctx.Err()
}

package e2e

import (
	"net"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tunnelrelay/tunnel/internal/admin"
	"github.com/tunnelrelay/tunnel/internal/agent"
	"github.com/tunnelrelay/tunnel/internal/config"
	"github.com/tunnelrelay/tunnel/internal/harness"
	"github.com/tunnelrelay/tunnel/internal/testutil/connectproxy"
	"github.com/tunnelrelay/tunnel/internal/testutil/tcptest"
)

// These tests are about an agent whose only way to the server is an HTTP
// CONNECT proxy. The server's address is harness.ServerHost:PORT, a name
// no DNS knows and the test proxy maps to 127.0.0.1: a connection that
// skips the proxy fails.

const (
	proxyUser     = "acme"
	proxyPassword = "pr0xy-pw-s3cret"
)

// newConnectProxy starts a test proxy that requires proxyUser's Basic
// credentials and knows harness.ServerHost.
func newConnectProxy(t *testing.T) *connectproxy.Proxy {
	t.Helper()
	return connectproxy.New(t, connectproxy.Options{User: proxyUser, Password: proxyPassword,
		Hosts: map[string]string{harness.ServerHost: "127.0.0.1"}})
}

// proxyEnv is an environment whose HTTPS_PROXY is p (the lower-case
// variables, which would win, cleared), plus more.
func proxyEnv(p *connectproxy.Proxy, more ...string) []string {
	return append([]string{"HTTPS_PROXY=" + p.URL().String(), "https_proxy=", "NO_PROXY=", "no_proxy="}, more...)
}

// envLookup turns NAME=value pairs into a lookup, as config takes.
func envLookup(env []string) func(string) string {
	return func(name string) string {
		v := ""
		for _, kv := range env {
			if k, val, _ := strings.Cut(kv, "="); k == name {
				v = val // the last one wins, as in exec
			}
		}
		return v
	}
}

// TestAgentThroughProxy: an agent reaches the server only through the
// proxy, set by [server] proxy or by HTTPS_PROXY; with transport auto it is
// on TLS and the server's status says why; sessions through a route work.
// With NO_PROXY naming the server the agent dials it directly, and fails.
func TestAgentThroughProxy(t *testing.T) {
	e := newEnv(t, auto, testServerOptions())
	_, port, err := net.SplitHostPort(e.srv.Addr)
	if err != nil {
		t.Fatal(err)
	}
	server := net.JoinHostPort(harness.ServerHost, port)
	px := newConnectProxy(t)
	echo := tcptest.Echo(t)

	// start starts agent name at server with the proxy that [server] proxy
	// (key) and env decide, as the agent's config would.
	start := func(t *testing.T, name, transport, key string, env []string) (*harness.Agent, config.Proxy) {
		t.Helper()
		s := config.AgentServer{Address: server, Transport: transport, Proxy: config.ProxyURL(key)}
		p, err := s.ResolveProxy(envLookup(env))
		if err != nil {
			t.Fatal(err)
		}
		opt := testAgentOptions()
		opt.Proxy = p.URL
		a := e.agentWith(harness.AgentConfig{Name: name, ServerAddress: server, Transport: transport, Options: opt}, "echo="+echo)
		return a, p
	}
	// online waits until agent name is online and returns the server's view.
	online := func(t *testing.T, name string) admin.Agent {
		t.Helper()
		e.online(name)
		return e.agentView(name)
	}

	t.Run("NO_PROXY names the server", func(t *testing.T) {
		a, p := start(t, "direct", agent.TransportTLS, "", proxyEnv(px, "NO_PROXY=localhost,"+harness.ServerHost))
		if p.URL != nil {
			t.Fatalf("proxy %v despite NO_PROXY", p)
		}
		e.log.waitFor(t, 10*time.Second, "cannot connect to server; retrying", "lookup "+harness.ServerHost)
		a.Stop()
		if v := e.agentView("direct"); v.Online {
			t.Fatal("online without the proxy")
		}
		if got := px.Targets(); len(got) != 0 {
			t.Fatalf("the proxy was asked for %q", got)
		}
	})

	t.Run("config key, transport auto", func(t *testing.T) {
		key := px.URL().String()
		_, p := start(t, "viakey", agent.TransportAuto, key, nil)
		if p.From != config.ProxyFromKey {
			t.Fatalf("proxy %v from %q", p, p.From)
		}
		v := online(t, "viakey")
		if v.Transport != agent.TransportTLS || !strings.Contains(v.Fallback, "HTTP proxy") {
			t.Errorf("server's view: transport %q, fallback %q; want tls because of the proxy", v.Transport, v.Fallback)
		}
		echoWorks(t, e.route("viakey", "viakey", "echo"))
		e.log.waitFor(t, time.Second, "transport auto uses TLS only: QUIC cannot pass an HTTP proxy")
		e.log.waitFor(t, time.Second, "connected to server", "transport=tls", "proxy=http://acme:xxxxx@")
	})

	t.Run("HTTPS_PROXY", func(t *testing.T) {
		before := len(px.Targets())
		_, p := start(t, "viaenv", agent.TransportTLS, "", proxyEnv(px, "NO_PROXY=localhost,.internal"))
		if p.From != "HTTPS_PROXY" {
			t.Fatalf("proxy %v from %q", p, p.From)
		}
		if v := online(t, "viaenv"); v.Fallback != "" {
			t.Errorf("transport tls with a fallback reason %q", v.Fallback)
		}
		echoWorks(t, e.route("viaenv", "viaenv", "echo"))
		if got := px.Targets()[before:]; len(got) == 0 {
			t.Error("the agent did not go through the proxy")
		}
	})

	for _, target := range px.Targets() {
		if target != server {
			t.Errorf("the proxy was asked for %q, want only %q", target, server)
		}
	}
	if strings.Contains(e.log.String(), proxyPassword) {
		t.Error("the log shows the proxy's password")
	}
}

// TestBinariesThroughProxy: the built tunnel-agent, with HTTPS_PROXY in its
// environment, checks and serves through the proxy; without it, or with
// NO_PROXY naming the server, it cannot reach the server.
func TestBinariesThroughProxy(t *testing.T) {
	echo := tcptest.Echo(t)
	c := &cluster{top: t, dir: t.TempDir()}
	srvDir := filepath.Join(c.dir, "srv")
	c.serverCfg = filepath.Join(srvDir, "tunnel-server.toml")
	c.agentCfg = filepath.Join(c.dir, "tunnel-agent.toml")
	if r := run(t, "tunnel-server", "init", "--dir", srvDir, "--hostname", harness.ServerHost,
		"--listen", freeAddr(t), "--admin-listen", freeAddr(t)); r.code != 0 {
		t.Fatalf("init: %d %s", r.code, r.stderr)
	}
	c.startServer(t)
	if r := c.srv(t, "agent", "add", "acme", "--out", c.agentCfg); r.code != 0 {
		t.Fatalf("agent add: %d %s", r.code, r.stderr)
	}
	appendTarget(t, c.agentCfg, "echo", echo)
	server := agentServerAddr(t, c.agentCfg)
	if !strings.HasPrefix(server, harness.ServerHost+":") {
		t.Fatalf("the agent config names the server %q", server)
	}
	px := newConnectProxy(t)
	env := proxyEnv(px)
	serverLine := regexp.MustCompile(`(?m)^server\s+(ok|FAILED)\s+(.*)$`)

	t.Run("without the proxy the server is out of reach", func(t *testing.T) {
		for name, env := range map[string][]string{
			"no HTTPS_PROXY":            {"HTTPS_PROXY=", "https_proxy="},
			"NO_PROXY names the server": proxyEnv(px, "NO_PROXY="+harness.ServerHost),
		} {
			r := runEnv(t, env, "tunnel-agent", "check", "--config", c.agentCfg)
			m := serverLine.FindStringSubmatch(r.stdout)
			if r.code == 0 || m == nil || m[1] != "FAILED" || !strings.Contains(m[2], "lookup "+harness.ServerHost) {
				t.Errorf("%s: check exit %d, want the server's name not to resolve:\n%s%s", name, r.code, r.stdout, r.stderr)
			}
			if strings.Contains(r.stdout, "proxy") {
				t.Errorf("%s: check mentions a proxy:\n%s", name, r.stdout)
			}
		}
		if got := px.Targets(); len(got) != 0 {
			t.Fatalf("the proxy was asked for %q", got)
		}
	})

	r := runEnv(t, env, "tunnel-agent", "check", "--config", c.agentCfg)
	redacted := regexp.QuoteMeta("http://" + proxyUser + ":xxxxx@" + px.Addr())
	m := serverLine.FindStringSubmatch(r.stdout)
	if r.code != 0 || m == nil || m[1] != "ok" ||
		!regexp.MustCompile(`^`+regexp.QuoteMeta(server)+` through HTTP proxy `+redacted+` accepted agent "acme" over tls`).MatchString(m[2]) ||
		!regexp.MustCompile(`(?m)^proxy\s+used\s+the server is reached through HTTP proxy `+redacted+` \(from HTTPS_PROXY\)$`).MatchString(r.stdout) {
		t.Fatalf("check through the proxy: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}

	c.agent = startEnv(t, env, "tunnel-agent", "run", "--config", c.agentCfg, "--log", "debug")
	c.waitOnline(t, 10*time.Second)
	if tr := c.agentTransport(t); tr != "tls*" {
		t.Errorf("agent list shows transport %q, want tls* (auto, on TLS because of the proxy)", tr)
	}
	if st := c.srv(t, "status"); !strings.Contains(st.stdout, "* acme is on tls instead of QUIC: an HTTP proxy is in the way") {
		t.Errorf("status does not say why the agent is on TLS:\n%s", st.stdout)
	}
	addr := c.addRoute(t, "echo", "echo")
	exchangeWithin(t, addr, 5*time.Second)
	c.agent.log.waitFor(t, time.Second, "reaching the server through an HTTP proxy", "proxy=http://acme:xxxxx@")
	c.agent.log.waitFor(t, time.Second, "transport auto uses TLS only")

	targets := px.Targets()
	if len(targets) < 2 || slices.ContainsFunc(targets, func(s string) bool { return s != server }) {
		t.Errorf("the proxy was asked for %q; want %s, by check and by run", targets, server)
	}
	for name, out := range map[string]string{"check": r.stdout + r.stderr, "agent": c.agent.log.String()} {
		if strings.Contains(out, proxyPassword) {
			t.Errorf("the %s output shows the proxy's password", name)
		}
	}
}

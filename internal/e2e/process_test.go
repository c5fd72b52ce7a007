package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/tunnelrelay/tunnel/internal/testutil/tcptest"
)

// These tests run the built binaries, exactly as a user would.

var (
	buildOnce sync.Once
	binDir    string
	buildErr  error
)

// binaries builds tunnel-server and tunnel-agent once per test run.
func binaries(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		t.Skip("builds and runs the binaries")
	}
	buildOnce.Do(func() {
		binDir, buildErr = os.MkdirTemp("", "tunnel-e2e-bin-")
		if buildErr != nil {
			return
		}
		cmd := exec.Command("go", "build", "-o", binDir+string(filepath.Separator), "../../cmd/tunnel-server", "../../cmd/tunnel-agent")
		out, err := cmd.CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binDir
}

func TestMain(m *testing.M) {
	code := m.Run()
	if binDir != "" {
		os.RemoveAll(binDir)
	}
	os.Exit(code)
}

// result is what a finished command printed and returned.
type result struct {
	stdout, stderr string
	code           int
}

// run runs a binary to completion.
func run(t *testing.T, bin string, args ...string) result {
	t.Helper()
	return runEnv(t, nil, bin, args...)
}

// runEnv is run with env (NAME=value) added to the environment.
func runEnv(t *testing.T, env []string, bin string, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(binaries(t), bin), args...)
	cmd.Env = withEnv(env)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	r := result{stdout: stdout.String(), stderr: stderr.String()}
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		r.code = ee.ExitCode()
	case err != nil:
		t.Fatalf("%s %v: %v", bin, args, err)
	}
	return r
}

// proc is a long-running binary.
type proc struct {
	cmd  *exec.Cmd
	log  *logBuffer
	done chan struct{}
	err  error
}

func start(t *testing.T, bin string, args ...string) *proc {
	t.Helper()
	return startEnv(t, nil, bin, args...)
}

// startEnv is start with env (NAME=value) added to the environment.
func startEnv(t *testing.T, env []string, bin string, args ...string) *proc {
	t.Helper()
	p := &proc{log: &logBuffer{}, done: make(chan struct{})}
	p.cmd = exec.Command(filepath.Join(binaries(t), bin), args...)
	p.cmd.Env = withEnv(env)
	p.cmd.Stdout, p.cmd.Stderr = p.log, p.log
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.err = p.cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		p.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.done:
		case <-time.After(15 * time.Second):
			p.cmd.Process.Kill()
			<-p.done
		}
		if t.Failed() {
			t.Logf("%s %v output:\n%s", bin, args, p.log.String())
		}
	})
	return p
}

// withEnv returns the test's environment plus env, whose settings win;
// nil for none, which exec takes as the test's environment.
func withEnv(env []string) []string {
	if env == nil {
		return nil
	}
	return append(os.Environ(), env...)
}

// kill kills the process with SIGKILL: no chance to say goodbye.
func (p *proc) kill() {
	p.cmd.Process.Kill()
	<-p.done
}

func (p *proc) wait(t *testing.T, within time.Duration) int {
	t.Helper()
	select {
	case <-p.done:
	case <-time.After(within):
		t.Fatalf("process still running after %v:\n%s", within, p.log.String())
	}
	var ee *exec.ExitError
	if errors.As(p.err, &ee) {
		return ee.ExitCode()
	}
	return 0
}

// freeAddr returns a loopback address nothing listens on: a free port for
// a server to take, or a target that refuses connections.
func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// cluster is a tunnel-server and a tunnel-agent run from the binaries.
type cluster struct {
	top                      *testing.T // owns the processes, whichever subtest starts them
	dir, serverCfg, agentCfg string
	server, agent            *proc
}

// newCluster runs init and the server, adds agent "acme" with the given
// targets, and (unless noAgent) starts the agent.
func newCluster(t *testing.T, targets map[string]string) *cluster {
	t.Helper()
	c := &cluster{top: t, dir: t.TempDir()}
	c.serverCfg = filepath.Join(c.dir, "srv", "tunnel-server.toml")
	c.agentCfg = filepath.Join(c.dir, "tunnel-agent.toml")
	r := run(t, "tunnel-server", "init", "--dir", filepath.Join(c.dir, "srv"), "--listen", freeAddr(t), "--admin-listen", freeAddr(t))
	if r.code != 0 {
		t.Fatalf("init: %d %s", r.code, r.stderr)
	}
	c.startServer(t)
	r = c.srv(t, "agent", "add", "acme", "--out", c.agentCfg)
	if r.code != 0 {
		t.Fatalf("agent add: %d %s", r.code, r.stderr)
	}
	for name, addr := range targets {
		appendTarget(t, c.agentCfg, name, addr)
	}
	return c
}

func (c *cluster) startServer(t *testing.T) {
	t.Helper()
	c.server = start(c.top, "tunnel-server", "run", "--config", c.serverCfg, "--log", "debug")
	c.server.log.waitFor(t, 10*time.Second, "tunnel-server running")
}

// pidFile is where the cluster's agent records its process id.
func (c *cluster) pidFile() string { return filepath.Join(c.dir, "tunnel-agent.pid") }

func (c *cluster) startAgent(t *testing.T) {
	t.Helper()
	c.agent = start(c.top, "tunnel-agent", "run", "--config", c.agentCfg, "--log", "debug", "--pid-file", c.pidFile())
}

// srv runs a management command against the cluster's server.
func (c *cluster) srv(t *testing.T, args ...string) result {
	t.Helper()
	return run(t, "tunnel-server", append(args, "--config", c.serverCfg)...)
}

// waitOnline polls `agent list` until acme shows online.
func (c *cluster) waitOnline(t *testing.T, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		r := c.srv(t, "agent", "list")
		if regexp.MustCompile(`(?m)^acme\s+online`).MatchString(r.stdout) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("agent not online within %v:\n%s%s", within, r.stdout, r.stderr)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// agentTransport returns the TRANSPORT column of acme's line in `agent
// list`: "tls" or "quic", with a "*" when the agent fell back to TLS.
func (c *cluster) agentTransport(t *testing.T) string {
	t.Helper()
	r := c.srv(t, "agent", "list")
	m := regexp.MustCompile(`(?m)^acme\s+online\s+\S+ ago\s+\S+\s+(\S+)\s`).FindStringSubmatch(r.stdout)
	if r.code != 0 || m == nil {
		t.Fatalf("agent list: %d %s%s", r.code, r.stdout, r.stderr)
	}
	return m[1]
}

// setTransport sets [server] transport in the agent's config file.
func (c *cluster) setTransport(t *testing.T, transport string) {
	t.Helper()
	setKey(t, c.agentCfg, "transport", fmt.Sprintf("%q", transport))
}

var routeAddrRE = regexp.MustCompile(`listens on (127\.0\.0\.1:\d+)`)

func (c *cluster) addRoute(t *testing.T, name, target string, extra ...string) string {
	t.Helper()
	r := c.srv(t, append([]string{"route", "add", name, "--agent", "acme", "--target", target, "--listen", "127.0.0.1:0"}, extra...)...)
	m := routeAddrRE.FindStringSubmatch(r.stdout)
	if r.code != 0 || m == nil {
		t.Fatalf("route add: %d %s%s", r.code, r.stdout, r.stderr)
	}
	return m[1]
}

// exchangeWithin retries a checksum exchange until it works or time is up.
func exchangeWithin(t *testing.T, addr string, within time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	var err error
	for time.Since(start) < within {
		var c net.Conn
		if c, err = net.DialTimeout("tcp", addr, time.Second); err == nil {
			c.SetDeadline(time.Now().Add(5 * time.Second))
			err = checksumExchange(c, 50_000, 9)
			c.Close()
			if err == nil {
				return time.Since(start)
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("route %s not working within %v: %v", addr, within, err)
	return 0
}

// TestBinaries walks the user's path with the real binaries: init, run,
// agent add, check, run, route add, traffic, status; then kills the agent
// and the server with SIGKILL and restarts them.
func TestBinaries(t *testing.T) {
	echo := tcptest.Echo(t)
	c := newCluster(t, map[string]string{"echo": echo})

	r := run(t, "tunnel-agent", "check", "--config", c.agentCfg)
	if r.code != 0 || !strings.Contains(r.stdout, "target echo  ok") || !regexp.MustCompile(`server\s+ok`).MatchString(r.stdout) {
		t.Fatalf("check: %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	c.startAgent(t)
	c.waitOnline(t, 10*time.Second)
	addr := c.addRoute(t, "echo", "echo")
	exchangeWithin(t, addr, 5*time.Second)

	st := c.srv(t, "status")
	// The agent's default transport, auto, prefers QUIC, which loopback
	// carries.
	for _, want := range []string{"acme", "online", "echo", "listening", "quic"} {
		if !strings.Contains(st.stdout, want) {
			t.Errorf("status lacks %q:\n%s", want, st.stdout)
		}
	}
	if tr := c.agentTransport(t); tr != "quic" {
		t.Errorf("agent list shows transport %q, want quic (auto over loopback, no fallback)", tr)
	}

	t.Run("agent killed and restarted", func(t *testing.T) {
		c.agent.kill()
		c.startAgent(t)
		d := exchangeWithin(t, addr, 10*time.Second)
		t.Logf("route working again %v after the agent restart", d.Round(time.Millisecond))
	})

	t.Run("server killed and restarted", func(t *testing.T) {
		c.server.kill()
		c.startServer(t)
		d := exchangeWithin(t, addr, 15*time.Second)
		t.Logf("route working again %v after the server restart", d.Round(time.Millisecond))
		routes := c.srv(t, "route", "list")
		if !strings.Contains(routes.stdout, addr) {
			t.Errorf("route lost in the restart:\n%s", routes.stdout)
		}
		agents := c.srv(t, "agent", "list")
		if !strings.Contains(agents.stdout, "acme") {
			t.Errorf("agent lost in the restart:\n%s", agents.stdout)
		}
	})

	t.Run("route add errors leave nothing behind", func(t *testing.T) {
		busy, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer busy.Close()
		before := c.srv(t, "route", "list").stdout
		for _, tc := range []struct {
			name string
			args []string
			want string
		}{
			{"port in use", []string{"--agent", "acme", "--target", "echo", "--listen", busy.Addr().String()}, "address already in use"},
			{"unknown agent", []string{"--agent", "nobody", "--target", "echo", "--listen", "127.0.0.1:0"}, `unknown agent "nobody"`},
			{"bad allow", []string{"--agent", "acme", "--target", "echo", "--listen", "127.0.0.1:0", "--allow", "10.0.0.0/99"}, `allow "10.0.0.0/99"`},
			{"missing target", []string{"--agent", "acme", "--listen", "127.0.0.1:0"}, "--target is required"},
		} {
			t.Run(tc.name, func(t *testing.T) {
				r := c.srv(t, append([]string{"route", "add", "bad"}, tc.args...)...)
				if r.code == 0 || !strings.Contains(r.stderr, tc.want) {
					t.Fatalf("exit %d, stderr %q; want an error with %q", r.code, r.stderr, tc.want)
				}
				if strings.Count(r.stderr, "\n") != 1 {
					t.Errorf("want one line, got %q", r.stderr)
				}
			})
		}
		if after := c.srv(t, "route", "list").stdout; after != before {
			t.Fatalf("route list changed:\nbefore\n%s\nafter\n%s", before, after)
		}
	})

	t.Run("no secret in any log line", func(t *testing.T) {
		token, err := os.ReadFile(filepath.Join(c.dir, "srv", "admin.token"))
		if err != nil {
			t.Fatal(err)
		}
		cfg, err := os.ReadFile(c.agentCfg)
		if err != nil {
			t.Fatal(err)
		}
		key := regexp.MustCompile(`(?s)BEGIN PRIVATE KEY-----\n(.*?)\n-----END`).FindSubmatch(cfg)
		if key == nil {
			t.Fatal("no key in the agent config")
		}
		secrets := map[string]string{"admin token": strings.TrimSpace(string(token)), "agent key": string(key[1])}
		for name, p := range map[string]*proc{"server": c.server, "agent": c.agent} {
			for what, secret := range secrets {
				if strings.Contains(p.log.String(), secret) {
					t.Errorf("the %s's log contains the %s", name, what)
				}
			}
		}
	})

	t.Run("SIGTERM drains", func(t *testing.T) {
		inFlight, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer inFlight.Close()
		inFlight.Write([]byte("x"))
		inFlight.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := inFlight.Read(make([]byte, 1)); err != nil {
			t.Fatal(err)
		}
		c.server.cmd.Process.Signal(syscall.SIGTERM)
		c.server.log.waitFor(t, 5*time.Second, "draining sessions", "sessions=1")
		if err := checksumExchange(inFlight, 100_000, 4); err != nil {
			t.Fatalf("the session in flight broke during the drain: %v", err)
		}
		inFlight.Close()
		if code := c.server.wait(t, 10*time.Second); code != 0 {
			t.Fatalf("server exit code %d after a drain", code)
		}
		c.startServer(t)
		c.waitOnline(t, 15*time.Second)
	})

	t.Run("disabled agent exits non-zero saying why", func(t *testing.T) {
		if r := c.srv(t, "agent", "disable", "acme"); r.code != 0 {
			t.Fatalf("disable: %d %s", r.code, r.stderr)
		}
		code := c.agent.wait(t, 10*time.Second)
		if code != 3 {
			t.Fatalf("agent exit code %d, want 3", code)
		}
		// Told while connected, or at its next attempt: either way one
		// clear last line.
		last := lastLine(c.agent.log.String())
		prefix := "tunnel-agent: refused by server " + agentServerAddr(t, c.agentCfg) + `: agent "acme" `
		if last != prefix+"was disabled on this server" && last != prefix+"is disabled on this server" {
			t.Fatalf("last line %q", last)
		}
	})
}

// TestBinariesTransports: with [server] transport = "tls" or "quic" in the
// agent's config, check and run connect over that transport, routes work,
// and after the server is killed with SIGKILL and restarted the agent comes
// back over the same transport. (The default, auto, is TestBinaries.)
func TestBinariesTransports(t *testing.T) {
	echo := tcptest.Echo(t)
	forEachTransport(t, func(t *testing.T, tr transport) {
		c := newCluster(t, map[string]string{"echo": echo})
		c.setTransport(t, tr.name)
		r := run(t, "tunnel-agent", "check", "--config", c.agentCfg)
		if r.code != 0 || !regexp.MustCompile(`server\s+ok`).MatchString(r.stdout) {
			t.Fatalf("check: %d\n%s%s", r.code, r.stdout, r.stderr)
		}
		c.startAgent(t)
		c.waitOnline(t, 10*time.Second)
		if got := c.agentTransport(t); got != tr.name {
			t.Errorf("agent list shows transport %q, want %q", got, tr.name)
		}
		c.agent.log.waitFor(t, time.Second, "connected to server", "transport="+tr.name)
		addr := c.addRoute(t, "echo", "echo")
		exchangeWithin(t, addr, 5*time.Second)

		c.server.kill()
		c.startServer(t)
		d := exchangeWithin(t, addr, 15*time.Second)
		t.Logf("route working again %v after the server restart", d.Round(time.Millisecond))
		if got := c.agentTransport(t); got != tr.name {
			t.Errorf("after the restart agent list shows transport %q, want %q", got, tr.name)
		}
		if strings.Contains(c.agent.log.String(), "transport=tls") == tr.quic() || strings.Contains(c.agent.log.String(), "transport=quic") != tr.quic() {
			t.Errorf("the agent connected over another transport than %s:\n%s", tr.name, c.agent.log.String())
		}
	})
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return lines[len(lines)-1]
}

func agentServerAddr(t *testing.T, cfg string) string {
	b, err := os.ReadFile(cfg)
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^address = "([^"]+)"`).FindSubmatch(b)
	return string(m[1])
}

// TestAgentConfigErrors: a bad config stops the agent with exit code 2 and
// a message naming the problem.
func TestAgentConfigErrors(t *testing.T) {
	c := newCluster(t, nil)
	good, err := os.ReadFile(c.agentCfg)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, edit, want string
	}{
		{"unknown key", "\n[[targets]]\nname = \"db\"\nadress = \"127.0.0.1:5432\"\n", `unknown key "targets[1].adress"`},
		{"missing field", "\n[[targets]]\nname = \"db\"\n", "targets[1].address: missing"},
		{"bad address", "\n[[targets]]\nname = \"db\"\naddress = \"db.internal\"\n", `targets[1].address "db.internal": missing port`},
		{"misspelt allowlist section", "\n[[target]]\nname = \"db\"\naddress = \"127.0.0.1:1\"\n", `unknown`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "tunnel-agent.toml")
			if err := os.WriteFile(path, append(append([]byte{}, good...), tc.edit...), 0o600); err != nil {
				t.Fatal(err)
			}
			for _, cmd := range []string{"run", "check"} {
				r := run(t, "tunnel-agent", cmd, "--config", path)
				if r.code != 2 || !strings.Contains(r.stderr, tc.want) || !strings.Contains(r.stderr, "tunnel-agent.toml") {
					t.Fatalf("%s: exit %d, stderr %q; want exit 2 naming %q", cmd, r.code, r.stderr, tc.want)
				}
			}
		})
	}
	t.Run("unknown agent", func(t *testing.T) {
		if r := c.srv(t, "agent", "remove", "acme"); r.code != 0 {
			t.Fatalf("remove: %s", r.stderr)
		}
		r := run(t, "tunnel-agent", "run", "--config", c.agentCfg, "--json", "--log", "debug")
		if r.code != 3 || !strings.Contains(lastLine(r.stderr), `agent "acme" is not registered on this server`) {
			t.Fatalf("exit %d, stderr %q", r.code, r.stderr)
		}
		// With --json every log line is a JSON object; only the final
		// one-line error is plain.
		lines := strings.Split(strings.TrimSpace(r.stderr), "\n")
		for _, l := range lines[:len(lines)-1] {
			var m map[string]any
			if err := json.Unmarshal([]byte(l), &m); err != nil || m["msg"] == nil {
				t.Errorf("not a JSON log line: %q", l)
			}
		}
		if len(lines) < 2 {
			t.Errorf("no log lines before the error: %q", r.stderr)
		}
	})
}

// TestInitRefusesToOverwrite: init never replaces an existing CA or key.
func TestInitRefusesToOverwrite(t *testing.T) {
	dir := t.TempDir()
	if r := run(t, "tunnel-server", "init", "--dir", dir); r.code != 0 {
		t.Fatal(r.stderr)
	}
	ca, _ := os.ReadFile(filepath.Join(dir, "ca.crt"))
	r := run(t, "tunnel-server", "init", "--dir", dir)
	if r.code == 0 || !strings.Contains(r.stderr, "already exists") {
		t.Fatalf("second init: exit %d, %q", r.code, r.stderr)
	}
	if again, _ := os.ReadFile(filepath.Join(dir, "ca.crt")); !bytes.Equal(ca, again) {
		t.Fatal("the CA was overwritten")
	}
	for _, f := range []string{"ca.key", "server.key", "admin.token", "tunnel-server.toml"} {
		fi, err := os.Stat(filepath.Join(dir, f))
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != 0o600 {
			t.Errorf("%s has mode %v, want 0600", f, fi.Mode().Perm())
		}
	}
}

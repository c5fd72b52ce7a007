package e2e

import (
	"bytes"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/tunnelrelay/tunnel/internal/admin"
	"github.com/tunnelrelay/tunnel/internal/config"
	"github.com/tunnelrelay/tunnel/internal/testutil/tcptest"
	"github.com/tunnelrelay/tunnel/pkg/auth"
)

var (
	enrollLineRE = regexp.MustCompile(`(?m)^\s*(tunnel-agent enroll .*)$`)
	tokenRE      = regexp.MustCompile(`tse_[0-9a-f]{16}_[A-Za-z0-9_-]{43}`)
	keyFPRE      = regexp.MustCompile(`sha256:[A-Za-z0-9_-]{43}`)
)

// newServerCluster runs init and the server, without any agent.
func newServerCluster(t *testing.T) *cluster {
	t.Helper()
	c := &cluster{top: t, dir: t.TempDir()}
	c.serverCfg = filepath.Join(c.dir, "srv", "tunnel-server.toml")
	c.agentCfg = filepath.Join(c.dir, "agent", "tunnel-agent.toml")
	if err := os.Mkdir(filepath.Dir(c.agentCfg), 0o700); err != nil {
		t.Fatal(err)
	}
	r := run(t, "tunnel-server", "init", "--dir", filepath.Join(c.dir, "srv"), "--listen", freeAddr(t), "--admin-listen", freeAddr(t))
	if r.code != 0 {
		t.Fatalf("init: %d %s", r.code, r.stderr)
	}
	c.startServer(t)
	return c
}

// adminClient talks to the cluster's server the way the CLI does.
func (c *cluster) adminClient(t *testing.T) *admin.Client {
	t.Helper()
	cfg, err := config.LoadServer(c.serverCfg)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := os.ReadFile(cfg.Admin.TokenFile)
	if err != nil {
		t.Fatal(err)
	}
	return admin.NewClient(cfg.Admin.Listen, strings.TrimSpace(string(tok)))
}

// registered returns the server's record of agent acme.
func (c *cluster) registered(t *testing.T) admin.Agent {
	t.Helper()
	agents, err := c.adminClient(t).Agents(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range agents {
		if a.Name == "acme" {
			return a
		}
	}
	t.Fatal("the server does not list acme")
	return admin.Agent{}
}

// fileKey returns the fingerprint of the key in an agent config file.
func fileKey(t *testing.T, path string) string {
	t.Helper()
	cfg, err := config.LoadAgent(path)
	if err != nil {
		t.Fatal(err)
	}
	k, err := auth.ParseAgentKey([]byte(cfg.Agent.Key.Reveal()))
	if err != nil {
		t.Fatal(err)
	}
	return k.Fingerprint()
}

// TestBinariesEnroll walks enrollment and key rotation with the built
// binaries: agent add --token, tunnel-agent enroll with the printed
// command, run, a session; agent rotate while the session is open; then
// tunnel-agent rotate and reload.
func TestBinariesEnroll(t *testing.T) {
	c := newServerCluster(t)
	r := c.srv(t, "agent", "add", "acme", "--token", "--expires", "1h")
	m := enrollLineRE.FindStringSubmatch(r.stdout)
	if r.code != 0 || m == nil {
		t.Fatalf("agent add --token: %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	// --expires 1h: the token is valid until an hour from now.
	until := regexp.MustCompile(`until (\d{4}-\d\d-\d\d \d\d:\d\d) UTC`).FindStringSubmatch(r.stdout)
	if until == nil {
		t.Fatalf("agent add --token does not say until when the token is valid:\n%s", r.stdout)
	}
	exp, err := time.Parse("2006-01-02 15:04", until[1])
	if err != nil {
		t.Fatal(err)
	}
	if d := time.Until(exp); d < 58*time.Minute || d > 61*time.Minute {
		t.Errorf("the token expires %v from now, want an hour (--expires 1h)", d.Round(time.Second))
	}
	enrollArgs := strings.Fields(m[1])[1:]
	token := tokenRE.FindString(m[1])
	caPEM, err := os.ReadFile(filepath.Join(c.dir, "srv", "ca.crt"))
	if err != nil {
		t.Fatal(err)
	}
	caFP, err := auth.CACertFingerprint(caPEM)
	if err != nil {
		t.Fatal(err)
	}
	if token == "" || !strings.Contains(m[1], "--ca-fingerprint "+caFP) || !strings.Contains(m[1], "--server ") {
		t.Fatalf("the enroll command %q lacks the token, the server or the CA fingerprint %s", m[1], caFP)
	}
	if l := c.srv(t, "agent", "list"); !regexp.MustCompile(`(?m)^acme\s+waiting for enrollment`).MatchString(l.stdout) {
		t.Errorf("agent list does not show acme waiting:\n%s", l.stdout)
	}
	if strings.Contains(c.server.log.String(), token[len(token)-20:]) {
		t.Error("the server logged the token")
	}

	t.Run("wrong CA fingerprint", func(t *testing.T) {
		other, err := auth.NewCA("someone else", time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		args := append(replaceArg(enrollArgs, "--ca-fingerprint", auth.CertFingerprint(other.Cert)), "--out", c.agentCfg)
		r := run(t, "tunnel-agent", args...)
		if r.code == 0 || !strings.Contains(r.stderr, "does not match --ca-fingerprint") || !strings.Contains(r.stderr, caFP) {
			t.Fatalf("exit %d, stderr %q; want a refusal that shows the server's CA %s", r.code, r.stderr, caFP)
		}
		if _, err := os.Stat(c.agentCfg); !os.IsNotExist(err) {
			t.Fatalf("a config was left behind: %v", err)
		}
	})

	r = run(t, "tunnel-agent", append(enrollArgs, "--out", c.agentCfg)...)
	if r.code != 0 || !strings.Contains(r.stdout, `Enrolled as agent "acme"`) {
		t.Fatalf("enroll: %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	fi, err := os.Stat(c.agentCfg)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("the config has mode %v, want 0600", fi.Mode().Perm())
	}
	written, err := os.ReadFile(c.agentCfg)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(written, bytes.TrimSpace(caPEM)) || !bytes.Contains(written, []byte(`name = "acme"`)) {
		t.Errorf("the config lacks the pinned CA or the agent name:\n%s", written)
	}
	// The key was made here: the server registered the key in the file,
	// and printed none of its own.
	enrolledFP := fileKey(t, c.agentCfg)
	if reg := c.registered(t); reg.Fingerprint != enrolledFP || reg.Waiting {
		t.Fatalf("server has %+v, the file holds key %s", reg, enrolledFP)
	}
	if strings.Contains(c.server.log.String(), "PRIVATE KEY") {
		t.Error("a private key went through the server")
	}

	t.Run("the token works once", func(t *testing.T) {
		r := run(t, "tunnel-agent", append(enrollArgs, "--out", filepath.Join(t.TempDir(), "again.toml"))...)
		if r.code != 3 || !strings.Contains(r.stderr, "used already") {
			t.Fatalf("exit %d, stderr %q; want exit 3, token used", r.code, r.stderr)
		}
		r = run(t, "tunnel-agent", append(enrollArgs, "--out", c.agentCfg)...)
		if r.code == 0 || !strings.Contains(r.stderr, "refusing to overwrite") {
			t.Fatalf("exit %d, stderr %q; want a refusal to overwrite", r.code, r.stderr)
		}
	})

	// Targets, then run, as the user would.
	appendTarget(t, c.agentCfg, "echo", tcptest.Echo(t))
	pidFile := filepath.Join(c.dir, "agent.pid")
	c.agent = start(c.top, "tunnel-agent", "run", "--config", c.agentCfg, "--log", "debug", "--pid-file", pidFile)
	c.waitOnline(t, 10*time.Second)
	addr := c.addRoute(t, "echo", "echo")
	exchangeWithin(t, addr, 5*time.Second)
	session, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer session.Close()
	echoOnce(t, session, "before rotation")

	before, err := os.ReadFile(c.agentCfg)
	if err != nil {
		t.Fatal(err)
	}
	oldCfg := filepath.Join(c.dir, "agent", "old.toml")
	if err := os.WriteFile(oldCfg, before, 0o600); err != nil {
		t.Fatal(err)
	}

	t.Run("agent rotate", func(t *testing.T) {
		r := c.srv(t, "agent", "rotate", "acme")
		fps := keyFPRE.FindAllString(r.stdout, -1)
		if r.code != 0 || len(fps) != 2 || fps[1] != enrolledFP {
			t.Fatalf("agent rotate: %d\n%s%s", r.code, r.stdout, r.stderr)
		}
		newFP := fps[0]
		if got := fileKey(t, c.agentCfg); got != newFP {
			t.Fatalf("the config holds key %s, the server says %s", got, newFP)
		}
		checkOnlyKeyDiffers(t, before, c.agentCfg)
		echoOnce(t, session, "during rotation")
		exchangeWithin(t, addr, 5*time.Second)

		r = run(t, "tunnel-agent", "check", "--config", oldCfg)
		if r.code == 0 || !strings.Contains(r.stdout, "not the one registered") {
			t.Fatalf("check with the old key: exit %d\n%s%s", r.code, r.stdout, r.stderr)
		}
		// A reload now finds the key it already uses: no new connection.
		if r := run(t, "tunnel-agent", "reload", "--config", c.agentCfg, "--pid-file", pidFile); r.code != 0 {
			t.Fatalf("reload: %d %s", r.code, r.stderr)
		}
		c.agent.log.waitFor(t, 5*time.Second, "config reloaded", "new_credential=false")
	})

	t.Run("tunnel-agent rotate and reload", func(t *testing.T) {
		prev := fileKey(t, c.agentCfg)
		before, err := os.ReadFile(c.agentCfg)
		if err != nil {
			t.Fatal(err)
		}
		r := run(t, "tunnel-agent", "rotate", "--config", c.agentCfg)
		if r.code != 0 || !strings.Contains(r.stdout, "reload") {
			t.Fatalf("rotate: %d\n%s%s", r.code, r.stdout, r.stderr)
		}
		next := fileKey(t, c.agentCfg)
		checkOnlyKeyDiffers(t, before, c.agentCfg)
		if reg := c.registered(t); reg.Fingerprint != prev || reg.PendingFingerprint != next {
			t.Fatalf("before the reload the server has %+v; want key %s, pending %s", reg, prev, next)
		}
		if l := c.srv(t, "agent", "list"); !strings.Contains(l.stdout, "new key pending") {
			t.Errorf("agent list does not show the pending key:\n%s", l.stdout)
		}
		if r := run(t, "tunnel-agent", "reload", "--config", c.agentCfg, "--pid-file", pidFile); r.code != 0 {
			t.Fatalf("reload: %d %s", r.code, r.stderr)
		}
		deadline := time.Now().Add(10 * time.Second)
		for c.registered(t).Fingerprint != next {
			if time.Now().After(deadline) {
				t.Fatalf("the server did not take the new key after the reload: %+v", c.registered(t))
			}
			time.Sleep(50 * time.Millisecond)
		}
		echoOnce(t, session, "after the reload")
		exchangeWithin(t, addr, 5*time.Second)
	})
}

// replaceArg returns args with the value after flag replaced.
func replaceArg(args []string, flag, value string) []string {
	out := append([]string(nil), args...)
	for i := range out[:len(out)-1] {
		if out[i] == flag {
			out[i+1] = value
		}
	}
	return out
}

// checkOnlyKeyDiffers fails unless the file at path is before with only
// the text of the key changed: same start up to the key, same end after it.
func checkOnlyKeyDiffers(t *testing.T, before []byte, path string) {
	t.Helper()
	after, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("mode %v after the rotation, want 0600", fi.Mode().Perm())
	}
	start := bytes.Index(before, []byte("-----BEGIN PRIVATE KEY-----"))
	end := bytes.Index(before, []byte("-----END PRIVATE KEY-----"))
	if start < 0 || end < 0 {
		t.Fatal("no key in the old file")
	}
	if !bytes.HasPrefix(after, before[:start]) || !bytes.HasSuffix(after, before[end:]) || bytes.Equal(after, before) {
		t.Errorf("the rotation changed more than the key:\n--- before\n%s\n--- after\n%s", before, after)
	}
}

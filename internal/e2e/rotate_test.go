package e2e

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tunnelrelay/tunnel/internal/admin"
	"github.com/tunnelrelay/tunnel/internal/agent"
	"github.com/tunnelrelay/tunnel/internal/harness"
	"github.com/tunnelrelay/tunnel/internal/proto"
	"github.com/tunnelrelay/tunnel/internal/testutil/tcptest"
	"github.com/tunnelrelay/tunnel/pkg/auth"
)

// memKeys is an agent.KeyStore in memory.
type memKeys struct {
	name string
	ca   []byte

	mu     sync.Mutex
	stored []*auth.AgentKey
	err    error // what Check says
}

func (m *memKeys) Check() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.err
}

func (m *memKeys) Store(k *auth.AgentKey) (*tls.Config, error) {
	m.mu.Lock()
	m.stored = append(m.stored, k)
	m.mu.Unlock()
	return auth.ClientConfig(m.name, k, m.ca, "127.0.0.1")
}

func (m *memKeys) last() *auth.AgentKey {
	m.mu.Lock()
	defer m.mu.Unlock()
	if len(m.stored) == 0 {
		return nil
	}
	return m.stored[len(m.stored)-1]
}

// echoOnce writes msg on c and reads it back.
func echoOnce(t *testing.T, c net.Conn, msg string) {
	t.Helper()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	defer c.SetDeadline(time.Time{})
	if _, err := c.Write([]byte(msg)); err != nil {
		t.Fatalf("write %q: %v", msg, err)
	}
	got := make([]byte, len(msg))
	if _, err := io.ReadFull(c, got); err != nil || string(got) != msg {
		t.Fatalf("read %q, %v; want %q", got, err, msg)
	}
}

// TestRotateKey: the server asks a connected agent for a new key; the agent
// moves to a connection with it while a session on the old connection goes
// on; then the old key is refused, and disabling the agent drops both
// connections at once.
func TestRotateKey(t *testing.T) {
	forEachTransport(t, func(t *testing.T, tr transport) {
		e := newEnv(t, tr, testServerOptions())
		oldKey := mustKey(t)
		keys := &memKeys{name: "acme", ca: e.srv.CAPEM}
		opt := testAgentOptions()
		opt.Keys = keys
		a := e.agentWith(harness.AgentConfig{Name: "acme", Key: oldKey, Register: true, Options: opt}, "echo="+tcptest.Echo(t))
		e.online("acme")
		addr := e.route("r", "acme", "echo")
		session, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer session.Close()
		echoOnce(t, session, "before")

		res, err := e.srv.RotateAgentKey(e.ctx, "acme")
		if err != nil {
			t.Fatal(err)
		}
		newKey := keys.last()
		if newKey == nil || res.Fingerprint != newKey.Fingerprint() || res.OldFingerprint != oldKey.Fingerprint() {
			t.Fatalf("rotation = %+v; the agent stored %v, had %s", res, newKey, oldKey.Fingerprint())
		}
		if v := e.agentView("acme"); v.Fingerprint != newKey.Fingerprint() || v.PendingFingerprint != "" || !v.Online {
			t.Fatalf("agent after rotation = %+v", v)
		}
		e.log.waitFor(t, time.Second, "agent key rotated", "agent=acme")

		// The session on the old connection goes on, and new ones work.
		echoOnce(t, session, "during")
		fresh, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer fresh.Close()
		echoOnce(t, fresh, "after")

		t.Run("old key refused", func(t *testing.T) {
			stale, err := e.srv.NewAgent(e.ctx, harness.AgentConfig{Name: "acme", Key: oldKey, Transport: tr.name, Options: testAgentOptions()})
			if err != nil {
				t.Fatal(err)
			}
			wantRefused(t, stale.Run(e.ctx), proto.RefuseKeyMismatch)
		})

		t.Run("disable drops every connection", func(t *testing.T) {
			if err := e.srv.SetAgentDisabled(e.ctx, "acme", true); err != nil {
				t.Fatal(err)
			}
			expectClosed(t, session, 5*time.Second)
			expectClosed(t, fresh, 5*time.Second)
			select {
			case <-a.Done():
				wantRefused(t, a.Err(), proto.RefuseAgentDisabled)
			case <-time.After(10 * time.Second):
				t.Fatal("the agent is still running after it was disabled")
			}
		})
	})
}

// TestAnnounceKey: `tunnel-agent rotate` announces a key over a probe
// connection; both keys work until the running agent connects with the new
// one, which then replaces the old one for good.
func TestAnnounceKey(t *testing.T) {
	e := newEnv(t, transport{name: agent.TransportTLS}, testServerOptions())
	oldKey := mustKey(t)
	running := e.agentWith(harness.AgentConfig{Name: "acme", Key: oldKey, Register: true}, "echo="+tcptest.Echo(t))
	e.online("acme")
	addr := e.route("r", "acme", "echo")
	session, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer session.Close()
	echoOnce(t, session, "before")

	// What `tunnel-agent rotate` runs: an engine with the current key.
	rotator, err := e.srv.NewAgent(e.ctx, harness.AgentConfig{Name: "acme", Key: oldKey, Transport: agent.TransportTLS, Options: testAgentOptions()})
	if err != nil {
		t.Fatal(err)
	}
	newKey := mustKey(t)
	if err := rotator.AnnounceKey(e.ctx, newKey.Fingerprint()); err != nil {
		t.Fatal(err)
	}
	if v := e.agentView("acme"); v.PendingFingerprint != newKey.Fingerprint() || v.Fingerprint != oldKey.Fingerprint() || !v.Online {
		t.Fatalf("agent after the announcement = %+v", v)
	}
	checkWith := func(key *auth.AgentKey) error {
		t.Helper()
		c, err := e.srv.NewAgent(e.ctx, harness.AgentConfig{Name: "acme", Key: key, Transport: agent.TransportTLS, Options: testAgentOptions()})
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range c.Check(e.ctx) {
			if r.What == "server" && !r.OK {
				return errors.New(r.Detail)
			}
		}
		return nil
	}
	// A probe proves a key without promoting it.
	for _, k := range []*auth.AgentKey{oldKey, newKey, oldKey} {
		if err := checkWith(k); err != nil {
			t.Fatalf("key %s refused while both are valid: %v", k.Fingerprint(), err)
		}
	}
	if v := e.agentView("acme"); v.PendingFingerprint != newKey.Fingerprint() {
		t.Fatal("a probe connection promoted the pending key")
	}

	// The reload: the running agent moves to the new key.
	tlsConf, err := auth.ClientConfig("acme", newKey, e.srv.CAPEM, "127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	running.SetTLSConfig(tlsConf)
	deadline := time.Now().Add(10 * time.Second)
	for e.agentView("acme").Fingerprint != newKey.Fingerprint() {
		if time.Now().After(deadline) {
			t.Fatal("the new key was not promoted")
		}
		time.Sleep(20 * time.Millisecond)
	}
	echoOnce(t, session, "during")
	if err := checkWith(oldKey); err == nil {
		t.Fatal("the old key still works after the new one was promoted")
	}
	if err := checkWith(newKey); err != nil {
		t.Fatalf("the new key: %v", err)
	}

	t.Run("refused announcements", func(t *testing.T) {
		// The current key is no new key.
		still, err := e.srv.NewAgent(e.ctx, harness.AgentConfig{Name: "acme", Key: newKey, Transport: agent.TransportTLS, Options: testAgentOptions()})
		if err != nil {
			t.Fatal(err)
		}
		if err := still.AnnounceKey(e.ctx, newKey.Fingerprint()); err == nil {
			t.Error("the current key was accepted as the next one")
		}
		if err := still.AnnounceKey(e.ctx, "sha256:nonsense"); err == nil {
			t.Error("a malformed fingerprint was accepted")
		}
		if err := rotator.AnnounceKey(e.ctx, mustKey(t).Fingerprint()); err == nil {
			t.Error("the old key could still announce a new one")
		}
	})
}

// TestRotateKeyRefused: what the server says when a rotation cannot start.
func TestRotateKeyRefused(t *testing.T) {
	e := newEnv(t, transport{name: agent.TransportTLS}, testServerOptions())
	e.issue("waiting", admin.EnrollTokenRequest{})
	if _, err := e.srv.AddAgent(e.ctx, admin.AddAgentRequest{Name: "offline", Fingerprint: mustKey(t).Fingerprint()}); err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]error{"waiting": admin.ErrConflict, "offline": admin.ErrConflict} {
		if _, err := e.srv.RotateAgentKey(e.ctx, name); !errors.Is(err, want) {
			t.Errorf("rotate %s: %v, want %v", name, err, want)
		}
	}
	if _, err := e.srv.RotateAgentKey(e.ctx, "ghost"); err == nil {
		t.Error("rotating an unknown agent succeeded")
	}
}

// TestRotateKeyCannotStore: an agent that cannot store a new key (a
// read-only config, say) does not announce one; the server's wait ends with
// a timeout that says so, the old key stays, and a later rotation works.
func TestRotateKeyCannotStore(t *testing.T) {
	e := newEnv(t, transport{name: agent.TransportTLS}, testServerOptions())
	oldKey := mustKey(t)
	keys := &memKeys{name: "acme", ca: e.srv.CAPEM, err: errors.New("the config directory is read-only")}
	opt := testAgentOptions()
	opt.Keys = keys
	e.agentWith(harness.AgentConfig{Name: "acme", Key: oldKey, Register: true, Options: opt})
	e.online("acme")

	ctx, cancel := context.WithTimeout(e.ctx, 2*time.Second)
	defer cancel()
	_, err := e.srv.RotateAgentKey(ctx, "acme")
	if !errors.Is(err, admin.ErrTimeout) || !strings.Contains(err.Error(), "did not announce a new key") {
		t.Fatalf("RotateAgentKey = %v, want a timeout saying no key was announced", err)
	}
	e.log.waitFor(t, time.Second, "key not rotated", "read-only")
	if v := e.agentView("acme"); v.Fingerprint != oldKey.Fingerprint() || v.PendingFingerprint != "" {
		t.Fatalf("agent after a failed rotation = %+v", v)
	}

	keys.mu.Lock()
	keys.err = nil
	keys.mu.Unlock()
	res, err := e.srv.RotateAgentKey(e.ctx, "acme")
	if err != nil {
		t.Fatal(err)
	}
	if res.Fingerprint != keys.last().Fingerprint() {
		t.Fatalf("rotated to %s, the agent stored %s", res.Fingerprint, keys.last().Fingerprint())
	}
}

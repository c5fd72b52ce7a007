package e2e

import (
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/tunnelrelay/tunnel/internal/admin"
	"github.com/tunnelrelay/tunnel/internal/agent"
	"github.com/tunnelrelay/tunnel/internal/config"
	"github.com/tunnelrelay/tunnel/internal/harness"
	"github.com/tunnelrelay/tunnel/internal/proto"
	"github.com/tunnelrelay/tunnel/internal/store"
	"github.com/tunnelrelay/tunnel/internal/testutil/tcptest"
	"github.com/tunnelrelay/tunnel/pkg/auth"
)

// enroll runs an enrolling agent with a new key against the env's server,
// checking the server by caFingerprint, and returns the key with what the
// server answered.
func (e *env) enroll(token, caFingerprint string) (*auth.AgentKey, *agent.Enrollment, error) {
	e.t.Helper()
	key, err := auth.NewAgentKey()
	if err != nil {
		e.t.Fatal(err)
	}
	tlsConf, err := auth.PinnedCAConfig(key, caFingerprint, "127.0.0.1")
	if err != nil {
		e.t.Fatal(err)
	}
	opt := testAgentOptions()
	opt.ServerAddress, opt.TLSConfig, opt.Transport, opt.Logger = e.srv.Addr, tlsConf, agent.TransportTLS, e.lg
	eng, err := agent.New(opt)
	if err != nil {
		e.t.Fatal(err)
	}
	res, err := eng.Enroll(e.ctx, token)
	return key, res, err
}

// issue asks the server for an enrollment token.
func (e *env) issue(name string, req admin.EnrollTokenRequest) *admin.EnrollToken {
	e.t.Helper()
	tok, err := e.srv.IssueEnrollToken(e.ctx, name, req)
	if err != nil {
		e.t.Fatal(err)
	}
	return tok
}

// wantRefused fails unless err is a refusal with code whose message says
// each of parts.
func wantRefused(t *testing.T, err error, code proto.RefuseCode, parts ...string) {
	t.Helper()
	var ref *proto.Refuse
	if !errors.As(err, &ref) || ref.Code != code {
		t.Fatalf("error = %v, want a refusal %q", err, code)
	}
	for _, p := range parts {
		if !strings.Contains(ref.Message, p) {
			t.Errorf("refusal %q does not say %q", ref.Message, p)
		}
	}
}

// TestEnroll: an agent registered with a token enrolls a key it made
// itself, once, and then connects with it; every bad token is refused with
// a reason and changes nothing.
func TestEnroll(t *testing.T) {
	e := newEnv(t, transport{name: agent.TransportTLS}, testServerOptions())
	caFP := auth.CertFingerprint(e.srv.CA.Cert)
	tok := e.issue("acme", admin.EnrollTokenRequest{})
	if tok.CAFingerprint != caFP || !tok.Created || tok.Agent != "acme" {
		t.Fatalf("token answer = %+v, want the CA fingerprint %s and a new agent", tok, caFP)
	}
	if d := time.Until(tok.Expires); d < 23*time.Hour || d > 24*time.Hour {
		t.Errorf("token expires in %v, want 24h", d)
	}
	if v := e.agentView("acme"); !v.Waiting || v.Fingerprint != "" {
		t.Fatalf("agent before enrollment = %+v, want waiting without a key", v)
	}

	t.Run("no key is accepted while waiting", func(t *testing.T) {
		a, err := e.srv.NewAgent(e.ctx, harness.AgentConfig{Name: "acme", Key: mustKey(t), Transport: agent.TransportTLS, Options: testAgentOptions()})
		if err != nil {
			t.Fatal(err)
		}
		wantRefused(t, a.Run(e.ctx), proto.RefuseKeyMismatch)
	})

	t.Run("wrong CA fingerprint", func(t *testing.T) {
		other, err := auth.NewCA("another CA", time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		_, _, err = e.enroll(tok.Token, auth.CertFingerprint(other.Cert))
		if !errors.Is(err, auth.ErrCAMismatch) || !strings.Contains(err.Error(), caFP) {
			t.Fatalf("error = %v, want a CA mismatch that shows the server's CA %s", err, caFP)
		}
		if v := e.agentView("acme"); !v.Waiting {
			t.Fatal("the agent was enrolled through a server it did not trust")
		}
	})

	var key *auth.AgentKey
	t.Run("good token", func(t *testing.T) {
		var res *agent.Enrollment
		var err error
		key, res, err = e.enroll(tok.Token, caFP)
		if err != nil {
			t.Fatal(err)
		}
		if res.Agent != "acme" || res.Fingerprint != key.Fingerprint() {
			t.Errorf("enrolled as %q with %s, want acme with %s", res.Agent, res.Fingerprint, key.Fingerprint())
		}
		sum, _ := auth.ParseCertFingerprint(caFP)
		if ca := auth.FindCA(res.ServerChain, sum); ca == nil || !ca.Equal(e.srv.CA.Cert) {
			t.Error("the server's chain does not hold its CA")
		}
		if v := e.agentView("acme"); v.Waiting || v.Fingerprint != key.Fingerprint() {
			t.Fatalf("agent after enrollment = %+v", v)
		}
		e.log.waitFor(t, time.Second, "agent enrolled", "agent=acme", "fingerprint="+key.Fingerprint())
	})
	if key == nil {
		t.FailNow()
	}

	t.Run("the enrolled key connects", func(t *testing.T) {
		e.agentWith(harness.AgentConfig{Name: "acme", Key: key}, "echo="+tcptest.Echo(t))
		e.online("acme")
		addr := e.route("acme-echo", "acme", "echo")
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if err := checksumExchange(c, 64<<10, 1); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("used token", func(t *testing.T) {
		_, _, err := e.enroll(tok.Token, caFP)
		wantRefused(t, err, proto.RefuseBadToken, "used already")
		if v := e.agentView("acme"); v.Fingerprint != key.Fingerprint() {
			t.Fatal("a used token changed the agent's key")
		}
	})

	t.Run("no token for an agent with a key", func(t *testing.T) {
		_, err := e.srv.IssueEnrollToken(e.ctx, "acme", admin.EnrollTokenRequest{})
		if !errors.Is(err, store.ErrExists) {
			t.Fatalf("IssueEnrollToken = %v, want ErrExists", err)
		}
	})

	t.Run("expired token", func(t *testing.T) {
		old, err := auth.NewEnrollToken()
		if err != nil {
			t.Fatal(err)
		}
		now := time.Now()
		if _, err := e.srv.Store.IssueEnrollToken(e.ctx, store.EnrollToken{ID: old.ID, Agent: "late", Hash: old.Hash(),
			CreatedAt: now.Add(-2 * time.Hour), ExpiresAt: now.Add(-time.Hour)}); err != nil {
			t.Fatal(err)
		}
		_, _, err = e.enroll(old.Reveal(), caFP)
		wantRefused(t, err, proto.RefuseBadToken, "expired")
		if v := e.agentView("late"); !v.Waiting {
			t.Fatal("an expired token enrolled the agent")
		}
	})

	t.Run("unknown token", func(t *testing.T) {
		never, err := auth.NewEnrollToken()
		if err != nil {
			t.Fatal(err)
		}
		_, _, err = e.enroll(never.Reveal(), caFP)
		wantRefused(t, err, proto.RefuseBadToken, "unknown enrollment token")
	})

	t.Run("right id, wrong secret", func(t *testing.T) {
		waiting := e.issue("guessed", admin.EnrollTokenRequest{ExpiresInSeconds: 600})
		other, err := auth.NewEnrollToken()
		if err != nil {
			t.Fatal(err)
		}
		guess := auth.EnrollTokenPrefix + waiting.TokenID + other.Reveal()[len(auth.EnrollTokenPrefix)+len(other.ID):]
		_, _, err = e.enroll(guess, caFP)
		wantRefused(t, err, proto.RefuseBadToken, "unknown enrollment token")
		if v := e.agentView("guessed"); !v.Waiting {
			t.Fatal("a guessed secret enrolled the agent")
		}
	})

	t.Run("malformed token", func(t *testing.T) {
		_, _, err := e.enroll("tse_not-a-token", caFP)
		wantRefused(t, err, proto.RefuseBadToken, "enrollment token")
	})

	t.Run("a new token replaces the old one", func(t *testing.T) {
		first := e.issue("renewed", admin.EnrollTokenRequest{})
		second := e.issue("renewed", admin.EnrollTokenRequest{})
		if second.Created {
			t.Error("the second token registered the agent again")
		}
		_, _, err := e.enroll(first.Token, caFP)
		wantRefused(t, err, proto.RefuseBadToken, "unknown enrollment token")
		if _, _, err := e.enroll(second.Token, caFP); err != nil {
			t.Fatalf("the new token: %v", err)
		}
	})

	t.Run("lifetime bounds", func(t *testing.T) {
		for _, secs := range []int64{-1, 59, 30*24*3600 + 1} {
			_, err := e.srv.IssueEnrollToken(e.ctx, "bounded", admin.EnrollTokenRequest{ExpiresInSeconds: secs})
			if !errors.Is(err, admin.ErrInvalid) {
				t.Errorf("expires_in_seconds %d: %v, want ErrInvalid", secs, err)
			}
		}
	})

	t.Run("no secret in the log", func(t *testing.T) {
		logs := e.log.String()
		if i := strings.Index(tok.Token, tok.TokenID); i < 0 || strings.Contains(logs, tok.Token[i+len(tok.TokenID)+1:]) {
			t.Error("the log holds an enrollment token's secret")
		}
		if !strings.Contains(logs, tok.TokenID) {
			t.Error("the log does not name the token by its id")
		}
	})
}

func mustKey(t *testing.T) *auth.AgentKey {
	t.Helper()
	k, err := auth.NewAgentKey()
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// TestEnrollThroughProxy: an agent whose only way to the server is an HTTP
// CONNECT proxy (HTTPS_PROXY) enrolls through it, as tunnel-agent enroll
// resolves it.
func TestEnrollThroughProxy(t *testing.T) {
	e := newEnv(t, transport{name: agent.TransportTLS}, testServerOptions())
	_, port, err := net.SplitHostPort(e.srv.Addr)
	if err != nil {
		t.Fatal(err)
	}
	server := net.JoinHostPort(harness.ServerHost, port)
	px := newConnectProxy(t)
	tok := e.issue("acme", admin.EnrollTokenRequest{})

	s := config.AgentServer{Address: server, Transport: config.TransportTLS}
	proxy, err := s.ResolveProxy(envLookup(proxyEnv(px)))
	if err != nil || proxy.URL == nil {
		t.Fatalf("no proxy resolved: %v", err)
	}
	key := mustKey(t)
	tlsConf, err := auth.PinnedCAConfig(key, tok.CAFingerprint, harness.ServerHost)
	if err != nil {
		t.Fatal(err)
	}
	opt := testAgentOptions()
	opt.ServerAddress, opt.TLSConfig, opt.Transport, opt.Proxy, opt.Logger = server, tlsConf, agent.TransportTLS, proxy.URL, e.lg
	eng, err := agent.New(opt)
	if err != nil {
		t.Fatal(err)
	}
	res, err := eng.Enroll(e.ctx, tok.Token)
	if err != nil {
		t.Fatal(err)
	}
	if res.Agent != "acme" || e.agentView("acme").Fingerprint != key.Fingerprint() {
		t.Fatalf("enrolled %+v; server has %+v", res, e.agentView("acme"))
	}
	if got := px.Targets(); len(got) != 1 || got[0] != server {
		t.Errorf("the proxy was asked for %q, want [%s]", got, server)
	}
}

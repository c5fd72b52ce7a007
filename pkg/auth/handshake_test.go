package auth

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"testing"
	"time"
)

// handshakeResult is what each side of a test handshake saw.
type handshakeResult struct {
	clientErr, serverErr error
	server               tls.ConnectionState
}

// handshake runs a TLS handshake over loopback TCP. Because a TLS 1.3 client
// finishes its handshake before the server has checked the client
// certificate, the server writes one byte once it accepts the client and the
// client's error includes reading it: a refusal by the server shows on both
// sides.
func handshake(t *testing.T, client, server *tls.Config) handshakeResult {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	deadline, _ := ctx.Deadline()

	type serverResult struct {
		err   error
		state tls.ConnectionState
	}
	done := make(chan serverResult, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			done <- serverResult{err: err}
			return
		}
		defer c.Close()
		_ = c.SetDeadline(deadline)
		tc := tls.Server(c, server)
		if err := tc.HandshakeContext(ctx); err != nil {
			done <- serverResult{err: err}
			return
		}
		_, err = tc.Write([]byte{1})
		state := tc.ConnectionState()
		// Wait for the client to close, so it reads the byte before the FIN.
		_, _ = io.Copy(io.Discard, tc)
		done <- serverResult{err: err, state: state}
	}()

	conn, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	_ = conn.SetDeadline(deadline)
	tc := tls.Client(conn, client)
	clientErr := tc.HandshakeContext(ctx)
	if clientErr == nil {
		_, clientErr = io.ReadFull(tc, make([]byte, 1))
	}
	conn.Close()
	r := <-done
	return handshakeResult{clientErr: clientErr, serverErr: r.err, server: r.state}
}

// errCheck checks an error from one side of a handshake.
type errCheck func(t *testing.T, side string, err error)

func noError(t *testing.T, side string, err error) {
	t.Helper()
	if err != nil {
		t.Errorf("%s: unexpected error: %v", side, err)
	}
}

func anyError(t *testing.T, side string, err error) {
	t.Helper()
	if err == nil {
		t.Errorf("%s: handshake succeeded, want an error", side)
	}
}

// verificationError wants a certificate verification error whose cause is
// also of type T.
func verificationError[T error]() errCheck {
	return func(t *testing.T, side string, err error) {
		t.Helper()
		var cve *tls.CertificateVerificationError
		if !errors.As(err, &cve) {
			t.Fatalf("%s: error %v (%T), want a *tls.CertificateVerificationError", side, err, err)
		}
		var cause T
		if !errors.As(err, &cause) {
			t.Errorf("%s: error %v, want it caused by %T", side, err, cause)
		}
	}
}

func errorIs(target error) errCheck {
	return func(t *testing.T, side string, err error) {
		t.Helper()
		if !errors.Is(err, target) {
			t.Errorf("%s: error %v, want %v", side, err, target)
		}
	}
}

func TestHandshake(t *testing.T) {
	p := newTestPKI(t)
	ecKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	ecFingerprint, err := Fingerprint(ecKey.Public())
	if err != nil {
		t.Fatal(err)
	}
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	otherCA, err := NewCA("other CA", time.Hour)
	if err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name        string
		client      func(t *testing.T) *tls.Config
		server      func(t *testing.T) *tls.Config // nil: p.serverConfig
		checkClient errCheck
		checkServer errCheck
		want        Identity // checked when both sides succeed
	}{
		{
			name:        "agent by host name",
			client:      func(t *testing.T) *tls.Config { return p.clientConfig(t, "localhost") },
			checkClient: noError,
			checkServer: noError,
			want:        Identity{Name: testAgent, Fingerprint: p.agent.Fingerprint()},
		},
		{
			name:        "agent by IP address",
			client:      func(t *testing.T) *tls.Config { return p.clientConfig(t, "127.0.0.1") },
			checkClient: noError,
			checkServer: noError,
			want:        Identity{Name: testAgent, Fingerprint: p.agent.Fingerprint()},
		},
		{
			name: "ECDSA client key accepted",
			client: func(t *testing.T) *tls.Config {
				cfg := p.clientConfig(t, "localhost")
				cfg.Certificates = []tls.Certificate{clientCert(t, "ec-agent", ecKey)}
				return cfg
			},
			checkClient: noError,
			checkServer: noError,
			want:        Identity{Name: "ec-agent", Fingerprint: ecFingerprint},
		},
		{
			name: "client pinned to another CA",
			client: func(t *testing.T) *tls.Config {
				cfg, err := ClientConfig(testAgent, p.agent, otherCA.CertPEM(), "localhost")
				if err != nil {
					t.Fatal(err)
				}
				return cfg
			},
			checkClient: verificationError[x509.UnknownAuthorityError](),
			checkServer: anyError,
		},
		{
			name: "client with system roots rejects private CA",
			client: func(t *testing.T) *tls.Config {
				cfg, err := ClientConfig(testAgent, p.agent, nil, "localhost")
				if err != nil {
					t.Fatal(err)
				}
				return cfg
			},
			// Any cause: it depends on the roots this host has, if any.
			checkClient: verificationError[error](),
			checkServer: anyError,
		},
		{
			name:        "server certificate for another host",
			client:      func(t *testing.T) *tls.Config { return p.clientConfig(t, "tunnel.example.com") },
			checkClient: verificationError[x509.HostnameError](),
			checkServer: anyError,
		},
		{
			name: "client without certificate",
			client: func(t *testing.T) *tls.Config {
				cfg := p.clientConfig(t, "localhost")
				cfg.Certificates = nil
				return cfg
			},
			checkClient: anyError,
			checkServer: anyError,
		},
		{
			name: "plain client",
			client: func(t *testing.T) *tls.Config {
				pool, err := ReadCertPool(p.ca.CertPEM())
				if err != nil {
					t.Fatal(err)
				}
				return &tls.Config{RootCAs: pool, ServerName: "localhost"}
			},
			checkClient: anyError,
			checkServer: anyError,
		},
		{
			name: "client certificate with invalid common name",
			client: func(t *testing.T) *tls.Config {
				cfg := p.clientConfig(t, "localhost")
				cert, err := selfSignedCert("bad name!", p.agent.secret().priv)
				if err != nil {
					t.Fatal(err)
				}
				cfg.Certificates = []tls.Certificate{cert}
				return cfg
			},
			checkClient: anyError,
			checkServer: errorIs(ErrNoIdentity),
		},
		{
			name: "client certificate without common name",
			client: func(t *testing.T) *tls.Config {
				cfg := p.clientConfig(t, "localhost")
				cfg.Certificates = []tls.Certificate{clientCert(t, "", p.agent.secret().priv)}
				return cfg
			},
			checkClient: anyError,
			checkServer: errorIs(ErrNoIdentity),
		},
		{
			name: "RSA client key",
			client: func(t *testing.T) *tls.Config {
				cfg := p.clientConfig(t, "localhost")
				cfg.Certificates = []tls.Certificate{clientCert(t, testAgent, rsaKey)}
				return cfg
			},
			checkClient: anyError,
			checkServer: errorIs(ErrNoIdentity),
		},
		{
			name: "TLS 1.2 client",
			client: func(t *testing.T) *tls.Config {
				cfg := p.clientConfig(t, "localhost")
				cfg.MinVersion = tls.VersionTLS12
				cfg.MaxVersion = tls.VersionTLS12
				return cfg
			},
			checkClient: anyError,
			checkServer: anyError,
		},
		{
			name:   "TLS 1.2 server",
			client: func(t *testing.T) *tls.Config { return p.clientConfig(t, "localhost") },
			server: func(t *testing.T) *tls.Config {
				cfg := p.serverConfig(t)
				cfg.MinVersion = tls.VersionTLS12
				cfg.MaxVersion = tls.VersionTLS12
				return cfg
			},
			checkClient: anyError,
			checkServer: anyError,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			server := p.serverConfig(t)
			if tt.server != nil {
				server = tt.server(t)
			}
			r := handshake(t, tt.client(t), server)
			tt.checkClient(t, "client", r.clientErr)
			tt.checkServer(t, "server", r.serverErr)
			if r.clientErr != nil || r.serverErr != nil {
				return
			}
			if r.server.Version != tls.VersionTLS13 {
				t.Errorf("version %#x, want TLS 1.3", r.server.Version)
			}
			id, err := PeerIdentity(r.server)
			if err != nil {
				t.Fatalf("PeerIdentity: %v", err)
			}
			if id != tt.want {
				t.Errorf("PeerIdentity = %+v, want %+v", id, tt.want)
			}
		})
	}
}

// TestHandshakeThenVerify runs the server's whole admission path: handshake,
// PeerIdentity, Verifier.
func TestHandshakeThenVerify(t *testing.T) {
	p := newTestPKI(t)
	impostor, err := NewAgentKey()
	if err != nil {
		t.Fatal(err)
	}
	registry := map[string]string{testAgent: p.agent.Fingerprint()}
	v := &Verifier{Lookup: func(_ context.Context, name string) (Registration, error) {
		fp, ok := registry[name]
		if !ok {
			return Registration{}, ErrUnknownAgent
		}
		return Registration{Fingerprint: fp}, nil
	}}

	tests := []struct {
		name    string
		agent   string
		key     *AgentKey
		wantErr error
	}{
		{name: "registered agent", agent: testAgent, key: p.agent},
		{name: "impostor with the agent's name", agent: testAgent, key: impostor, wantErr: ErrKeyMismatch},
		{name: "unregistered agent", agent: "stranger", key: p.agent, wantErr: ErrUnknownAgent},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			client, err := ClientConfig(tt.agent, tt.key, p.ca.CertPEM(), "localhost")
			if err != nil {
				t.Fatal(err)
			}
			r := handshake(t, client, p.serverConfig(t))
			if r.clientErr != nil || r.serverErr != nil {
				t.Fatalf("handshake: client %v, server %v", r.clientErr, r.serverErr)
			}
			id, err := PeerIdentity(r.server)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := v.Verify(context.Background(), id); !errors.Is(err, tt.wantErr) {
				t.Errorf("Verify = %v, want %v", err, tt.wantErr)
			}
		})
	}
}

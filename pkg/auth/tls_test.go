package auth

import (
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"math/big"
	"testing"
	"time"
)

const testAgent = "acme-bastion"

// testPKI is a CA, a server certificate for localhost and 127.0.0.1, and an
// agent key.
type testPKI struct {
	ca                    *CA
	serverCert, serverKey []byte
	agent                 *AgentKey
}

func newTestPKI(t *testing.T) *testPKI {
	t.Helper()
	ca, err := NewCA("test CA", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	certPEM, keyPEM, err := ca.IssueServerCert([]string{"localhost", "127.0.0.1"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	key, err := NewAgentKey()
	if err != nil {
		t.Fatal(err)
	}
	return &testPKI{ca: ca, serverCert: certPEM, serverKey: keyPEM, agent: key}
}

func (p *testPKI) serverConfig(t *testing.T) *tls.Config {
	t.Helper()
	cfg, err := ServerConfig(p.serverCert, p.serverKey)
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

func (p *testPKI) clientConfig(t *testing.T, serverName string) *tls.Config {
	t.Helper()
	cfg, err := ClientConfig(testAgent, p.agent, p.ca.CertPEM(), serverName)
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// clientCert makes a self-signed client certificate for any key type.
func clientCert(t *testing.T, cn string, key crypto.Signer) tls.Certificate {
	t.Helper()
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: cn},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

func TestPeerIdentity(t *testing.T) {
	p := newTestPKI(t)
	good, err := selfSignedCert(testAgent, p.agent.secret().priv)
	if err != nil {
		t.Fatal(err)
	}
	bad, err := selfSignedCert("-bad", p.agent.secret().priv)
	if err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name    string
		state   tls.ConnectionState
		want    Identity
		wantErr error
	}{
		{
			name:  "agent",
			state: tls.ConnectionState{HandshakeComplete: true, PeerCertificates: []*x509.Certificate{good.Leaf}},
			want:  Identity{Name: testAgent, Fingerprint: p.agent.Fingerprint()},
		},
		{
			name:    "zero state",
			wantErr: ErrNoIdentity,
		},
		{
			name:    "handshake not complete",
			state:   tls.ConnectionState{PeerCertificates: []*x509.Certificate{good.Leaf}},
			wantErr: ErrNoIdentity,
		},
		{
			name:    "no peer certificate",
			state:   tls.ConnectionState{HandshakeComplete: true},
			wantErr: ErrNoIdentity,
		},
		{
			name:    "invalid common name",
			state:   tls.ConnectionState{HandshakeComplete: true, PeerCertificates: []*x509.Certificate{bad.Leaf}},
			wantErr: ErrNoIdentity,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := PeerIdentity(tt.state)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("PeerIdentity error = %v, want %v", err, tt.wantErr)
			}
			if got != tt.want {
				t.Errorf("PeerIdentity = %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestClientConfig(t *testing.T) {
	p := newTestPKI(t)

	tests := []struct {
		name      string
		agent     string
		key       *AgentKey
		caPEM     []byte
		wantErr   bool
		wantRoots bool
	}{
		{name: "pinned CA", agent: testAgent, key: p.agent, caPEM: p.ca.CertPEM(), wantRoots: true},
		{name: "system roots", agent: testAgent, key: p.agent},
		{name: "invalid name", agent: "no spaces", key: p.agent, wantErr: true},
		{name: "empty name", agent: "", key: p.agent, wantErr: true},
		{name: "nil key", agent: testAgent, wantErr: true},
		{name: "zero key", agent: testAgent, key: &AgentKey{}, wantErr: true},
		{name: "CA without certificate", agent: testAgent, key: p.agent, caPEM: []byte("not a certificate"), wantErr: true},
		{name: "CA key instead of certificate", agent: testAgent, key: p.agent, caPEM: p.agent.PEM(), wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := ClientConfig(tt.agent, tt.key, tt.caPEM, "tunnel.example.com")
			if tt.wantErr {
				if err == nil {
					t.Fatal("ClientConfig succeeded, want an error")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if cfg.MinVersion != tls.VersionTLS13 {
				t.Errorf("MinVersion = %#x, want TLS 1.3", cfg.MinVersion)
			}
			if cfg.ServerName != "tunnel.example.com" {
				t.Errorf("ServerName = %q", cfg.ServerName)
			}
			if (cfg.RootCAs != nil) != tt.wantRoots {
				t.Errorf("RootCAs set = %v, want %v", cfg.RootCAs != nil, tt.wantRoots)
			}
			if cfg.InsecureSkipVerify {
				t.Error("InsecureSkipVerify is set")
			}
			if len(cfg.Certificates) != 1 {
				t.Fatalf("%d certificates, want 1", len(cfg.Certificates))
			}
			leaf, err := x509.ParseCertificate(cfg.Certificates[0].Certificate[0])
			if err != nil {
				t.Fatal(err)
			}
			if leaf.Subject.CommonName != tt.agent {
				t.Errorf("CommonName = %q, want %q", leaf.Subject.CommonName, tt.agent)
			}
			if fp, _ := Fingerprint(leaf.PublicKey); fp != tt.key.Fingerprint() {
				t.Errorf("certificate key fingerprint %s, want %s", fp, tt.key.Fingerprint())
			}
			if now := time.Now(); !leaf.NotBefore.Before(now.Add(-50*time.Minute)) || leaf.NotAfter.Before(now.AddDate(9, 11, 0)) {
				t.Errorf("validity %v to %v, want from an hour ago for ten years", leaf.NotBefore, leaf.NotAfter)
			}
			if err := leaf.CheckSignature(leaf.SignatureAlgorithm, leaf.RawTBSCertificate, leaf.Signature); err != nil {
				t.Errorf("certificate is not self-signed: %v", err)
			}
		})
	}
}

func TestServerConfig(t *testing.T) {
	p := newTestPKI(t)
	_, otherKey, err := p.ca.IssueServerCert([]string{"localhost"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name      string
		cert, key []byte
		wantErr   bool
	}{
		{name: "ok", cert: p.serverCert, key: p.serverKey},
		{name: "garbage", cert: []byte("x"), key: []byte("y"), wantErr: true},
		{name: "key of another certificate", cert: p.serverCert, key: otherKey, wantErr: true},
		{name: "no key", cert: p.serverCert, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := ServerConfig(tt.cert, tt.key)
			if tt.wantErr {
				if err == nil {
					t.Fatal("ServerConfig succeeded, want an error")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if cfg.MinVersion != tls.VersionTLS13 {
				t.Errorf("MinVersion = %#x, want TLS 1.3", cfg.MinVersion)
			}
			if cfg.ClientAuth != tls.RequireAnyClientCert {
				t.Errorf("ClientAuth = %v, want RequireAnyClientCert", cfg.ClientAuth)
			}
			if cfg.VerifyPeerCertificate == nil {
				t.Error("VerifyPeerCertificate is nil")
			}
		})
	}
}

func TestVerifyAgentChain(t *testing.T) {
	key, err := NewAgentKey()
	if err != nil {
		t.Fatal(err)
	}
	good, err := selfSignedCert(testAgent, key.secret().priv)
	if err != nil {
		t.Fatal(err)
	}
	long, err := selfSignedCert(string(make([]byte, 64)), key.secret().priv)
	if err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name    string
		raw     [][]byte
		wantErr error
	}{
		{name: "agent", raw: [][]byte{good.Certificate[0]}},
		{name: "extra certificates ignored", raw: [][]byte{good.Certificate[0], []byte("junk")}},
		{name: "none", wantErr: ErrNoIdentity},
		{name: "garbage", raw: [][]byte{[]byte("junk")}, wantErr: ErrNoIdentity},
		{name: "name too long", raw: [][]byte{long.Certificate[0]}, wantErr: ErrNoIdentity},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := verifyAgentChain(tt.raw, nil); !errors.Is(err, tt.wantErr) {
				t.Errorf("verifyAgentChain = %v, want %v", err, tt.wantErr)
			}
		})
	}
}

// FuzzVerifyAgentChain feeds the server's client certificate check with
// arbitrary bytes, as a hostile client could.
func FuzzVerifyAgentChain(f *testing.F) {
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		f.Fatal(err)
	}
	for _, cn := range []string{testAgent, "", "bad name"} {
		cert, err := selfSignedCert(cn, priv)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(cert.Certificate[0])
	}
	f.Add([]byte{0x30, 0x82, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, der []byte) {
		if err := verifyAgentChain([][]byte{der}, nil); err != nil {
			if !errors.Is(err, ErrNoIdentity) {
				t.Fatalf("error %v does not wrap ErrNoIdentity", err)
			}
			return
		}
		leaf, err := x509.ParseCertificate(der)
		if err != nil {
			t.Fatalf("accepted a certificate that does not parse: %v", err)
		}
		if !ValidName(leaf.Subject.CommonName) {
			t.Fatalf("accepted common name %q", leaf.Subject.CommonName)
		}
	})
}

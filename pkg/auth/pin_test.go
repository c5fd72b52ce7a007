package auth

import (
	"bytes"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"strings"
	"testing"
	"time"
)

func TestCertFingerprint(t *testing.T) {
	ca, err := NewCA("test CA", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	fp := CertFingerprint(ca.Cert)
	sum := sha256.Sum256(ca.Cert.Raw)
	if !ValidFingerprint(fp) {
		t.Fatalf("CertFingerprint = %q, not in the sha256:BASE64URL form", fp)
	}
	if got, err := CACertFingerprint(ca.CertPEM()); err != nil || got != fp {
		t.Fatalf("CACertFingerprint = %q, %v; want %q", got, err, fp)
	}
	hexSum := hex.EncodeToString(sum[:])
	var colons []string
	for i := 0; i < len(hexSum); i += 2 {
		colons = append(colons, strings.ToUpper(hexSum[i:i+2]))
	}
	good := map[string]string{
		"as printed":             fp,
		"upper-case prefix":      "SHA256:" + fp[len(FingerprintPrefix):],
		"hex":                    hexSum,
		"hex with prefix":        "sha256:" + hexSum,
		"openssl":                "sha256 Fingerprint=" + strings.Join(colons, ":"),
		"upper-case hex, colons": strings.Join(colons, ":"),
		"surrounded by space":    "  " + fp + "\n",
	}
	for name, in := range good {
		t.Run(name, func(t *testing.T) {
			got, err := ParseCertFingerprint(in)
			if err != nil {
				t.Fatal(err)
			}
			if got != sum {
				t.Errorf("ParseCertFingerprint(%q) = %x, want %x", in, got, sum)
			}
		})
	}
	bad := map[string]string{
		"empty":                      "",
		"base64url without a prefix": fp[len(FingerprintPrefix):],
		"short hex":                  hexSum[:62],
		"not hex":                    strings.Repeat("zz", 32),
		"other hash":                 "sha1:" + hexSum[:40],
		"truncated base64url":        fp[:len(fp)-1],
	}
	for name, in := range bad {
		t.Run(name, func(t *testing.T) {
			if _, err := ParseCertFingerprint(in); !errors.Is(err, ErrMalformedFingerprint) {
				t.Errorf("ParseCertFingerprint(%q) error = %v, want ErrMalformedFingerprint", in, err)
			}
		})
	}
}

func TestAppendCACert(t *testing.T) {
	p := newTestPKI(t)
	chain, err := AppendCACert(p.serverCert, p.ca.CertPEM())
	if err != nil {
		t.Fatal(err)
	}
	certs, err := parseCertsPEM(chain)
	if err != nil {
		t.Fatal(err)
	}
	if len(certs) != 2 || !certs[1].Equal(p.ca.Cert) {
		t.Fatalf("chain has %d certificates, want the leaf and the CA", len(certs))
	}
	again, err := AppendCACert(chain, p.ca.CertPEM())
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(again, chain) {
		t.Error("AppendCACert added the CA a second time")
	}
	if _, err := tls.X509KeyPair(chain, p.serverKey); err != nil {
		t.Errorf("the chain does not load with the server key: %v", err)
	}
	if _, err := AppendCACert(p.serverCert, []byte("no PEM")); !errors.Is(err, ErrNoCertificate) {
		t.Errorf("AppendCACert with no CA: %v, want ErrNoCertificate", err)
	}
}

// TestPinnedCAConfig runs enrollment handshakes against servers that present
// different chains.
func TestPinnedCAConfig(t *testing.T) {
	p := newTestPKI(t)
	withCA, err := AppendCACert(p.serverCert, p.ca.CertPEM())
	if err != nil {
		t.Fatal(err)
	}
	// An impostor with its own CA, which also presents the real CA
	// certificate (public, after all) in its chain.
	evil := newTestPKI(t)
	evilChain, err := AppendCACert(evil.serverCert, evil.ca.CertPEM())
	if err != nil {
		t.Fatal(err)
	}
	evilWithRealCA := append(bytes.Clone(evil.serverCert), p.ca.CertPEM()...)

	serverConf := func(chain, key []byte) *tls.Config {
		c, err := ServerConfig(chain, key)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	fp := CertFingerprint(p.ca.Cert)
	tests := []struct {
		name       string
		server     *tls.Config
		serverName string
		fp         string
		wantErr    error  // nil: success
		wantText   string // in the client's error
	}{
		{name: "CA in the chain", server: serverConf(withCA, p.serverKey), serverName: "localhost", fp: fp},
		{name: "by IP address", server: serverConf(withCA, p.serverKey), serverName: "127.0.0.1", fp: fp},
		{name: "wrong fingerprint", server: serverConf(evilChain, evil.serverKey), serverName: "localhost", fp: fp,
			wantErr: ErrCAMismatch, wantText: CertFingerprint(evil.ca.Cert)},
		{name: "no CA in the chain", server: serverConf(p.serverCert, p.serverKey), serverName: "localhost", fp: fp,
			wantErr: ErrCAMismatch, wantText: "no CA certificate"},
		{name: "real CA in an impostor's chain", server: serverConf(evilWithRealCA, evil.serverKey), serverName: "localhost", fp: fp,
			wantText: "does not verify against the pinned CA"},
		{name: "wrong server name", server: serverConf(withCA, p.serverKey), serverName: "tunnel.example.com", fp: fp,
			wantText: "tunnel.example.com"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			client, err := PinnedCAConfig(p.agent, tt.fp, tt.serverName)
			if err != nil {
				t.Fatal(err)
			}
			r := handshake(t, client, tt.server)
			if tt.wantErr == nil && tt.wantText == "" {
				noError(t, "client", r.clientErr)
				noError(t, "server", r.serverErr)
				// The server sees the enrolling key, under the fixed name.
				id, err := PeerIdentity(r.server)
				if err != nil {
					t.Fatal(err)
				}
				if id.Name != EnrollCommonName || id.Fingerprint != p.agent.Fingerprint() {
					t.Errorf("server saw %+v", id)
				}
				return
			}
			if r.clientErr == nil {
				t.Fatal("the client accepted the server")
			}
			if tt.wantErr != nil && !errors.Is(r.clientErr, tt.wantErr) {
				t.Errorf("client error = %v, want %v", r.clientErr, tt.wantErr)
			}
			if !strings.Contains(r.clientErr.Error(), tt.wantText) {
				t.Errorf("client error %q does not say %q", r.clientErr, tt.wantText)
			}
		})
	}

	t.Run("system roots without a fingerprint", func(t *testing.T) {
		client, err := PinnedCAConfig(p.agent, "", "localhost")
		if err != nil {
			t.Fatal(err)
		}
		if client.InsecureSkipVerify || client.VerifyConnection != nil || client.RootCAs != nil {
			t.Fatal("without a fingerprint the config must leave the check to crypto/tls and the system roots")
		}
		r := handshake(t, client, serverConf(withCA, p.serverKey))
		if r.clientErr == nil {
			t.Fatal("a private CA was trusted without being pinned")
		}
	})
	t.Run("bad arguments", func(t *testing.T) {
		if _, err := PinnedCAConfig(p.agent, "sha256:nope", "localhost"); !errors.Is(err, ErrMalformedFingerprint) {
			t.Errorf("bad fingerprint: %v", err)
		}
		if _, err := PinnedCAConfig(p.agent, fp, ""); err == nil {
			t.Error("no server name accepted")
		}
		if _, err := PinnedCAConfig(nil, fp, "localhost"); err == nil {
			t.Error("no key accepted")
		}
	})
}

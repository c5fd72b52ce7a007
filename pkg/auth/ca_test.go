package auth

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestNewCA(t *testing.T) {
	tests := []struct {
		name     string
		cn       string
		validity time.Duration
		wantErr  bool
	}{
		{name: "ok", cn: "tunnel CA", validity: 10 * 365 * 24 * time.Hour},
		{name: "empty common name", cn: " ", validity: time.Hour, wantErr: true},
		{name: "zero validity", cn: "tunnel CA", wantErr: true},
		{name: "negative validity", cn: "tunnel CA", validity: -time.Hour, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ca, err := NewCA(tt.cn, tt.validity)
			if tt.wantErr {
				if err == nil {
					t.Fatal("NewCA succeeded, want an error")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			c := ca.Cert
			if !c.IsCA || !c.BasicConstraintsValid || c.MaxPathLen != 0 || !c.MaxPathLenZero {
				t.Errorf("IsCA %v, BasicConstraintsValid %v, MaxPathLen %d, MaxPathLenZero %v; want a CA of path length zero",
					c.IsCA, c.BasicConstraintsValid, c.MaxPathLen, c.MaxPathLenZero)
			}
			if c.KeyUsage&x509.KeyUsageCertSign == 0 {
				t.Errorf("KeyUsage %b lacks CertSign", c.KeyUsage)
			}
			if c.Subject.CommonName != tt.cn {
				t.Errorf("CommonName = %q, want %q", c.Subject.CommonName, tt.cn)
			}
			pub, ok := c.PublicKey.(*ecdsa.PublicKey)
			if !ok || pub.Curve != elliptic.P256() {
				t.Errorf("public key %T, want ECDSA P-256", c.PublicKey)
			}
			if err := c.CheckSignatureFrom(c); err != nil {
				t.Errorf("not self-signed: %v", err)
			}
			if got := c.NotAfter.Sub(c.NotBefore); got < tt.validity || got > tt.validity+clockSkew+time.Minute {
				t.Errorf("valid for %v, want %v (plus clock skew allowance)", got, tt.validity)
			}
		})
	}
}

func TestLoadCA(t *testing.T) {
	ca, err := NewCA("tunnel CA", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	keyPEM, err := ca.KeyPEM()
	if err != nil {
		t.Fatal(err)
	}
	other, err := NewCA("other CA", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	otherKeyPEM, err := other.KeyPEM()
	if err != nil {
		t.Fatal(err)
	}
	serverCert, serverKey, err := ca.IssueServerCert([]string{"localhost"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	sec1, err := x509.MarshalECPrivateKey(ca.Key.(*ecdsa.PrivateKey))
	if err != nil {
		t.Fatal(err)
	}
	sec1PEM := pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: sec1})
	agent, err := NewAgentKey()
	if err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name      string
		cert, key []byte
		wantErr   bool
		wantErrIs error
	}{
		{name: "round trip", cert: ca.CertPEM(), key: keyPEM},
		{name: "SEC 1 key", cert: ca.CertPEM(), key: sec1PEM},
		{name: "key of another CA", cert: ca.CertPEM(), key: otherKeyPEM, wantErr: true},
		{name: "not a CA certificate", cert: serverCert, key: serverKey, wantErr: true},
		{name: "no certificate", cert: keyPEM, key: keyPEM, wantErr: true, wantErrIs: ErrNoCertificate},
		{name: "garbage key", cert: ca.CertPEM(), key: []byte("garbage"), wantErr: true, wantErrIs: ErrInvalidKey},
		{name: "certificate as key", cert: ca.CertPEM(), key: ca.CertPEM(), wantErr: true, wantErrIs: ErrInvalidKey},
		{name: "agent key", cert: ca.CertPEM(), key: agent.PEM(), wantErr: true},
		{name: "truncated key", cert: ca.CertPEM(), key: truncatedKeyPEM(t, keyPEM), wantErr: true, wantErrIs: ErrInvalidKey},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := LoadCA(tt.cert, tt.key)
			if tt.wantErr {
				if err == nil {
					t.Fatal("LoadCA succeeded, want an error")
				}
				if tt.wantErrIs != nil && !errors.Is(err, tt.wantErrIs) {
					t.Errorf("error %v, want %v", err, tt.wantErrIs)
				}
				if block, _ := pem.Decode(tt.key); block != nil {
					body := base64.StdEncoding.EncodeToString(block.Bytes)
					if strings.Contains(err.Error(), body[len(body)/2:len(body)/2+16]) {
						t.Errorf("error %q repeats the key", err)
					}
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !got.Cert.Equal(ca.Cert) {
				t.Error("certificate changed in a round trip")
			}
			if !bytes.Equal(got.CertPEM(), ca.CertPEM()) {
				t.Error("CertPEM changed in a round trip")
			}
			gotKey, err := got.KeyPEM()
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(gotKey, keyPEM) {
				t.Error("KeyPEM changed in a round trip")
			}
			// The loaded CA must still issue certificates the original verifies.
			cert, _, err := got.IssueServerCert([]string{"localhost"}, time.Hour)
			if err != nil {
				t.Fatal(err)
			}
			verifyServerCert(t, ca, cert, "localhost")
		})
	}
}

func truncatedKeyPEM(t *testing.T, keyPEM []byte) []byte {
	t.Helper()
	block, _ := pem.Decode(keyPEM)
	return pem.EncodeToMemory(&pem.Block{Type: block.Type, Bytes: block.Bytes[:len(block.Bytes)/2]})
}

// verifyServerCert checks that certPEM is a server certificate for host
// issued by ca.
func verifyServerCert(t *testing.T, ca *CA, certPEM []byte, host string) *x509.Certificate {
	t.Helper()
	cert, err := parseCertPEM(certPEM)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca.Cert)
	_, err = cert.Verify(x509.VerifyOptions{
		DNSName:   host,
		Roots:     pool,
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	})
	if err != nil {
		t.Errorf("verify for %q: %v", host, err)
	}
	return cert
}

func TestIssueServerCert(t *testing.T) {
	ca, err := NewCA("tunnel CA", 24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name     string
		hosts    []string
		validity time.Duration
		wantDNS  []string
		wantIPs  []string
		wantErr  bool
	}{
		{name: "defaults of init", hosts: []string{"localhost", "127.0.0.1"}, validity: time.Hour,
			wantDNS: []string{"localhost"}, wantIPs: []string{"127.0.0.1"}},
		{name: "names and IPv6", hosts: []string{"tunnel.example.com", "*.relay.example.com", "::1", "[2001:db8::1]"}, validity: time.Hour,
			wantDNS: []string{"tunnel.example.com", "*.relay.example.com"}, wantIPs: []string{"::1", "2001:db8::1"}},
		{name: "only an IP", hosts: []string{"10.1.2.3"}, validity: time.Hour, wantIPs: []string{"10.1.2.3"}},
		{name: "no hosts", hosts: nil, validity: time.Hour, wantErr: true},
		{name: "empty host", hosts: []string{"localhost", ""}, validity: time.Hour, wantErr: true},
		{name: "host with port", hosts: []string{"tunnel.example.com:7443"}, validity: time.Hour, wantErr: true},
		{name: "IP with port", hosts: []string{"127.0.0.1:7443"}, validity: time.Hour, wantErr: true},
		{name: "URL", hosts: []string{"https://tunnel.example.com/"}, validity: time.Hour, wantErr: true},
		{name: "zero validity", hosts: []string{"localhost"}, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			certPEM, keyPEM, err := ca.IssueServerCert(tt.hosts, tt.validity)
			if tt.wantErr {
				if err == nil {
					t.Fatal("IssueServerCert succeeded, want an error")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			for _, h := range tt.hosts {
				verifyServerCert(t, ca, certPEM, h)
			}
			cert, err := parseCertPEM(certPEM)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(cert.DNSNames, tt.wantDNS) {
				t.Errorf("DNSNames = %q, want %q", cert.DNSNames, tt.wantDNS)
			}
			var ips []string
			for _, ip := range cert.IPAddresses {
				ips = append(ips, ip.String())
			}
			if !slices.Equal(ips, tt.wantIPs) {
				t.Errorf("IPAddresses = %q, want %q", ips, tt.wantIPs)
			}
			if cert.IsCA {
				t.Error("server certificate is a CA")
			}
			if !slices.Equal(cert.ExtKeyUsage, []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}) {
				t.Errorf("ExtKeyUsage = %v, want ServerAuth only", cert.ExtKeyUsage)
			}
			if _, err := ServerConfig(certPEM, keyPEM); err != nil {
				t.Errorf("key does not fit certificate: %v", err)
			}
			if block, _ := pem.Decode(keyPEM); block == nil || block.Type != "PRIVATE KEY" {
				t.Error("key is not a PKCS#8 PEM block")
			}
		})
	}
}

func TestIssueServerCertNotBeyondCA(t *testing.T) {
	ca, err := NewCA("short CA", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	certPEM, _, err := ca.IssueServerCert([]string{"localhost"}, 365*24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	cert := verifyServerCert(t, ca, certPEM, "localhost")
	if !cert.NotAfter.Equal(ca.Cert.NotAfter) {
		t.Errorf("NotAfter = %v, want the CA's %v", cert.NotAfter, ca.Cert.NotAfter)
	}
}

func TestReadCertPool(t *testing.T) {
	ca1, err := NewCA("one", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	ca2, err := NewCA("two", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	key, err := ca1.KeyPEM()
	if err != nil {
		t.Fatal(err)
	}
	join := func(parts ...[]byte) []byte { return bytes.Join(parts, []byte("\n")) }
	corrupt := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: []byte("not DER")})

	tests := []struct {
		name      string
		in        []byte
		wantCAs   []*CA
		wantErr   bool
		wantErrIs error
	}{
		{name: "one", in: ca1.CertPEM(), wantCAs: []*CA{ca1}},
		{name: "two and a key", in: join(ca1.CertPEM(), key, ca2.CertPEM()), wantCAs: []*CA{ca1, ca2}},
		{name: "empty", in: nil, wantErr: true, wantErrIs: ErrNoCertificate},
		{name: "garbage", in: []byte("-----BEGIN nonsense"), wantErr: true, wantErrIs: ErrNoCertificate},
		{name: "key only", in: key, wantErr: true, wantErrIs: ErrNoCertificate},
		{name: "corrupt certificate", in: join(ca1.CertPEM(), corrupt), wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pool, err := ReadCertPool(tt.in)
			if tt.wantErr {
				if err == nil {
					t.Fatal("ReadCertPool succeeded, want an error")
				}
				if tt.wantErrIs != nil && !errors.Is(err, tt.wantErrIs) {
					t.Errorf("error %v, want %v", err, tt.wantErrIs)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			for _, ca := range tt.wantCAs {
				certPEM, _, err := ca.IssueServerCert([]string{"localhost"}, time.Hour)
				if err != nil {
					t.Fatal(err)
				}
				cert, err := parseCertPEM(certPEM)
				if err != nil {
					t.Fatal(err)
				}
				if _, err := cert.Verify(x509.VerifyOptions{DNSName: "localhost", Roots: pool}); err != nil {
					t.Errorf("certificate from %s does not verify: %v", ca.Cert.Subject.CommonName, err)
				}
			}
		})
	}
}

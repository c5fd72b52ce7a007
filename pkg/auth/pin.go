package auth

import (
	"bytes"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"strings"
)

// EnrollCommonName is the CommonName of the client certificate an agent
// presents while it enrolls. The server ignores it: the token names the
// agent.
const EnrollCommonName = "enrolling-agent"

// CertFingerprint returns the fingerprint of a certificate: [FingerprintPrefix]
// followed by the unpadded base64url encoding of the SHA-256 hash of its DER.
// It is how `tunnel-server agent add --token` shows the server's CA, and
// what `tunnel-agent enroll --ca-fingerprint` pins.
func CertFingerprint(cert *x509.Certificate) string {
	return formatFingerprint(sha256.Sum256(cert.Raw))
}

// formatFingerprint writes a SHA-256 sum as every fingerprint of this
// package is written: FingerprintPrefix and unpadded base64url.
func formatFingerprint(sum [sha256.Size]byte) string {
	return FingerprintPrefix + base64.RawURLEncoding.EncodeToString(sum[:])
}

// ParseCertFingerprint parses a certificate fingerprint given as
// [CertFingerprint] writes it ("sha256:" and base64url), or as the hex
// digits other tools print for a SHA-256 fingerprint, with or without
// colons, in either case, with or without a "sha256:" prefix (`openssl x509
// -fingerprint -sha256` prints "sha256 Fingerprint=AB:CD:...", whose part
// after '=' is accepted).
func ParseCertFingerprint(s string) ([sha256.Size]byte, error) {
	var sum [sha256.Size]byte
	s = strings.TrimSpace(s)
	if _, after, ok := strings.Cut(s, "="); ok {
		s = after
	}
	body := s
	if len(s) >= len(FingerprintPrefix) && strings.EqualFold(s[:len(FingerprintPrefix)], FingerprintPrefix) {
		body = s[len(FingerprintPrefix):]
	}
	if h := strings.ReplaceAll(body, ":", ""); len(h) == 2*sha256.Size {
		if b, err := hex.DecodeString(h); err == nil {
			copy(sum[:], b)
			return sum, nil
		}
	}
	if b, err := base64.RawURLEncoding.Strict().DecodeString(body); err == nil && len(b) == sha256.Size && body != s {
		copy(sum[:], b)
		return sum, nil
	}
	return sum, fmt.Errorf("%w: %q is neither sha256:BASE64URL (as tunnel-server prints it) nor 64 hex digits",
		ErrMalformedFingerprint, truncate(s, 100))
}

// PinnedCAConfig returns the TLS configuration of `tunnel-agent enroll`:
// TLS 1.3, a client certificate for key with [EnrollCommonName], and a
// server check that accepts the server only when its certificate chain
// holds a CA certificate whose [CertFingerprint] is caFingerprint and the
// leaf chains to that CA and is valid for serverName (a DNS name or an IP
// address; required). A server failing the check is refused with an error
// wrapping [ErrCAMismatch] that lists the fingerprints the server did
// present, or with the chain's verification error.
//
// An empty caFingerprint means the system roots decide, as with
// [ClientConfig] and no pinned CA.
func PinnedCAConfig(key *AgentKey, caFingerprint, serverName string) (*tls.Config, error) {
	if key == nil || key.secret == nil {
		return nil, fmt.Errorf("enroll TLS config: no agent key")
	}
	cert, err := selfSignedCert(EnrollCommonName, key.secret().priv)
	if err != nil {
		return nil, fmt.Errorf("enroll TLS config: %w", err)
	}
	conf := &tls.Config{
		MinVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{cert},
		ServerName:   serverName,
	}
	if caFingerprint == "" {
		return conf, nil
	}
	want, err := ParseCertFingerprint(caFingerprint)
	if err != nil {
		return nil, err
	}
	if serverName == "" {
		return nil, fmt.Errorf("enroll TLS config: a server name is needed to check the server's certificate")
	}
	// crypto/tls would check the chain against fixed roots; here the root
	// is the one certificate of the chain with the pinned fingerprint, so
	// the check is done by hand after the handshake has proved that the
	// server holds the leaf's key.
	conf.InsecureSkipVerify = true
	conf.VerifyConnection = func(cs tls.ConnectionState) error {
		return verifyPinnedChain(cs.PeerCertificates, want, serverName)
	}
	return conf, nil
}

// verifyPinnedChain checks certs, a chain as a server presented it, against
// the pinned CA fingerprint want.
func verifyPinnedChain(certs []*x509.Certificate, want [sha256.Size]byte, serverName string) error {
	if len(certs) == 0 {
		return fmt.Errorf("%w: the server presented no certificate", ErrCAMismatch)
	}
	ca := FindCA(certs, want)
	if ca == nil {
		var seen []string
		for _, c := range certs[1:] {
			if c.IsCA {
				seen = append(seen, fmt.Sprintf("%s (%q)", CertFingerprint(c), c.Subject.CommonName))
			}
		}
		wantFP := formatFingerprint(want)
		if len(seen) == 0 {
			return fmt.Errorf("%w: the server presented no CA certificate, only its own (%q); expected CA %s "+
				"(is the server older than enrollment, or is something else answering at that address?)",
				ErrCAMismatch, certs[0].Subject.CommonName, wantFP)
		}
		return fmt.Errorf("%w: the server presented CA %s; expected %s", ErrCAMismatch, strings.Join(seen, ", "), wantFP)
	}
	roots := x509.NewCertPool()
	roots.AddCert(ca)
	inter := x509.NewCertPool()
	for _, c := range certs[1:] {
		if c != ca {
			inter.AddCert(c)
		}
	}
	_, err := certs[0].Verify(x509.VerifyOptions{
		DNSName:       serverName,
		Roots:         roots,
		Intermediates: inter,
		KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	})
	if err != nil {
		return fmt.Errorf("the server's certificate does not verify against the pinned CA: %w", err)
	}
	return nil
}

// FindCA returns the CA certificate of certs whose SHA-256 hash is sum, or
// nil. The first certificate, the leaf, is never taken as the CA.
func FindCA(certs []*x509.Certificate, sum [sha256.Size]byte) *x509.Certificate {
	for _, c := range certs[min(1, len(certs)):] {
		if c.IsCA && c.BasicConstraintsValid && sha256.Sum256(c.Raw) == sum {
			return c
		}
	}
	return nil
}

// AppendCACert returns chainPEM, a server's certificate chain, with the
// first certificate of caPEM appended unless the chain already holds it.
// A server presents its CA this way so that `tunnel-agent enroll` can pin
// it by fingerprint; agents that already pin the CA are not affected.
func AppendCACert(chainPEM, caPEM []byte) ([]byte, error) {
	ca, err := parseCertPEM(caPEM)
	if err != nil {
		return nil, fmt.Errorf("CA certificate: %w", err)
	}
	chain, err := parseCertsPEM(chainPEM)
	if err != nil {
		return nil, fmt.Errorf("certificate chain: %w", err)
	}
	for _, c := range chain {
		if c.Equal(ca) {
			return chainPEM, nil
		}
	}
	out := bytes.Clone(chainPEM)
	if len(out) > 0 && out[len(out)-1] != '\n' {
		out = append(out, '\n')
	}
	return append(out, CertPEM(ca)...), nil
}

// CACertFingerprint returns the [CertFingerprint] of the first certificate
// in caPEM.
func CACertFingerprint(caPEM []byte) (string, error) {
	ca, err := parseCertPEM(caPEM)
	if err != nil {
		return "", fmt.Errorf("CA certificate: %w", err)
	}
	return CertFingerprint(ca), nil
}

// CertPEM encodes cert as a PEM block.
func CertPEM(cert *x509.Certificate) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: pemCertificate, Bytes: cert.Raw})
}

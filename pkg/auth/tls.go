package auth

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"time"
)

// agentCertValidity is how long an agent certificate claims to be valid. The
// server ignores the dates (see verifyAgentCert), so this only has to keep
// other tools that look at the certificate happy for as long as the agent runs.
const agentCertValidity = 10 * 365 * 24 * time.Hour

// ClientConfig returns the TLS configuration of the agent named name, for TLS
// over TCP and for QUIC alike. It allows TLS 1.3 only and presents a
// certificate made here, in memory, from key: self-signed, with name as its
// CommonName, valid from an hour ago for ten years. The certificate is never
// written anywhere.
//
// When caPEM is not empty, the server must present a certificate issued by
// one of the CAs in it (the pinned CA); otherwise the system roots decide.
// serverName is the name the server certificate must carry; when it is
// empty, crypto/tls and quic-go fill it from the dialled address. NextProtos
// is left for the caller.
func ClientConfig(name string, key *AgentKey, caPEM []byte, serverName string) (*tls.Config, error) {
	if !ValidName(name) {
		return nil, fmt.Errorf("agent TLS config: %q is not a valid agent name", truncate(name, MaxNameLen+1))
	}
	if key == nil || key.secret == nil {
		return nil, errors.New("agent TLS config: no agent key")
	}
	var roots *x509.CertPool
	if len(caPEM) > 0 {
		var err error
		if roots, err = ReadCertPool(caPEM); err != nil {
			return nil, fmt.Errorf("agent TLS config: pinned CA: %w", err)
		}
	}
	cert, err := selfSignedCert(name, key.secret().priv)
	if err != nil {
		return nil, fmt.Errorf("agent TLS config: %w", err)
	}
	return &tls.Config{
		MinVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{cert},
		RootCAs:      roots,
		ServerName:   serverName,
	}, nil
}

// ServerConfig returns the server's TLS configuration, for TLS over TCP and
// for QUIC alike, from its certificate (chain) and private key in PEM. It
// allows TLS 1.3 only and requires a client certificate.
//
// The handshake checks only that the client holds the key of the certificate
// it presents, and that the certificate can identify an agent: it parses, its
// CommonName is a [ValidName], and its key is Ed25519 or ECDSA. Whether that
// agent is registered, enabled and holds its registered key is left to
// [Verifier] after the handshake, so that a refusal can reach the agent as a
// message with a reason rather than as a bare TLS alert. Session tickets are
// disabled: every connection proves the key afresh, and QUIC 0-RTT data,
// which could be replayed, is never accepted.
//
// NextProtos is left for the caller.
func ServerConfig(certPEM, keyPEM []byte) (*tls.Config, error) {
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, fmt.Errorf("server TLS config: %w", err)
	}
	c := ServerTLSConfig()
	c.Certificates = []tls.Certificate{cert}
	return c, nil
}

// ServerTLSConfig is [ServerConfig] without a certificate, for a caller
// that provides one through GetCertificate (see [CertSource]).
func ServerTLSConfig() *tls.Config {
	return &tls.Config{
		MinVersion:             tls.VersionTLS13,
		ClientAuth:             tls.RequireAnyClientCert,
		VerifyPeerCertificate:  verifyAgentChain,
		SessionTicketsDisabled: true,
	}
}

// PeerIdentity returns the identity an agent proved in a completed
// server-side handshake whose configuration came from [ServerConfig]. It
// returns an error wrapping [ErrNoIdentity] when the handshake is not
// complete (as with QUIC 0.5-RTT, before the client's certificate has been
// checked) or the peer presented no usable certificate.
func PeerIdentity(cs tls.ConnectionState) (Identity, error) {
	if !cs.HandshakeComplete {
		return Identity{}, fmt.Errorf("%w: the TLS handshake is not complete", ErrNoIdentity)
	}
	if len(cs.PeerCertificates) == 0 {
		return Identity{}, ErrNoIdentity
	}
	return identityFromCert(cs.PeerCertificates[0])
}

// verifyAgentChain is the server's VerifyPeerCertificate. With
// tls.RequireAnyClientCert crypto/tls builds no chains and checks only that
// the client holds the leaf's key; the leaf alone identifies the agent, so any
// further certificates are ignored.
func verifyAgentChain(rawCerts [][]byte, _ [][]*x509.Certificate) error {
	if len(rawCerts) == 0 {
		return ErrNoIdentity
	}
	leaf, err := x509.ParseCertificate(rawCerts[0])
	if err != nil {
		return fmt.Errorf("%w: the client certificate does not parse", ErrNoIdentity)
	}
	_, err = identityFromCert(leaf)
	return err
}

// identityFromCert extracts an agent identity from its certificate.
//
// Neither the validity dates nor the self-signature are checked: the agent
// makes and signs the certificate itself, so they prove nothing the TLS
// handshake has not (possession of the key), and a clock that is off on
// either host must not lock an agent out.
func identityFromCert(cert *x509.Certificate) (Identity, error) {
	name := cert.Subject.CommonName
	if !ValidName(name) {
		return Identity{}, fmt.Errorf("%w: client certificate common name %q is not a valid agent name",
			ErrNoIdentity, truncate(name, MaxNameLen+1))
	}
	switch cert.PublicKey.(type) {
	case ed25519.PublicKey, *ecdsa.PublicKey:
	default:
		return Identity{}, fmt.Errorf("%w: client certificate of agent %q has %s, expected Ed25519 or ECDSA",
			ErrNoIdentity, name, keyTypeName(cert.PublicKey))
	}
	fp, err := Fingerprint(cert.PublicKey)
	if err != nil {
		return Identity{}, fmt.Errorf("%w: agent %q: %w", ErrNoIdentity, name, err)
	}
	return Identity{Name: name, Fingerprint: fp}, nil
}

// selfSignedCert makes an agent certificate for key with commonName as its
// subject. It does not check commonName, so tests can make bad certificates.
func selfSignedCert(commonName string, key ed25519.PrivateKey) (tls.Certificate, error) {
	serial, err := randomSerial()
	if err != nil {
		return tls.Certificate{}, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: commonName},
		NotBefore:             now.Add(-clockSkew),
		NotAfter:              now.Add(agentCertValidity),
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("create agent certificate: %w", err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("parse agent certificate: %w", err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, nil
}

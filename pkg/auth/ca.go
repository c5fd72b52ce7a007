package auth

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"strings"
	"time"
)

// pemCertificate is the PEM block type of an X.509 certificate.
const pemCertificate = "CERTIFICATE"

// clockSkew backdates the start of every certificate this package makes, so
// that a peer whose clock runs a little behind does not reject a certificate
// made a moment ago.
const clockSkew = time.Hour

// CA is a private certificate authority: the one tunnel-server keeps to sign
// its own server certificate, and whose certificate agents pin.
type CA struct {
	// Cert is the CA certificate.
	Cert *x509.Certificate
	// Key is the CA's private key; its public half is Cert's public key.
	Key crypto.Signer
}

// NewCA creates a CA with a new ECDSA P-256 key and a self-signed certificate
// for commonName, valid from now (backdated by an hour for clock skew) for
// validity. The CA signs only end-entity certificates (path length zero).
func NewCA(commonName string, validity time.Duration) (*CA, error) {
	if strings.TrimSpace(commonName) == "" {
		return nil, errors.New("new CA: common name is empty")
	}
	if validity <= 0 {
		return nil, fmt.Errorf("new CA: validity %v is not positive", validity)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("new CA: generate key: %w", err)
	}
	serial, err := randomSerial()
	if err != nil {
		return nil, fmt.Errorf("new CA: %w", err)
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: commonName},
		NotBefore:             now.Add(-clockSkew),
		NotAfter:              now.Add(validity),
		IsCA:                  true,
		BasicConstraintsValid: true,
		MaxPathLen:            0,
		MaxPathLenZero:        true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, fmt.Errorf("new CA: create certificate: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("new CA: parse certificate: %w", err)
	}
	return &CA{Cert: cert, Key: key}, nil
}

// LoadCA loads a CA from its certificate and private key in PEM, as written
// by [CA.CertPEM] and [CA.KeyPEM]. The key may be PKCS#8 ("PRIVATE KEY") or,
// for CAs made with other tools, SEC 1 ("EC PRIVATE KEY"). It checks that the
// certificate is a CA certificate and that the key belongs to it.
func LoadCA(certPEM, keyPEM []byte) (*CA, error) {
	cert, err := parseCertPEM(certPEM)
	if err != nil {
		return nil, fmt.Errorf("load CA certificate: %w", err)
	}
	if !cert.BasicConstraintsValid || !cert.IsCA {
		return nil, errors.New("load CA: the certificate is not a CA certificate")
	}
	if cert.KeyUsage != 0 && cert.KeyUsage&x509.KeyUsageCertSign == 0 {
		return nil, errors.New("load CA: the certificate may not sign certificates (no certSign key usage)")
	}
	key, err := parseSignerPEM(keyPEM)
	if err != nil {
		return nil, fmt.Errorf("load CA key: %w", err)
	}
	pub, ok := key.Public().(interface{ Equal(crypto.PublicKey) bool })
	if !ok || !pub.Equal(cert.PublicKey) {
		return nil, errors.New("load CA: the private key does not belong to the certificate")
	}
	return &CA{Cert: cert, Key: key}, nil
}

// CertPEM returns the CA certificate in PEM: what agents pin.
func (ca *CA) CertPEM() []byte {
	return pem.EncodeToMemory(&pem.Block{Type: pemCertificate, Bytes: ca.Cert.Raw})
}

// KeyPEM returns the CA private key as a PKCS#8 PEM block ("PRIVATE KEY").
// The result is a secret: write it only to a file readable by its owner alone.
func (ca *CA) KeyPEM() ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(ca.Key)
	if err != nil {
		return nil, fmt.Errorf("encode CA key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: pemPrivateKey, Bytes: der}), nil
}

// IssueServerCert creates a server certificate signed by the CA, with a new
// ECDSA P-256 key, for hosts: entries that parse as IP addresses (IPv6 may be
// bracketed) become IP SANs, the others DNS SANs. It returns the certificate
// and its PKCS#8 key in PEM. The certificate is valid from now (backdated by
// an hour for clock skew) for validity, but not beyond the CA's own expiry.
//
// hosts must not be empty, and no entry may be empty or carry a port.
func (ca *CA) IssueServerCert(hosts []string, validity time.Duration) (certPEM, keyPEM []byte, err error) {
	if len(hosts) == 0 {
		return nil, nil, errors.New("issue server certificate: no host names or addresses given")
	}
	if validity <= 0 {
		return nil, nil, fmt.Errorf("issue server certificate: validity %v is not positive", validity)
	}
	var dnsNames []string
	var ips []net.IP
	for _, h := range hosts {
		h = strings.TrimSpace(h)
		if ip := net.ParseIP(strings.TrimSuffix(strings.TrimPrefix(h, "["), "]")); ip != nil {
			ips = append(ips, ip)
			continue
		}
		switch {
		case h == "":
			return nil, nil, errors.New("issue server certificate: empty host name")
		case strings.Contains(h, ":"):
			return nil, nil, fmt.Errorf("issue server certificate: host %q is not a name or an IP address (give it without a port)", h)
		case strings.ContainsAny(h, " \t/@"):
			return nil, nil, fmt.Errorf("issue server certificate: host %q is not a DNS name", h)
		}
		dnsNames = append(dnsNames, h)
	}

	now := time.Now()
	notAfter := now.Add(validity)
	if notAfter.After(ca.Cert.NotAfter) {
		notAfter = ca.Cert.NotAfter
	}
	if !notAfter.After(now) {
		return nil, nil, fmt.Errorf("issue server certificate: the CA expired on %s", ca.Cert.NotAfter.UTC().Format(time.RFC3339))
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("issue server certificate: generate key: %w", err)
	}
	serial, err := randomSerial()
	if err != nil {
		return nil, nil, fmt.Errorf("issue server certificate: %w", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: strings.TrimSpace(hosts[0])},
		NotBefore:             now.Add(-clockSkew),
		NotAfter:              notAfter,
		DNSNames:              dnsNames,
		IPAddresses:           ips,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, key.Public(), ca.Key)
	if err != nil {
		return nil, nil, fmt.Errorf("issue server certificate: %w", err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, nil, fmt.Errorf("issue server certificate: encode key: %w", err)
	}
	certPEM = pem.EncodeToMemory(&pem.Block{Type: pemCertificate, Bytes: der})
	keyPEM = pem.EncodeToMemory(&pem.Block{Type: pemPrivateKey, Bytes: keyDER})
	return certPEM, keyPEM, nil
}

// ReadCertPool returns a pool of the certificates in pemBytes, such as a
// pinned CA. Blocks of other types are skipped; a certificate that does not
// parse is an error, and so is finding none (wrapping [ErrNoCertificate]).
func ReadCertPool(pemBytes []byte) (*x509.CertPool, error) {
	certs, err := parseCertsPEM(pemBytes)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	for _, c := range certs {
		pool.AddCert(c)
	}
	return pool, nil
}

// parseCertsPEM parses every CERTIFICATE block in pemBytes.
func parseCertsPEM(pemBytes []byte) ([]*x509.Certificate, error) {
	var certs []*x509.Certificate
	for rest := pemBytes; ; {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		if block.Type != pemCertificate {
			continue
		}
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("certificate %d in PEM data: %w", len(certs)+1, err)
		}
		certs = append(certs, c)
	}
	if len(certs) == 0 {
		return nil, ErrNoCertificate
	}
	return certs, nil
}

// parseCertPEM parses the first certificate in pemBytes.
func parseCertPEM(pemBytes []byte) (*x509.Certificate, error) {
	certs, err := parseCertsPEM(pemBytes)
	if err != nil {
		return nil, err
	}
	return certs[0], nil
}

// parseSignerPEM parses a PKCS#8 or SEC 1 private key. Like ParseAgentKey it
// does not wrap the parser's errors, which would describe secret input.
func parseSignerPEM(pemBytes []byte) (crypto.Signer, error) {
	block, _ := pem.Decode(pemBytes)
	if block == nil {
		return nil, fmt.Errorf("%w: not PEM encoded (expected a %q block)", ErrInvalidKey, pemPrivateKey)
	}
	var key any
	var err error
	switch block.Type {
	case pemPrivateKey:
		key, err = x509.ParsePKCS8PrivateKey(block.Bytes)
	case "EC PRIVATE KEY":
		key, err = x509.ParseECPrivateKey(block.Bytes)
	default:
		return nil, fmt.Errorf("%w: PEM block is %s, expected %q", ErrInvalidKey, describeBlockType(block.Type), pemPrivateKey)
	}
	if err != nil {
		return nil, fmt.Errorf("%w: malformed %s block", ErrInvalidKey, block.Type)
	}
	signer, ok := key.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("%w: %s cannot sign", ErrInvalidKey, keyTypeName(key))
	}
	return signer, nil
}

// randomSerial returns a random positive 128-bit certificate serial number,
// as RFC 5280 recommends (unique per issuer, unpredictable).
func randomSerial() (*big.Int, error) {
	limit := new(big.Int).Lsh(big.NewInt(1), 128)
	n, err := rand.Int(rand.Reader, limit)
	if err != nil {
		return nil, fmt.Errorf("generate serial number: %w", err)
	}
	return n.Add(n, big.NewInt(1)), nil // never zero
}

package auth

import (
	"crypto/tls"
	"errors"
	"sync/atomic"
)

// CertSource holds a server certificate that can be replaced while
// listeners use it, as when a renewed certificate is loaded on SIGHUP:
// handshakes after Store present the new one, connections already made keep
// theirs. Install it with [CertSource.Install]. The zero value holds no
// certificate.
type CertSource struct {
	cur atomic.Pointer[tls.Certificate]
}

// Store makes cert current.
func (s *CertSource) Store(cert *tls.Certificate) { s.cur.Store(cert) }

// GetCertificate is a tls.Config GetCertificate that returns the current
// certificate.
func (s *CertSource) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	c := s.cur.Load()
	if c == nil {
		return nil, errors.New("no certificate loaded")
	}
	return c, nil
}

// Install makes c present the source's current certificate in every
// handshake, in place of c.Certificates.
func (s *CertSource) Install(c *tls.Config) {
	c.Certificates = nil
	c.GetCertificate = s.GetCertificate
}

package auth

import (
	"crypto/tls"
	"testing"
	"time"
)

func TestCertSource(t *testing.T) {
	var src CertSource
	conf := &tls.Config{Certificates: []tls.Certificate{{}}}
	src.Install(conf)
	if conf.Certificates != nil || conf.GetCertificate == nil {
		t.Fatal("Install left the static certificates or set no GetCertificate")
	}
	if _, err := conf.GetCertificate(&tls.ClientHelloInfo{}); err == nil {
		t.Fatal("an empty source gave a certificate")
	}
	ca, err := NewCA("test CA", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	var serials []string
	for range 2 {
		certPEM, keyPEM, err := ca.IssueServerCert([]string{"localhost"}, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		cert, err := tls.X509KeyPair(certPEM, keyPEM)
		if err != nil {
			t.Fatal(err)
		}
		src.Store(&cert)
		got, err := conf.GetCertificate(&tls.ClientHelloInfo{})
		if err != nil || got.Leaf.SerialNumber.Cmp(cert.Leaf.SerialNumber) != 0 {
			t.Fatalf("GetCertificate after Store = %v, %v; want the stored certificate", got, err)
		}
		serials = append(serials, got.Leaf.SerialNumber.String())
	}
	if serials[0] == serials[1] {
		t.Error("the second Store did not replace the first certificate")
	}
}

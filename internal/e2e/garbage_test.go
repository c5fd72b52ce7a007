package e2e

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/binary"
	"errors"
	"io"
	"math/big"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/tunnelrelay/tunnel/internal/testutil/leakcheck"
	"github.com/tunnelrelay/tunnel/internal/testutil/tcptest"
	"github.com/tunnelrelay/tunnel/pkg/auth"
	"github.com/tunnelrelay/tunnel/pkg/mux"
)

// TestGarbageOnAgentPort: whatever a stranger sends to the agent port gets
// it nothing and holds nothing for long. Over TCP, junk, silence and
// certificate-less TLS are closed within the handshake timeout. UDP has no
// connection to close, so over QUIC the same promise reads: junk datagrams
// are dropped, and a QUIC handshake that stops halfway is given up within
// the handshake timeout. Over both, a client whose certificate is missing
// or unusable is refused in the handshake, no goroutine is left behind, and
// an agent connected over the same transport works on undisturbed.
func TestGarbageOnAgentPort(t *testing.T) {
	forEachTransport(t, func(t *testing.T, tr transport) {
		opt := testServerOptions()
		e := newEnv(t, tr, opt)
		e.agent("a1", "echo="+tcptest.Echo(t))
		e.online("a1")
		route := e.route("r", "a1", "echo")
		exchange := func(t *testing.T) {
			t.Helper()
			c, err := net.Dial("tcp", route)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(10 * time.Second))
			if err := checksumExchange(c, 100_000, 7); err != nil {
				t.Fatal(err)
			}
		}
		// Warm up, so that what an idle connected agent holds exists
		// before the baseline.
		exchange(t)
		leakcheck.Check(t)
		handshake := opt.HandshakeTimeout + time.Second

		if tr.quic() {
			udpJunk(t, e, handshake)
		} else {
			tcpJunk(t, e, handshake)
		}
		for _, tc := range badClientCerts(t, e) {
			t.Run(tc.name, func(t *testing.T) {
				expectHandshakeRefused(t, tr, e.srv.Addr, tc.conf, handshake)
			})
		}
		t.Run("the connected agent is undisturbed", func(t *testing.T) {
			exchange(t)
			if strings.Contains(e.log.String(), "agent disconnected") {
				t.Error("the agent lost its connection")
			}
		})
	})
}

// tcpJunk sends what is not TLS to the agent port over TCP.
func tcpJunk(t *testing.T, e *env, handshake time.Duration) {
	for _, tc := range []struct {
		name string
		send func(c net.Conn)
	}{
		{"garbage", func(c net.Conn) { c.Write([]byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n")) }},
		{"nothing", func(c net.Conn) {}},
		{"zeros", func(c net.Conn) { c.Write(make([]byte, 64<<10)) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := net.Dial("tcp", e.srv.Addr)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			tc.send(c)
			expectClosed(t, c, handshake)
		})
	}
}

// udpJunk sends what is not QUIC, or QUIC that goes nowhere, to the agent
// port over UDP.
func udpJunk(t *testing.T, e *env, handshake time.Duration) {
	t.Run("junk datagrams", func(t *testing.T) {
		c, err := net.Dial("udp", e.srv.Addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		junk := func(n int, first byte) []byte {
			b := make([]byte, n)
			io.ReadFull(&patternReader{n: int64(n), seed: first}, b)
			b[0] = first
			return b
		}
		// Looks like a QUIC version 1 Initial; what follows is junk.
		initial := junk(1200, 0xc3)
		binary.BigEndian.PutUint32(initial[1:], 1)
		for _, d := range [][]byte{
			[]byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"),
			{0},
			make([]byte, 1200),
			initial,
			junk(1200, 0x40), // a short header for a connection that does not exist
			junk(60_000, 0xff),
		} {
			for range 20 {
				c.Write(d) // errors are lost datagrams, which is the point
			}
		}
	})
	t.Run("handshake stops halfway", func(t *testing.T) {
		pool, _ := auth.ReadCertPool(e.srv.CAPEM)
		initial := quicInitial(t, &tls.Config{RootCAs: pool, ServerName: "127.0.0.1"})
		c, err := net.Dial("udp", e.srv.Addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		start := time.Now()
		if _, err := c.Write(initial); err != nil {
			t.Fatal(err)
		}
		// The server answers, retransmits for a while, then gives up; the
		// client never says another word.
		var (
			answers int
			last    time.Duration
		)
		buf := make([]byte, 64<<10)
		for time.Since(start) < 2*handshake {
			c.SetReadDeadline(time.Now().Add(handshake / 2))
			if _, err := c.Read(buf); err != nil {
				var ne net.Error
				if errors.As(err, &ne) && ne.Timeout() {
					break
				}
				t.Fatal(err)
			}
			answers++
			last = time.Since(start)
		}
		if answers == 0 {
			t.Fatal("the server did not answer a QUIC Initial")
		}
		if last > handshake {
			t.Fatalf("the server still sent datagrams %v after a handshake stopped", last.Round(time.Millisecond))
		}
		t.Logf("%d datagrams, the last after %v", answers, last.Round(time.Millisecond))
	})
}

// quicInitial returns the first datagram of a QUIC handshake for the tunnel,
// an Initial packet carrying the ClientHello, from a client that dials a
// socket that never answers.
func quicInitial(t *testing.T, conf *tls.Config) []byte {
	t.Helper()
	pc, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	ctx, cancel := context.WithCancel(context.Background())
	dialed := make(chan struct{})
	go func() {
		defer close(dialed)
		if sess, err := mux.DialQUIC(ctx, pc.LocalAddr().String(), conf, &mux.Config{HandshakeTimeout: 10 * time.Second}); err == nil {
			sess.Close()
		}
	}()
	defer func() { cancel(); <-dialed }()
	pc.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 64<<10)
	n, err := pc.Read(buf)
	if err != nil {
		t.Fatal(err)
	}
	return buf[:n]
}

// badClientCerts are client TLS configs that trust the server but offer
// no usable agent certificate.
func badClientCerts(t *testing.T, e *env) []struct {
	name string
	conf *tls.Config
} {
	t.Helper()
	pool, err := auth.ReadCertPool(e.srv.CAPEM)
	if err != nil {
		t.Fatal(err)
	}
	// The name of the connected agent, but a key type agents never have.
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "a1"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	rsaCert := tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
	return []struct {
		name string
		conf *tls.Config
	}{
		{"no client certificate", &tls.Config{RootCAs: pool, ServerName: "127.0.0.1"}},
		{"client certificate with an RSA key", &tls.Config{RootCAs: pool, ServerName: "127.0.0.1", Certificates: []tls.Certificate{rsaCert}}},
	}
}

// expectHandshakeRefused dials the agent port over tr with conf and expects
// the server to refuse the handshake within d: the dial fails, or the
// session it returns ends before anything else happens.
func expectHandshakeRefused(t *testing.T, tr transport, addr string, conf *tls.Config, d time.Duration) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	start := time.Now()
	sess, err := tr.dial(ctx, addr, conf, &mux.Config{HandshakeTimeout: d})
	if err == nil {
		defer sess.Close()
		// TLS 1.3: the client's side of the handshake can finish before
		// the server has checked the client's certificate; the client
		// learns of the refusal next.
		select {
		case <-sess.Done():
		case <-ctx.Done():
			t.Fatalf("the server kept the connection open for %v", d)
		}
	}
	t.Logf("refused after %v (%v)", time.Since(start).Round(time.Millisecond), err)
}

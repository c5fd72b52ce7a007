package agent

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/binary"
	"encoding/pem"
	"errors"
	"io"
	"math/big"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pires/go-proxyproto"

	"github.com/tunnelrelay/tunnel/internal/logging"
	"github.com/tunnelrelay/tunnel/internal/proto"
	"github.com/tunnelrelay/tunnel/internal/testutil/leakcheck"
	"github.com/tunnelrelay/tunnel/pkg/dbproxy"
)

// testCA is a throwaway certificate authority.
type testCA struct {
	pem  string
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
}

func newTestCA(t *testing.T, name string) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: name},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return &testCA{pem: string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})), cert: cert, key: key}
}

// issue returns a server certificate for names (host names or IP
// addresses) signed by ca.
func (ca *testCA) issue(t *testing.T, names ...string) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2),
		Subject:      pkix.Name{CommonName: names[0]},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	for _, n := range names {
		if ip := net.ParseIP(n); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, n)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// fakeTarget runs handle for every connection to a new listener on addr
// ("127.0.0.1:0", "[::1]:0") and returns its address. Each connection has
// five seconds and is closed when handle returns; everything is waited for
// when the test ends.
func fakeTarget(t *testing.T, addr string, handle func(net.Conn)) string {
	t.Helper()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Go(func() {
				defer c.Close()
				c.SetDeadline(time.Now().Add(5 * time.Second))
				handle(c)
			})
		}
	})
	return ln.Addr().String()
}

// readSSLRequest reads what a PostgreSQL server reads first and reports
// whether it was an SSLRequest.
func readSSLRequest(r io.Reader) bool {
	var b [8]byte
	if _, err := io.ReadFull(r, b[:]); err != nil {
		return false
	}
	return binary.BigEndian.Uint32(b[:4]) == 8 && binary.BigEndian.Uint32(b[4:]) == 80877103
}

// tlsEcho answers an SSLRequest with 'S', shakes hands with cfg, sends the
// ALPN protocol it agreed on and echoes what follows.
func tlsEcho(cfg *tls.Config) func(net.Conn) {
	return func(c net.Conn) {
		if !readSSLRequest(c) {
			return
		}
		c.Write([]byte("S"))
		tc := tls.Server(c, cfg)
		if err := tc.Handshake(); err != nil {
			return
		}
		tc.Write([]byte(tc.ConnectionState().NegotiatedProtocol + "\n"))
		io.Copy(tc, tc)
	}
}

// answer answers an SSLRequest with reply and hangs up.
func answer(reply string) func(net.Conn) {
	return func(c net.Conn) {
		if readSSLRequest(c) {
			c.Write([]byte(reply))
			io.Copy(io.Discard, c) // until the agent gives up
		}
	}
}

func dialTarget(t *testing.T, tg Target, client string, timeout time.Duration) (net.Conn, error) {
	t.Helper()
	if tg.Name == "" {
		tg.Name = "db"
	}
	d, err := newDialer(tg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), timeout)
	defer cancel()
	return d.dial(ctx, client)
}

// cancelRequest is a PostgreSQL CancelRequest for backend 42, key 7.
var cancelRequest = []byte{0, 0, 0, 16, 0x04, 0xd2, 0x16, 0x2e, 0, 0, 0, 42, 0, 0, 0, 7}

func TestDialTLS(t *testing.T) {
	leakcheck.Check(t)
	ca := newTestCA(t, "db CA")
	other := newTestCA(t, "another CA")
	server := func(cert tls.Certificate) *tls.Config {
		return &tls.Config{Certificates: []tls.Certificate{cert}, NextProtos: []string{dbproxy.PostgresALPN}}
	}
	good := server(ca.issue(t, "127.0.0.1", "localhost"))
	wrongName := server(ca.issue(t, "db.internal"))
	strangerCA := server(other.issue(t, "127.0.0.1"))
	oldTLS := server(good.Certificates[0])
	oldTLS.MaxVersion = tls.VersionTLS11

	for _, tc := range []struct {
		name    string
		handle  func(net.Conn)
		tls     string
		ca      string
		srvName string
		want    string // the reason sent to the server; "" for success
	}{
		{"verify-full", tlsEcho(good), TLSVerifyFull, ca.pem, "", ""},
		{"verify-full by DNS name", tlsEcho(good), TLSVerifyFull, ca.pem, "localhost", ""},
		{"verify-ca ignores the name", tlsEcho(wrongName), TLSVerifyCA, ca.pem, "", ""},
		{"require trusts anything", tlsEcho(strangerCA), TLSRequire, "", "", ""},
		{"verify-full wrong name", tlsEcho(wrongName), TLSVerifyFull, ca.pem, "",
			`target "db" failed the TLS handshake: certificate name mismatch`},
		{"verify-full wrong tls_server_name", tlsEcho(good), TLSVerifyFull, ca.pem, "db.internal",
			`target "db" failed the TLS handshake: certificate name mismatch`},
		{"verify-full wrong CA", tlsEcho(strangerCA), TLSVerifyFull, ca.pem, "",
			`target "db" failed the TLS handshake: certificate signed by unknown authority`},
		{"verify-full system roots", tlsEcho(good), TLSVerifyFull, "", "",
			`target "db" failed the TLS handshake: certificate signed by unknown authority`},
		{"verify-ca wrong CA", tlsEcho(strangerCA), TLSVerifyCA, ca.pem, "",
			`target "db" failed the TLS handshake: certificate signed by unknown authority`},
		{"answers N", answer("N"), TLSRequire, "", "", `target "db" does not accept TLS (answered N to SSLRequest)`},
		{"answers E", answer("EFATAL unsupported frontend protocol"), TLSRequire, "", "",
			`target "db" does not accept TLS (answered E to SSLRequest)`},
		{"answers nonsense", answer("H"), TLSRequire, "", "",
			`target "db" does not answer SSLRequest as PostgreSQL does (sent 'H')`},
		{"hangs up", func(c net.Conn) { readSSLRequest(c) }, TLSRequire, "", "",
			`target "db" does not accept TLS (closed the connection after SSLRequest)`},
		{"data before the handshake", answer("Sinjected"), TLSRequire, "", "",
			`target "db" sent unencrypted data before the TLS handshake (refused, see CVE-2021-23222)`},
		{"S but no TLS", func(c net.Conn) {
			if readSSLRequest(c) {
				c.Write([]byte("S"))
				var hello [5]byte
				io.ReadFull(c, hello[:])
				c.Write([]byte("HTTP/1.1 400 Bad Request\r\n\r\n"))
			}
		}, TLSRequire, "", "", `target "db" failed the TLS handshake: the database answered S but does not speak TLS`},
		{"TLS 1.1 only", tlsEcho(oldTLS), TLSRequire, "", "",
			`target "db" failed the TLS handshake: the database sent tls: protocol version not supported`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			addr := fakeTarget(t, "127.0.0.1:0", tc.handle)
			c, err := dialTarget(t, Target{Address: addr, TLS: tc.tls, TLSCA: tc.ca, TLSServerName: tc.srvName}, "", 5*time.Second)
			if tc.want != "" {
				if err == nil {
					c.Close()
					t.Fatal("dial succeeded")
				}
				got := describeDialErr("db", err, 5*time.Second)
				if got != tc.want {
					t.Fatalf("reason %q, want %q (error: %v)", got, tc.want, err)
				}
				if strings.Contains(got, "127.0.0.1") || strings.Contains(got, "db.internal") {
					t.Fatalf("reason %q names an address", got)
				}
				return
			}
			if err != nil {
				t.Fatalf("dial: %v", err)
			}
			defer c.Close()
			tlsConn, ok := c.(*tls.Conn)
			if !ok {
				t.Fatalf("got a %T, want a *tls.Conn", c)
			}
			if v := tlsConn.ConnectionState().Version; v < tls.VersionTLS12 {
				t.Fatalf("TLS version %x", v)
			}
			c.SetDeadline(time.Now().Add(5 * time.Second))
			br := bufio.NewReader(c)
			alpn, err := br.ReadString('\n')
			if err != nil {
				t.Fatal(err)
			}
			if alpn != dbproxy.PostgresALPN+"\n" {
				t.Errorf("the server agreed on ALPN %q, want %q", alpn, dbproxy.PostgresALPN)
			}
			// The first bytes of a session may be a CancelRequest: they
			// go through as they are.
			if _, err := c.Write(cancelRequest); err != nil {
				t.Fatal(err)
			}
			got := make([]byte, len(cancelRequest))
			if _, err := io.ReadFull(br, got); err != nil || !bytes.Equal(got, cancelRequest) {
				t.Fatalf("echo %x, %v", got, err)
			}
		})
	}
}

// proxyRead parses a PROXY header with go-proxyproto and reports it on got,
// then hands the rest of the connection to next, if any.
func proxyRead(got chan<- *proxyproto.Header, next func(io.Reader, net.Conn)) func(net.Conn) {
	return func(c net.Conn) {
		br := bufio.NewReader(c)
		h, err := proxyproto.Read(br)
		if err != nil {
			got <- nil
			return
		}
		got <- h
		if next != nil {
			next(br, c)
		}
	}
}

func TestDialProxyHeader(t *testing.T) {
	leakcheck.Check(t)
	v6 := true
	if ln, err := net.Listen("tcp", "[::1]:0"); err != nil {
		v6 = false
	} else {
		ln.Close()
	}
	for _, tc := range []struct {
		name, listen, client string
		want                 proxyproto.AddressFamilyAndProtocol // UNSPEC: LOCAL
		src                  string                              // the source the target learns
		dstIP                string
	}{
		{"v4", "127.0.0.1:0", "192.0.2.1:5000", proxyproto.TCPv4, "192.0.2.1:5000", "127.0.0.1"},
		{"v4-mapped client", "127.0.0.1:0", "[::ffff:192.0.2.1]:5000", proxyproto.TCPv4, "192.0.2.1:5000", "127.0.0.1"},
		{"v6", "[::1]:0", "[2001:db8::1]:5000", proxyproto.TCPv6, "[2001:db8::1]:5000", "::1"},
		{"v6 client, v4 target", "127.0.0.1:0", "[2001:db8::1]:5000", proxyproto.TCPv6, "[2001:db8::1]:5000", "::ffff:127.0.0.1"},
		{"v4 client, v6 target", "[::1]:0", "192.0.2.1:5000", proxyproto.TCPv6, "[::ffff:192.0.2.1]:5000", "::1"},
		{"v6 client with a zone", "[::1]:0", "[fe80::1%eth0]:5000", proxyproto.TCPv6, "[fe80::1]:5000", "::1"},
		{"empty client", "127.0.0.1:0", "", proxyproto.UNSPEC, "", ""},
		{"unparsable client", "127.0.0.1:0", "somewhere", proxyproto.UNSPEC, "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if strings.HasPrefix(tc.listen, "[") && !v6 {
				t.Skip("no IPv6 loopback here")
			}
			got := make(chan *proxyproto.Header, 1)
			addr := fakeTarget(t, tc.listen, proxyRead(got, func(r io.Reader, c net.Conn) { io.Copy(c, r) }))
			c, err := dialTarget(t, Target{Address: addr, ProxyProtocol: true}, tc.client, 5*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			var h *proxyproto.Header
			select {
			case h = <-got:
			case <-time.After(5 * time.Second):
				t.Fatal("no header within 5s")
			}
			if h == nil {
				t.Fatal("the target could not parse the header")
			}
			if h.Version != 2 {
				t.Errorf("version %d", h.Version)
			}
			if tc.want == proxyproto.UNSPEC {
				if h.Command != proxyproto.LOCAL || h.TransportProtocol != proxyproto.UNSPEC {
					t.Fatalf("command %v family %v, want LOCAL UNSPEC", h.Command, h.TransportProtocol)
				}
			} else {
				src, dst, ok := h.TCPAddrs()
				if h.Command != proxyproto.PROXY || h.TransportProtocol != tc.want || !ok {
					t.Fatalf("command %v family %v, want PROXY %v", h.Command, h.TransportProtocol, tc.want)
				}
				// netip keeps a v4-mapped address as it came (net.IP
				// would print it as IPv4).
				if got := src.AddrPort().String(); got != tc.src {
					t.Errorf("source %v, want %v", got, tc.src)
				}
				_, port, _ := net.SplitHostPort(addr)
				if got, want := dst.AddrPort().String(), net.JoinHostPort(tc.dstIP, port); got != want {
					t.Errorf("destination %v, want %v", dst, want)
				}
			}
			// What the session sends comes after the header, unchanged.
			c.SetDeadline(time.Now().Add(5 * time.Second))
			if _, err := c.Write(cancelRequest); err != nil {
				t.Fatal(err)
			}
			echo := make([]byte, len(cancelRequest))
			if _, err := io.ReadFull(c, echo); err != nil || !bytes.Equal(echo, cancelRequest) {
				t.Fatalf("echo %x, %v", echo, err)
			}
		})
	}
}

// TestDialProxyThenTLS: with both options, the PROXY header comes first,
// then SSLRequest, and nothing else before the 'S'.
func TestDialProxyThenTLS(t *testing.T) {
	ca := newTestCA(t, "db CA")
	cfg := &tls.Config{Certificates: []tls.Certificate{ca.issue(t, "127.0.0.1")}}
	got := make(chan *proxyproto.Header, 1)
	problem := make(chan string, 1)
	addr := fakeTarget(t, "127.0.0.1:0", proxyRead(got, func(r io.Reader, c net.Conn) {
		if !readSSLRequest(r) {
			problem <- "no SSLRequest after the header"
			return
		}
		if n := r.(*bufio.Reader).Buffered(); n > 0 {
			problem <- "bytes after SSLRequest before the answer"
			return
		}
		problem <- ""
		tlsEcho(cfg)(&replay{Conn: c, pending: sslRequest})
	}))
	c, err := dialTarget(t, Target{Address: addr, ProxyProtocol: true, TLS: TLSVerifyFull, TLSCA: ca.pem}, "192.0.2.1:5000", 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if h := <-got; h == nil || h.Command != proxyproto.PROXY {
		t.Fatalf("header %+v", h)
	}
	if p := <-problem; p != "" {
		t.Fatal(p)
	}
	if _, ok := c.(*tls.Conn); !ok {
		t.Fatalf("got a %T, want a *tls.Conn", c)
	}
}

// replay is a net.Conn whose reads start with pending.
type replay struct {
	net.Conn
	pending []byte
}

func (r *replay) Read(p []byte) (int, error) {
	if len(r.pending) > 0 {
		n := copy(p, r.pending)
		r.pending = r.pending[n:]
		return n, nil
	}
	return r.Conn.Read(p)
}

// TestDialTimeout: every step after the connect stays within the dial
// timeout, and the reason says which step hung.
func TestDialTimeout(t *testing.T) {
	leakcheck.Check(t)
	silent := func(c net.Conn) { io.Copy(io.Discard, c) }
	sOnly := func(c net.Conn) {
		if readSSLRequest(c) {
			c.Write([]byte("S"))
			io.Copy(io.Discard, c)
		}
	}
	for _, tc := range []struct {
		name   string
		handle func(net.Conn)
		want   string
	}{
		{"no answer to SSLRequest", silent, `target "db" did not complete SSL negotiation within 200ms`},
		{"no TLS handshake", sOnly, `target "db" did not complete the TLS handshake within 200ms`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			addr := fakeTarget(t, "127.0.0.1:0", tc.handle)
			start := time.Now()
			c, err := dialTarget(t, Target{Address: addr, TLS: TLSRequire}, "", 200*time.Millisecond)
			if err == nil {
				c.Close()
				t.Fatal("dial succeeded")
			}
			if d := time.Since(start); d > 3*time.Second {
				t.Fatalf("dial gave up after %v, with a 200ms timeout", d)
			}
			if got := describeDialErr("db", err, 200*time.Millisecond); got != tc.want {
				t.Fatalf("reason %q, want %q (%v)", got, tc.want, err)
			}
		})
	}
}

// TestDialCancel: a dial in progress stops when its context is cancelled
// (the tunnel connection ended).
func TestDialCancel(t *testing.T) {
	leakcheck.Check(t)
	addr := fakeTarget(t, "127.0.0.1:0", func(c net.Conn) { io.Copy(io.Discard, c) })
	d, err := newDialer(Target{Name: "db", Address: addr, TLS: TLSRequire})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	time.AfterFunc(100*time.Millisecond, cancel)
	start := time.Now()
	c, err := d.dial(ctx, "")
	if err == nil {
		c.Close()
		t.Fatal("dial succeeded")
	}
	if dt := time.Since(start); dt > 3*time.Second {
		t.Fatalf("dial returned %v after the cancel", dt)
	}
}

func TestNewDialerRefuses(t *testing.T) {
	ca := newTestCA(t, "db CA")
	for _, tc := range []struct {
		name string
		tg   Target
		want string
	}{
		{"unknown mode", Target{TLS: "verfy-full"}, `unknown TLS mode "verfy-full"`},
		{"CA without TLS", Target{TLSCA: ca.pem}, "no effect without TLS"},
		{"name without TLS", Target{TLS: TLSDisable, TLSServerName: "db"}, "no effect without TLS"},
		{"verify-ca without CA", Target{TLS: TLSVerifyCA}, "verify-ca needs TLSCA"},
		{"CA that is not PEM", Target{TLS: TLSVerifyFull, TLSCA: "nope"}, "no PEM certificate"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.tg.Name, tc.tg.Address = "db", "127.0.0.1:5432"
			_, err := New(Options{Targets: []Target{tc.tg}, DialTLS: noDial, DialQUIC: noDial})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("New = %v, want an error with %q", err, tc.want)
			}
		})
	}
}

// TestServeStreamTLSRefusal: a session to a target that refuses TLS is
// answered "dial failed" with the reason, which names no address.
func TestServeStreamTLSRefusal(t *testing.T) {
	headers := make(chan *proxyproto.Header, 1)
	addr := fakeTarget(t, "127.0.0.1:0", proxyRead(headers, func(r io.Reader, c net.Conn) {
		answer("N")(&replay{Conn: c, pending: bufferedOf(r)})
	}))
	a, err := New(Options{
		Name:     "a1",
		Targets:  []Target{{Name: "warehouse", Address: addr, TLS: TLSRequire, ProxyProtocol: true}},
		DialTLS:  noDial,
		DialQUIC: noDial,
		Logger:   logging.Discard(),
	})
	if err != nil {
		t.Fatal(err)
	}
	server, agentEnd := net.Pipe()
	defer server.Close()
	done := make(chan struct{})
	go func() { a.serveStream(t.Context(), pipeStream{agentEnd}); close(done) }()
	defer func() { <-done }()
	server.SetDeadline(time.Now().Add(5 * time.Second))
	if err := proto.WriteOpen(server, &proto.Open{SessionID: 1, Target: "warehouse", Client: "192.0.2.1:5000", Route: "r"}); err != nil {
		t.Fatal(err)
	}
	reply, err := proto.ReadReply(server, 4096)
	if err != nil {
		t.Fatal(err)
	}
	want := `target "warehouse" does not accept TLS (answered N to SSLRequest)`
	if reply.Code != proto.ReplyDialFailed || reply.Message != want {
		t.Fatalf("reply %v %q, want %v %q", reply.Code, reply.Message, proto.ReplyDialFailed, want)
	}
	if h := <-headers; h == nil || h.SourceAddr.String() != "192.0.2.1:5000" {
		t.Fatalf("header %+v, want the client's address as source", h)
	}
}

// TestCheckTarget: check dials the way a session does and says what it
// negotiated, or why it failed.
func TestCheckTarget(t *testing.T) {
	ca := newTestCA(t, "db CA")
	cfg := &tls.Config{Certificates: []tls.Certificate{ca.issue(t, "127.0.0.1")}}
	headers := make(chan *proxyproto.Header, 2)
	tlsAddr := fakeTarget(t, "127.0.0.1:0", proxyRead(headers, func(r io.Reader, c net.Conn) {
		tlsEcho(cfg)(&replay{Conn: c, pending: bufferedOf(r)})
	}))
	refusing := fakeTarget(t, "127.0.0.1:0", answer("N"))
	a, err := New(Options{
		Name: "a1",
		Targets: []Target{
			{Name: "tls", Address: tlsAddr, ProxyProtocol: true, TLS: TLSVerifyFull, TLSCA: ca.pem},
			{Name: "plain-tls", Address: refusing, TLS: TLSRequire},
		},
		DialTLS:  noDial,
		DialQUIC: noDial,
		Logger:   logging.Discard(),
	})
	if err != nil {
		t.Fatal(err)
	}
	res := a.Check(t.Context())
	if r := res[0]; !r.OK || !strings.Contains(r.Detail, "TLS 1.3 verify-full, PROXY header sent") {
		t.Errorf("check %s: ok %v, %s", r.What, r.OK, r.Detail)
	}
	if h := <-headers; h == nil || h.Command != proxyproto.LOCAL {
		t.Errorf("check sent header %+v, want LOCAL", h)
	}
	if r := res[1]; r.OK || !strings.Contains(r.Detail, "does not accept TLS (answered N to SSLRequest)") {
		t.Errorf("check %s: ok %v, %s", r.What, r.OK, r.Detail)
	}
}

// bufferedOf returns what a bufio.Reader has read ahead.
func bufferedOf(r io.Reader) []byte {
	br := r.(*bufio.Reader)
	b, _ := br.Peek(br.Buffered())
	return b
}

func TestDescribeSetupErr(t *testing.T) {
	err := &setupError{step: stepTLS, reason: "failed the TLS handshake: x", err: errors.New("inner")}
	if got := describeDialErr("db", err, time.Second); got != `target "db" failed the TLS handshake: x` {
		t.Errorf("got %q", got)
	}
	err.err = context.DeadlineExceeded
	if got := describeDialErr("db", err, time.Second); got != `target "db" did not complete the TLS handshake within 1s` {
		t.Errorf("got %q", got)
	}
}

package dbproxy

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
)

// fakePG is an Upstream whose backends are a minimal PostgreSQL server on a
// pipe: trust authentication (or SASL offered with channel binding), a
// BackendKeyData of its own, and an empty answer to every query. It records
// the startup messages and cancel requests it receives.
type fakePG struct {
	pid     uint32
	key     []byte
	offerCB bool // offer SCRAM-SHA-256-PLUS instead of trusting
	err     error

	mu       sync.Mutex
	startups []*startupMessage
	routes   []string
	cancels  chan cancelRequest
}

func newFakePG() *fakePG {
	return &fakePG{pid: 4242, key: []byte{1, 2, 3, 4}, cancels: make(chan cancelRequest, 4)}
}

func (f *fakePG) Dial(ctx context.Context, req *Request) (Backend, error) {
	if f.err != nil {
		return nil, f.err
	}
	f.mu.Lock()
	f.routes = append(f.routes, req.Route)
	f.mu.Unlock()
	a, b := net.Pipe()
	go f.serve(b)
	return &fakePGBackend{Conn: a, f: f}, nil
}

func (f *fakePG) lastStartup() (*startupMessage, string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.startups) == 0 {
		return nil, ""
	}
	return f.startups[len(f.startups)-1], f.routes[len(f.routes)-1]
}

func (f *fakePG) serve(c net.Conn) {
	defer c.Close()
	code, payload, err := readStartupPacket(c, nil)
	if err != nil {
		return
	}
	sm, err := parseStartup(code, payload)
	if err != nil {
		return
	}
	f.mu.Lock()
	f.startups = append(f.startups, sm)
	f.mu.Unlock()
	var out []byte
	if f.offerCB {
		out = appendMsg(out, 'R', binary.BigEndian.AppendUint32(nil, pgAuthSASL), []byte("SCRAM-SHA-256-PLUS\x00SCRAM-SHA-256\x00\x00"))
		c.Write(out)
		// Whatever the client answers, this fake cannot go on.
		io.Copy(io.Discard, c)
		return
	}
	out = appendMsg(out, 'R', []byte{0, 0, 0, 0})
	out = appendMsg(out, 'S', []byte("server_version\x0015.0\x00"))
	out = appendMsg(out, 'K', binary.BigEndian.AppendUint32(nil, f.pid), f.key)
	out = appendMsg(out, 'Z', []byte{'I'})
	if _, err := c.Write(out); err != nil {
		return
	}
	var hdr [5]byte
	for {
		if _, err := io.ReadFull(c, hdr[:]); err != nil {
			return
		}
		n := binary.BigEndian.Uint32(hdr[1:])
		if n < 4 || n > 1<<20 {
			return
		}
		body := make([]byte, n-4)
		if _, err := io.ReadFull(c, body); err != nil {
			return
		}
		switch hdr[0] {
		case 'X':
			return
		case 'Q':
			var out []byte
			out = appendMsg(out, 'I')
			out = appendMsg(out, 'Z', []byte{'I'})
			c.Write(out)
		}
	}
}

func appendMsg(b []byte, typ byte, parts ...[]byte) []byte {
	n := 4
	for _, p := range parts {
		n += len(p)
	}
	b = append(b, typ)
	b = binary.BigEndian.AppendUint32(b, uint32(n))
	for _, p := range parts {
		b = append(b, p...)
	}
	return b
}

type fakePGBackend struct {
	net.Conn
	f *fakePG
}

func (b *fakePGBackend) Relay(ctx context.Context, client net.Conn) {
	done := make(chan struct{})
	go func() { io.Copy(b.Conn, client); b.Conn.Close(); close(done) }()
	io.Copy(client, b.Conn)
	client.Close()
	<-done
}

func (b *fakePGBackend) Sibling(ctx context.Context) (net.Conn, error) {
	a, c := net.Pipe()
	go func() {
		defer c.Close()
		code, payload, err := readStartupPacket(c, nil)
		if err != nil || code != pgCancelRequestCode {
			return
		}
		req, err := parseCancel(payload)
		if err == nil {
			b.f.cancels <- cancelRequest{pid: req.pid, key: bytes.Clone(req.key)}
		}
	}()
	return a, nil
}

// testCert returns a self-signed certificate for names.
func testCert(t testing.TB, names ...string) *tls.Config {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: names[0]},
		DNSNames:     names,
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}}
}

// pgListener opens a PostgreSQL listener for routes on loopback.
func pgListener(t *testing.T, up Upstream, tlsConf *tls.Config, domain string, routes ...Route) *Listener {
	t.Helper()
	l := &Listener{Addr: "127.0.0.1:0", Protocol: ProtocolPostgres, Upstream: up, TLS: tlsConf, Domain: domain,
		HandshakeTimeout: 5 * time.Second, Logger: slog.New(slog.DiscardHandler)}
	l.SetRoutes(routes)
	if err := l.Open(t.Context()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close(); l.Wait() })
	return l
}

// pgConnect connects pgconn to l with extra DSN settings; host names all
// resolve to the listener.
func pgConnect(t *testing.T, l *Listener, host, settings string) (*pgconn.PgConn, error) {
	t.Helper()
	_, port, _ := net.SplitHostPort(l.BoundAddr().String())
	cfg, err := pgconn.ParseConfig(fmt.Sprintf("host=%s port=%s user=u dbname=d connect_timeout=5 %s", host, port, settings))
	if err != nil {
		t.Fatal(err)
	}
	cfg.LookupFunc = func(ctx context.Context, host string) ([]string, error) { return []string{"127.0.0.1"}, nil }
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	conn, err := pgconn.ConnectConfig(ctx, cfg)
	if err == nil {
		t.Cleanup(func() { conn.Close(context.Background()) })
	}
	return conn, err
}

func mustQuery(t *testing.T, c *pgconn.PgConn) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	if _, err := c.Exec(ctx, "select").ReadAll(); err != nil {
		t.Fatalf("query: %v", err)
	}
}

// TestPostgresRouting: each way of naming a route reaches it, and the
// naming parameter never reaches the database.
func TestPostgresRouting(t *testing.T) {
	tlsConf := testCert(t, "*.db.test")
	routes := []Route{{Name: "alpha", Default: true}, {Name: "beta"}}
	for _, tc := range []struct {
		name, host, settings, want string
	}{
		{"default, no TLS", "localhost", "sslmode=disable", "alpha"},
		{"default, TLS", "localhost", "sslmode=require", "alpha"},
		{"server name", "beta.db.test", "sslmode=require", "beta"},
		{"server name, other case", "BETA.DB.TEST", "sslmode=require", "beta"},
		{"server name, direct TLS", "beta.db.test", "sslmode=require sslnegotiation=direct", "beta"},
		{"server name wins over the parameter", "beta.db.test", "sslmode=require tunnel_route=alpha", "beta"},
		{"parameter", "localhost", "sslmode=disable tunnel_route=beta", "beta"},
		{"options word", "localhost", `sslmode=disable options='tunnel_route=beta'`, "beta"},
		{"options word among others", "localhost", `sslmode=disable options='-c geqo=off tunnel_route=beta -c work_mem=1MB'`, "beta"},
		{"server name outside the domain", "beta.other.test", "sslmode=require", "alpha"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			up := newFakePG()
			l := pgListener(t, up, tlsConf, "db.test", routes...)
			c, err := pgConnect(t, l, tc.host, tc.settings)
			if err != nil {
				t.Fatal(err)
			}
			mustQuery(t, c)
			sm, route := up.lastStartup()
			if route != tc.want {
				t.Errorf("reached route %q, want %q", route, tc.want)
			}
			if _, ok := sm.get(RouteParameter); ok {
				t.Errorf("the database got %s", RouteParameter)
			}
			if opts, ok := sm.get("options"); ok && strings.Contains(opts, RouteParameter) {
				t.Errorf("the database got options %q", opts)
			}
			if user, _ := sm.get("user"); user != "u" {
				t.Errorf("user = %q, want u", user)
			}
			if strings.Contains(tc.settings, "work_mem") {
				if opts, _ := sm.get("options"); opts != "-c geqo=off -c work_mem=1MB" {
					t.Errorf("options = %q, want the other words kept", opts)
				}
			}
		})
	}
}

// TestPostgresErrors: every refusal reaches the client as an ErrorResponse
// with its SQLSTATE.
func TestPostgresErrors(t *testing.T) {
	allowNone, _ := ParseAllow([]string{"192.0.2.0/24"})
	for _, tc := range []struct {
		name     string
		routes   []Route
		upErr    error
		settings string
		code     string
		message  string
	}{
		{"unknown route", []Route{{Name: "alpha", Default: true}}, nil, "tunnel_route=nope", "3D000", `no route "nope"`},
		{"no route named, no default", []Route{{Name: "alpha"}, {Name: "beta"}}, nil, "", "3D000", "names none"},
		{"address not allowed", []Route{{Name: "alpha", Default: true, Allow: allowNone}}, nil, "", "28000", "connections from 127.0.0.1 are not allowed here"},
		{"not allowed anywhere, names no route that exists", []Route{{Name: "alpha", Allow: allowNone}, {Name: "beta", Allow: allowNone}},
			nil, "tunnel_route=nope", "28000", "connections from 127.0.0.1 are not allowed here"},
		{"not allowed anywhere, names none", []Route{{Name: "alpha", Default: true, Allow: allowNone}},
			nil, "", "28000", "connections from 127.0.0.1 are not allowed here"},
		{"agent offline", []Route{{Name: "alpha", Default: true}},
			&RouteError{Code: ErrAgentOffline, Reason: `agent "acme" is not connected`}, "", "08006", `agent "acme" is not connected`},
		{"target unreachable", []Route{{Name: "alpha", Default: true}},
			&RouteError{Code: ErrDialFailed, Reason: `target "dw" refused the connection`}, "", "08006", "refused the connection"},
		{"unknown target", []Route{{Name: "alpha", Default: true}},
			&RouteError{Code: ErrUnknownTarget, Reason: `agent "acme" declares no target "dw"`}, "", "08006", "declares no target"},
		{"limit", []Route{{Name: "alpha", Default: true}},
			&RouteError{Code: ErrLimitReached, Reason: `route "alpha" has 2 open sessions, its limit`}, "", "53300", "its limit"},
	} {
		for _, mode := range []string{"disable", "require"} {
			t.Run(tc.name+"/sslmode="+mode, func(t *testing.T) {
				up := newFakePG()
				up.err = tc.upErr
				l := pgListener(t, up, testCert(t, "localhost"), "", tc.routes...)
				_, err := pgConnect(t, l, "localhost", "sslmode="+mode+" "+tc.settings)
				var pe *pgconn.PgError
				if !errors.As(err, &pe) {
					t.Fatalf("connect: %v, want a PostgreSQL error", err)
				}
				if pe.Severity != "FATAL" || pe.Code != tc.code || !strings.Contains(pe.Message, tc.message) {
					t.Fatalf("error %s %s %q, want FATAL %s containing %q", pe.Severity, pe.Code, pe.Message, tc.code, tc.message)
				}
			})
		}
	}
}

// TestPostgresCancel: the client gets a key of the proxy's own; cancelling
// with it reaches the database with the database's key, only while the
// session lives.
func TestPostgresCancel(t *testing.T) {
	up := newFakePG()
	l := pgListener(t, up, nil, "", Route{Name: "alpha", Default: true})
	c, err := pgConnect(t, l, "localhost", "sslmode=disable")
	if err != nil {
		t.Fatal(err)
	}
	if c.PID() == up.pid || bytes.Equal(c.SecretKey(), up.key) {
		t.Fatalf("client got the database's own key (pid %d)", c.PID())
	}
	if len(c.SecretKey()) != len(up.key) {
		t.Fatalf("key of %d bytes, want %d", len(c.SecretKey()), len(up.key))
	}
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	if err := c.CancelRequest(ctx); err != nil {
		t.Fatalf("CancelRequest: %v", err)
	}
	select {
	case got := <-up.cancels:
		if got.pid != up.pid || !bytes.Equal(got.key, up.key) {
			t.Fatalf("database got cancel %d/%x, want %d/%x", got.pid, got.key, up.pid, up.key)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the cancel request did not reach the database")
	}

	// A wrong key, then the right key after the session ended: neither
	// reaches the database.
	forged := cancelRequest{pid: c.PID(), key: []byte{9, 9, 9, 9}}
	sendRawCancel(t, l, forged)
	pid, key := c.PID(), bytes.Clone(c.SecretKey())
	c.Close(ctx)
	waitFor(t, func() bool { return l.Cancels.Len() == 0 })
	sendRawCancel(t, l, cancelRequest{pid: pid, key: key})
	select {
	case got := <-up.cancels:
		t.Fatalf("a cancel reached the database: %+v", got)
	case <-time.After(200 * time.Millisecond):
	}
}

func sendRawCancel(t *testing.T, l *Listener, req cancelRequest) {
	t.Helper()
	c, err := net.Dial("tcp", l.BoundAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.Write(req.encode())
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.Copy(io.Discard, c); err != nil {
		t.Fatalf("cancel connection not closed: %v", err)
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); !cond(); {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 5s")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestPostgresChannelBinding: a client whose TLS ends at the proxy and that
// picks SCRAM-SHA-256-PLUS is told why that cannot work; with binding
// disabled it goes on to the database.
func TestPostgresChannelBinding(t *testing.T) {
	up := newFakePG()
	up.offerCB = true
	l := pgListener(t, up, testCert(t, "localhost"), "", Route{Name: "alpha", Default: true})
	_, err := pgConnect(t, l, "localhost", "sslmode=require password=x")
	var pe *pgconn.PgError
	if !errors.As(err, &pe) || pe.Code != "28000" || !strings.Contains(pe.Message, "channel binding") || pe.Hint == "" {
		t.Fatalf("connect: %v, want a 28000 error about channel binding with a hint", err)
	}
}

// TestPostgresSSLRequestAbuse: plaintext bytes sent after an SSLRequest,
// before the TLS handshake, are refused (CVE-2021-23222 class), and a
// startup packet of absurd length is refused before it is read.
func TestPostgresSSLRequestAbuse(t *testing.T) {
	up := newFakePG()
	l := pgListener(t, up, testCert(t, "localhost"), "", Route{Name: "alpha", Default: true})
	for _, tc := range []struct {
		name string
		send []byte
	}{
		{"bytes after SSLRequest", append(binary.BigEndian.AppendUint32([]byte{0, 0, 0, 8}, pgSSLRequestCode),
			(&startupMessage{version: 3 << 16, params: []pgParam{{"user", "u"}}}).encode()...)},
		{"huge length", []byte{0, 1, 0, 0, 0, 3, 0, 0}},
		{"tiny length", []byte{0, 0, 0, 4, 0, 3, 0, 0}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := net.Dial("tcp", l.BoundAddr().String())
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			c.Write(tc.send)
			c.SetReadDeadline(time.Now().Add(5 * time.Second))
			got, _ := io.ReadAll(c)
			if len(got) == 0 || got[0] != 'E' || !bytes.Contains(got, []byte(sqlstateProtocolViolation)) {
				t.Fatalf("got %q, want an ErrorResponse %s", got, sqlstateProtocolViolation)
			}
			if sm, _ := up.lastStartup(); sm != nil {
				t.Fatal("a startup message reached the database")
			}
		})
	}
}

// TestPostgresDirectTLSNeedsALPN: direct TLS without ALPN "postgresql" is
// refused, as PostgreSQL 17 does.
func TestPostgresDirectTLSNeedsALPN(t *testing.T) {
	up := newFakePG()
	l := pgListener(t, up, testCert(t, "localhost"), "", Route{Name: "alpha", Default: true})
	c, err := tls.Dial("tcp", l.BoundAddr().String(), &tls.Config{InsecureSkipVerify: true})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	got, _ := io.ReadAll(c)
	if len(got) == 0 || got[0] != 'E' || !bytes.Contains(got, []byte("ALPN")) {
		t.Fatalf("got %q, want an ErrorResponse about ALPN", got)
	}
}

// TestPostgresProtocolVersions: 3.0 and 3.2 startup messages reach the
// database unchanged; 2.0 is refused.
func TestPostgresProtocolVersions(t *testing.T) {
	for _, tc := range []struct {
		name    string
		version uint32
		ok      bool
	}{
		{"3.0", 3<<16 | 0, true},
		{"3.2", 3<<16 | 2, true},
		{"2.0", 2 << 16, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			up := newFakePG()
			l := pgListener(t, up, nil, "", Route{Name: "alpha", Default: true})
			sent := (&startupMessage{version: tc.version, params: []pgParam{{"user", "u"}, {"_pq_.x", "y"}}}).encode()
			c, err := net.Dial("tcp", l.BoundAddr().String())
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			c.Write(sent)
			c.SetReadDeadline(time.Now().Add(5 * time.Second))
			first := make([]byte, 1)
			io.ReadFull(c, first)
			sm, _ := up.lastStartup()
			if !tc.ok {
				if first[0] != 'E' || sm != nil {
					t.Fatalf("protocol %s: first byte %q, database reached: %v", tc.name, first, sm != nil)
				}
				return
			}
			if sm == nil || !bytes.Equal(sm.encode(), sent) {
				t.Fatalf("database got %+v, want the startup message unchanged", sm)
			}
		})
	}
}

func TestWithoutMechanism(t *testing.T) {
	for _, tc := range []struct {
		in, want string
		ok       bool
	}{
		{"SCRAM-SHA-256-PLUS\x00SCRAM-SHA-256\x00\x00", "SCRAM-SHA-256\x00\x00", true},
		{"SCRAM-SHA-256\x00SCRAM-SHA-256-PLUS\x00\x00", "SCRAM-SHA-256\x00\x00", true},
		{"SCRAM-SHA-256\x00\x00", "", false},       // nothing to strip
		{"SCRAM-SHA-256-PLUS\x00\x00", "", false},  // nothing would be left
		{"SCRAM-SHA-256-PLUS\x00SCRAM", "", false}, // malformed
	} {
		got, ok := withoutMechanism([]byte(tc.in), scramPlus)
		if ok != tc.ok || string(got) != tc.want {
			t.Errorf("withoutMechanism(%q) = %q, %v; want %q, %v", tc.in, got, ok, tc.want, tc.ok)
		}
	}
}

// TestPostgresGSSENCRequest: a GSSENCRequest is answered 'N' and the client
// goes on, as libpq does, with an SSLRequest and its startup message; a
// third negotiation request is refused.
func TestPostgresGSSENCRequest(t *testing.T) {
	up := newFakePG()
	l := pgListener(t, up, nil, "", Route{Name: "alpha", Default: true})
	req := func(code uint32) []byte { return binary.BigEndian.AppendUint32([]byte{0, 0, 0, 8}, code) }
	for _, tc := range []struct {
		name    string
		send    [][]byte
		answers string
		ok      bool
	}{
		{"GSSENC then startup", [][]byte{req(pgGSSENCRequestCode)}, "N", true},
		{"GSSENC, SSL, startup", [][]byte{req(pgGSSENCRequestCode), req(pgSSLRequestCode)}, "NN", true},
		{"three requests", [][]byte{req(pgGSSENCRequestCode), req(pgSSLRequestCode), req(pgGSSENCRequestCode)}, "NN", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := net.Dial("tcp", l.BoundAddr().String())
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(5 * time.Second))
			var answers []byte
			for _, r := range tc.send {
				c.Write(r)
				one := make([]byte, 1)
				if _, err := io.ReadFull(c, one); err != nil {
					break
				}
				answers = append(answers, one[0])
			}
			if tc.ok {
				c.Write((&startupMessage{version: 3 << 16, params: []pgParam{{"user", "u"}}}).encode())
				one := make([]byte, 1)
				io.ReadFull(c, one)
				answers = append(answers, one[0])
			}
			want := tc.answers
			if tc.ok {
				want += "R" // AuthenticationOk from the database
			} else {
				want += "E"
			}
			if string(answers) != want {
				t.Fatalf("answers %q, want %q", answers, want)
			}
		})
	}
}

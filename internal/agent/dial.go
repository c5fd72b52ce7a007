package agent

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"syscall"
	"time"

	"github.com/pires/go-proxyproto"
	"github.com/tunnelrelay/tunnel/pkg/dbproxy"
)

// TLS modes of a target (Target.TLS), named and meant as libpq's sslmode
// values of the same names.
const (
	// TLSDisable sends the target plain TCP.
	TLSDisable = "disable"
	// TLSRequire encrypts without checking the certificate, as libpq's
	// "require" without a root certificate does.
	TLSRequire = "require"
	// TLSVerifyCA checks that the certificate chains to Target.TLSCA,
	// whatever name it carries.
	TLSVerifyCA = "verify-ca"
	// TLSVerifyFull checks the chain and that the certificate carries
	// Target.TLSServerName.
	TLSVerifyFull = "verify-full"
)

// PostgreSQL's SSL negotiation: the client sends SSLRequest, an Int32
// length of 8 and the Int32 code 80877103, and the server answers one byte,
// 'S' to go on with a TLS handshake or 'N' to refuse. A server too old to
// know the request answers with an ErrorResponse, whose first byte is 'E'.
var sslRequest = []byte{0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f}

// aLongTimeAgo is a deadline in the past, to interrupt a blocked read.
var aLongTimeAgo = time.Unix(1, 0)

// dialer dials one target: TCP, then what the target's config asks for on
// top of it. It is static after newDialer and safe for concurrent use.
type dialer struct {
	target Target
	tls    *tls.Config // nil for TLSDisable
}

// newDialer checks t's options and prepares its TLS configuration.
func newDialer(t Target) (*dialer, error) {
	d := &dialer{target: t}
	mode := t.TLS
	if mode == "" {
		mode = TLSDisable
	}
	if mode == TLSDisable {
		if t.TLSCA != "" || t.TLSServerName != "" {
			return nil, fmt.Errorf("target %q: TLSCA and TLSServerName have no effect without TLS", t.Name)
		}
		return d, nil
	}
	var roots *x509.CertPool
	if t.TLSCA != "" {
		roots = x509.NewCertPool()
		if !roots.AppendCertsFromPEM([]byte(t.TLSCA)) {
			return nil, fmt.Errorf("target %q: TLSCA holds no PEM certificate", t.Name)
		}
	}
	name := t.TLSServerName
	if name == "" {
		name, _, _ = net.SplitHostPort(t.Address)
	}
	cfg := &tls.Config{
		MinVersion: tls.VersionTLS12,
		NextProtos: []string{dbproxy.PostgresALPN},
		// Sent as SNI in every mode (Go leaves it out for IP addresses);
		// checked only with verify-full.
		ServerName: name,
	}
	switch mode {
	case TLSRequire:
		cfg.InsecureSkipVerify = true
	case TLSVerifyCA:
		if roots == nil {
			// The system roots and any name would accept any publicly
			// issued certificate; libpq refuses the same combination.
			return nil, fmt.Errorf("target %q: verify-ca needs TLSCA", t.Name)
		}
		// crypto/tls checks chain and name together; verify-ca wants the
		// chain alone, so it is checked here instead.
		cfg.InsecureSkipVerify = true
		cfg.VerifyConnection = verifyChain(roots)
	case TLSVerifyFull:
		cfg.RootCAs = roots // nil: the system roots
	default:
		return nil, fmt.Errorf("target %q: unknown TLS mode %q", t.Name, t.TLS)
	}
	d.tls = cfg
	return d, nil
}

// verifyChain checks that the peer's certificate chains to roots, for a
// server, whatever name it carries.
func verifyChain(roots *x509.CertPool) func(tls.ConnectionState) error {
	return func(cs tls.ConnectionState) error {
		if len(cs.PeerCertificates) == 0 {
			return errors.New("tls: the server sent no certificate")
		}
		inter := x509.NewCertPool()
		for _, c := range cs.PeerCertificates[1:] {
			inter.AddCert(c)
		}
		_, err := cs.PeerCertificates[0].Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter})
		return err
	}
}

// dial connects to the target within ctx: TCP; then, if the target asks
// for them, a PROXY protocol v2 header carrying client (the original
// client's "ip:port"; empty or unparsable sends a LOCAL header), and
// PostgreSQL's SSL negotiation with a TLS handshake, in that order. The
// connection returned is ready for the client's first bytes, whatever they
// are (a startup message, a CancelRequest). A failure after the TCP
// connect is a *setupError.
func (d *dialer) dial(ctx context.Context, client string) (net.Conn, error) {
	var nd net.Dialer
	conn, err := nd.DialContext(ctx, "tcp", d.target.Address)
	if err != nil {
		return nil, err
	}
	if !d.target.ProxyProtocol && d.tls == nil {
		return conn, nil
	}
	c, err := d.setup(ctx, conn, client)
	if err != nil {
		conn.Close()
		return nil, err
	}
	return c, nil
}

// setup runs the steps after the TCP connect under ctx's deadline, and
// stops them when ctx is cancelled.
func (d *dialer) setup(ctx context.Context, conn net.Conn, client string) (net.Conn, error) {
	if dl, ok := ctx.Deadline(); ok {
		conn.SetDeadline(dl)
	}
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(aLongTimeAgo) })
	c, err := d.negotiate(ctx, conn, client)
	if !stop() && err == nil {
		// ctx ended just now and has set a past deadline.
		err = &setupError{step: stepTLS, reason: "was interrupted during setup", err: ctx.Err()}
	}
	if err != nil {
		return nil, err
	}
	conn.SetDeadline(time.Time{})
	return c, nil
}

// Steps of setup, as named in the reason for a timeout.
const (
	stepProxy = "the PROXY header"
	stepSSL   = "SSL negotiation"
	stepTLS   = "the TLS handshake"
)

func (d *dialer) negotiate(ctx context.Context, conn net.Conn, client string) (net.Conn, error) {
	// One write for both, so they leave in one segment.
	var prelude []byte
	if d.target.ProxyProtocol {
		h, err := proxyHeader(client, conn.RemoteAddr())
		if err != nil {
			return nil, &setupError{step: stepProxy, reason: "could not be sent a PROXY header", err: err}
		}
		prelude = append(prelude, h...)
	}
	if d.tls == nil {
		if _, err := conn.Write(prelude); err != nil {
			return nil, &setupError{step: stepProxy, reason: "closed the connection before taking the PROXY header", err: err}
		}
		return conn, nil
	}
	prelude = append(prelude, sslRequest...)
	sent := "SSLRequest"
	if d.target.ProxyProtocol {
		sent = "the PROXY header and SSLRequest"
	}
	if _, err := conn.Write(prelude); err != nil {
		return nil, &setupError{step: stepSSL, reason: "closed the connection before taking " + sent, err: err}
	}
	// Exactly one byte is read, so nothing the server sends after it is
	// buffered here.
	var answer [1]byte
	if _, err := io.ReadFull(conn, answer[:]); err != nil {
		return nil, &setupError{step: stepSSL, reason: fmt.Sprintf("does not accept TLS (closed the connection after %s)", sent), err: err}
	}
	switch answer[0] {
	case 'S':
	case 'N', 'E':
		return nil, &setupError{step: stepSSL, reason: fmt.Sprintf("does not accept TLS (answered %c to SSLRequest)", answer[0])}
	default:
		return nil, &setupError{step: stepSSL, reason: fmt.Sprintf("does not answer SSLRequest as PostgreSQL does (sent %q)", answer[0])}
	}
	// A server, or a man in the middle, that sends bytes after 'S' and
	// before the handshake is refused (the CVE-2021-23222 class, where
	// libpq took such bytes as if they had come encrypted).
	if dbproxy.UnreadBytes(conn) {
		return nil, &setupError{step: stepSSL, reason: "sent unencrypted data before the TLS handshake (refused, see CVE-2021-23222)"}
	}
	tc := tls.Client(conn, d.tls)
	if err := tc.HandshakeContext(ctx); err != nil {
		return nil, &setupError{step: stepTLS, reason: "failed the TLS handshake: " + describeTLSErr(err), err: err}
	}
	return tc, nil
}

// proxyHeader returns the PROXY protocol v2 header for a connection from
// client, the original client's "ip:port", to dst, the target's address
// as the agent connected to it. Both go as IPv4 when both are IPv4, else
// as IPv6 (an IPv4 address v4-mapped). An empty or unparsable client gives
// a LOCAL header, which tells the target to use the connection's own
// addresses.
func proxyHeader(client string, dst net.Addr) ([]byte, error) {
	h := &proxyproto.Header{Version: 2, Command: proxyproto.LOCAL, TransportProtocol: proxyproto.UNSPEC}
	src, err := netip.ParseAddrPort(client)
	d, ok := dst.(*net.TCPAddr)
	if err == nil && ok {
		sa := src.Addr().Unmap().WithZone("")
		da := d.AddrPort().Addr().Unmap().WithZone("")
		h.Command = proxyproto.PROXY
		h.TransportProtocol = proxyproto.TCPv6
		if sa.Is4() && da.Is4() {
			h.TransportProtocol = proxyproto.TCPv4
		}
		h.SourceAddr = &net.TCPAddr{IP: sa.AsSlice(), Port: int(src.Port())}
		h.DestinationAddr = &net.TCPAddr{IP: da.AsSlice(), Port: d.Port}
	}
	return h.Format()
}

// setupError is a failure after the TCP connection to a target was made.
type setupError struct {
	step string // what was under way, for a timeout's reason
	// reason completes "target NAME ..." and is sent to the server: it
	// never holds the target's address or a name from its certificate.
	reason string
	err    error // nil when reason says it all
}

func (e *setupError) Error() string {
	if e.err == nil {
		return e.reason
	}
	return e.reason + " (" + e.err.Error() + ")"
}

func (e *setupError) Unwrap() error { return e.err }

// describeTLSErr says briefly why a TLS handshake failed, naming no host
// or address.
func describeTLSErr(err error) string {
	var (
		unknownCA x509.UnknownAuthorityError
		hostErr   x509.HostnameError
		invalid   x509.CertificateInvalidError
		recErr    tls.RecordHeaderError
		opErr     *net.OpError
	)
	switch {
	case errors.As(err, &unknownCA):
		return "certificate signed by unknown authority"
	case errors.As(err, &hostErr):
		return "certificate name mismatch"
	case errors.As(err, &invalid) && invalid.Reason == x509.Expired:
		return "certificate expired or not yet valid"
	case errors.As(err, &invalid) && invalid.Reason == x509.IncompatibleUsage:
		return "certificate not meant for a server"
	case errors.As(err, &invalid):
		return "invalid certificate"
	case errors.As(err, &recErr):
		return "the database answered S but does not speak TLS"
	case errors.As(err, &opErr) && opErr.Op == "remote error":
		// A TLS alert from the database: "tls: protocol version not
		// supported" and the like, no address in it.
		return "the database sent " + opErr.Err.Error()
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, syscall.ECONNRESET):
		return "the database closed the connection"
	}
	return "handshake error"
}

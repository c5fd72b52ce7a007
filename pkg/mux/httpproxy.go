package mux

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// HTTPProxy opens TCP connections through an HTTP proxy with the CONNECT
// method (RFC 9110, section 9.3.6), for networks whose only way out is a
// web proxy. Set Config.Dial to its DialContext and DialTLS runs the
// tunnel's TLS inside the proxied connection. QUIC cannot pass such a
// proxy: CONNECT carries TCP only.
//
// The target address goes to the proxy as written: the proxy resolves its
// name, so the dialing host needs no DNS for it.
type HTTPProxy struct {
	// URL is the proxy: http://host:port, or https://host:port for a proxy
	// reached over TLS. A user:password in it is sent as
	// Proxy-Authorization: Basic; it never appears in an error. A missing
	// port means 80 for http and 443 for https. Required.
	URL *url.URL

	// TLSConfig verifies an https proxy. Nil means the system roots; an
	// empty ServerName means the host of URL.
	TLSConfig *tls.Config

	// Dial connects to the proxy. Nil means a net.Dialer.
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)
}

// ProxyError is a proxy's refusal of a CONNECT: an answer other than 2xx.
type ProxyError struct {
	// Proxy is the proxy's URL with its password redacted.
	Proxy string
	// Target is the address the CONNECT asked for.
	Target string
	// StatusCode is the answer's status code, e.g. 407.
	StatusCode int
	// Status is the status line, e.g. "HTTP/1.1 403 Forbidden".
	Status string
	// Credentials reports whether the CONNECT carried a user and password.
	Credentials bool
}

func (e *ProxyError) Error() string {
	switch {
	case e.StatusCode == http.StatusProxyAuthRequired && e.Credentials:
		return fmt.Sprintf("HTTP proxy %s rejected the user and password in its URL (answered %q): check them",
			e.Proxy, e.Status)
	case e.StatusCode == http.StatusProxyAuthRequired:
		return fmt.Sprintf("HTTP proxy %s requires authentication (answered %q): put user:password in the proxy URL, "+
			"as http://user:password@host:port", e.Proxy, e.Status)
	}
	return fmt.Sprintf("HTTP proxy %s refused CONNECT to %s: answered %q", e.Proxy, e.Target, e.Status)
}

// maxProxyAnswer bounds the status line and headers of a proxy's answer to
// CONNECT; a proxy's real answer is a few hundred bytes.
const maxProxyAnswer = 16 << 10

// DialContext connects to addr, a host:port, through the proxy. network
// must be "tcp", "tcp4" or "tcp6"; the proxy decides which the target is
// reached over. Bytes the proxy sent after its answer are the first the
// returned connection reads.
func (p *HTTPProxy) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	if p.URL == nil {
		return nil, errors.New("mux: HTTPProxy.URL is nil")
	}
	switch network {
	case "tcp", "tcp4", "tcp6":
	default:
		return nil, fmt.Errorf("mux: an HTTP proxy cannot carry %q", network)
	}
	if _, _, err := net.SplitHostPort(addr); err != nil ||
		strings.ContainsFunc(addr, func(r rune) bool { return r <= ' ' || r == 0x7f }) {
		return nil, fmt.Errorf("mux: invalid address %q for CONNECT", addr)
	}
	proxyAddr, err := p.addr()
	if err != nil {
		return nil, err
	}
	dial := p.Dial
	if dial == nil {
		var d net.Dialer
		dial = d.DialContext
	}
	conn, err := dial(ctx, "tcp", proxyAddr)
	if err != nil {
		return nil, fmt.Errorf("HTTP proxy %s unreachable: %w", p.URL.Redacted(), err)
	}
	if p.URL.Scheme == "https" {
		tc := tls.Client(conn, p.tlsConfig())
		if err := tc.HandshakeContext(ctx); err != nil {
			conn.Close()
			return nil, fmt.Errorf("HTTP proxy %s: %w", p.URL.Redacted(), err)
		}
		conn = tc
	}
	c, err := p.connect(ctx, conn, addr)
	if err != nil {
		conn.Close()
		return nil, err
	}
	return c, nil
}

// addr returns the proxy's host:port, with the scheme's port when the URL
// has none.
func (p *HTTPProxy) addr() (string, error) {
	var port string
	switch p.URL.Scheme {
	case "http":
		port = "80"
	case "https":
		port = "443"
	default:
		return "", fmt.Errorf("mux: proxy %s: unsupported scheme %q (want http or https)", p.URL.Redacted(), p.URL.Scheme)
	}
	if p.URL.Hostname() == "" {
		return "", fmt.Errorf("mux: proxy %s: missing host", p.URL.Redacted())
	}
	if p.URL.Port() != "" {
		port = p.URL.Port()
	}
	return net.JoinHostPort(p.URL.Hostname(), port), nil
}

func (p *HTTPProxy) tlsConfig() *tls.Config {
	c := &tls.Config{}
	if p.TLSConfig != nil {
		c = p.TLSConfig.Clone()
	}
	if c.ServerName == "" {
		c.ServerName = p.URL.Hostname()
	}
	return c
}

// connect asks the proxy on conn for a tunnel to addr and reads its answer,
// within ctx.
func (p *HTTPProxy) connect(ctx context.Context, conn net.Conn, addr string) (net.Conn, error) {
	name := p.URL.Redacted()
	stop := BindDeadline(ctx, conn)
	defer stop()

	req := "CONNECT " + addr + " HTTP/1.1\r\nHost: " + addr + "\r\n"
	user := p.URL.User
	if user != nil {
		password, _ := user.Password()
		req += "Proxy-Authorization: Basic " +
			base64.StdEncoding.EncodeToString([]byte(user.Username()+":"+password)) + "\r\n"
	}
	req += "\r\n"
	if _, err := io.WriteString(conn, req); err != nil {
		return nil, fmt.Errorf("HTTP proxy %s: send CONNECT: %w", name, p.ctxErr(ctx, err))
	}

	// The limit reader bounds the answer; what bufio reads past the header
	// stays in its buffer and is handed on below.
	lr := &io.LimitedReader{R: conn, N: maxProxyAnswer}
	br := bufio.NewReader(lr)
	resp, err := http.ReadResponse(br, &http.Request{Method: http.MethodConnect})
	switch {
	case err != nil && lr.N == 0:
		return nil, fmt.Errorf("HTTP proxy %s: answer to CONNECT longer than %d bytes", name, maxProxyAnswer)
	case errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF):
		return nil, fmt.Errorf("HTTP proxy %s closed the connection without answering CONNECT", name)
	case err != nil && p.ctxErr(ctx, err) != err:
		return nil, fmt.Errorf("HTTP proxy %s: no answer to CONNECT: %w", name, p.ctxErr(ctx, err))
	case err != nil:
		return nil, fmt.Errorf("HTTP proxy %s: no valid answer to CONNECT: %w", name, err)
	}
	if !stop() {
		return nil, fmt.Errorf("HTTP proxy %s: %w", name, ctx.Err())
	}
	if err := conn.SetDeadline(time.Time{}); err != nil {
		return nil, err
	}
	if resp.StatusCode/100 != 2 {
		return nil, &ProxyError{
			Proxy:       name,
			Target:      addr,
			StatusCode:  resp.StatusCode,
			Status:      resp.Proto + " " + resp.Status,
			Credentials: user != nil,
		}
	}
	if n := br.Buffered(); n > 0 {
		// The target's first bytes came with the answer.
		early, _ := br.Peek(n)
		return &prefixConn{Conn: conn, early: append([]byte(nil), early...)}, nil
	}
	return conn, nil
}

// ctxErr prefers ctx's error to err, a read or write that ctx interrupted
// or whose deadline, ctx's, passed (a moment before ctx itself says so).
func (p *HTTPProxy) ctxErr(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return ctx.Err()
	}
	var ne net.Error
	if d, ok := ctx.Deadline(); ok && errors.As(err, &ne) && ne.Timeout() && !time.Now().Before(d) {
		return context.DeadlineExceeded
	}
	return err
}

// prefixConn is a connection whose first reads return early, bytes that
// were read from Conn before it was handed on.
type prefixConn struct {
	net.Conn
	early []byte
}

func (c *prefixConn) Read(p []byte) (int, error) {
	if len(c.early) > 0 {
		n := copy(p, c.early)
		c.early = c.early[n:]
		return n, nil
	}
	return c.Conn.Read(p)
}

// Package connectproxy is an HTTP CONNECT proxy for tests, on loopback. It
// records the targets it is asked for, can require Basic credentials,
// refuse every CONNECT with a given status, and resolve names of its own
// (tunnel.test, say), so a test can use a server name no DNS knows and
// that only the proxy can reach.
//
// It is not for production: it reads no config, limits nothing and speaks
// only CONNECT.
package connectproxy

import (
	"bufio"
	"encoding/base64"
	"io"
	"net"
	"net/http"
	"net/url"
	"sync"
	"testing"
	"time"
)

// Options for New. The zero value is an open proxy that resolves names
// as the system does.
type Options struct {
	// User and Password, when User is set, are the credentials every
	// CONNECT must carry (Proxy-Authorization: Basic); others get 407.
	User, Password string
	// Hosts maps names to the addresses the proxy dials for them, as its
	// own DNS: {"tunnel.test": "127.0.0.1"}.
	Hosts map[string]string
}

// Proxy is a running CONNECT proxy.
type Proxy struct {
	// Static after New.
	ln  net.Listener
	opt Options

	mu      sync.Mutex // guards the fields below
	refuse  string     // status to answer every CONNECT with; "" to serve
	targets []string   // every CONNECT target asked for, in order
	conns   map[net.Conn]struct{}
	closed  bool

	wg sync.WaitGroup // the accept loop and every connection's goroutines
}

// New starts a proxy on 127.0.0.1 with a free port. It stops, and its
// goroutines are waited for, when the test ends.
func New(t testing.TB, opt Options) *Proxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("connectproxy: %v", err)
	}
	p := &Proxy{ln: ln, opt: opt, conns: map[net.Conn]struct{}{}}
	p.wg.Add(1)
	go p.serve()
	t.Cleanup(p.Close)
	return p
}

// Addr is the proxy's host:port.
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

// URL is the proxy's http URL, with the required credentials if any.
func (p *Proxy) URL() *url.URL {
	u := &url.URL{Scheme: "http", Host: p.Addr()}
	if p.opt.User != "" {
		u.User = url.UserPassword(p.opt.User, p.opt.Password)
	}
	return u
}

// Targets returns every CONNECT target asked for so far, refused ones
// included, in order.
func (p *Proxy) Targets() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.targets...)
}

// Refuse makes the proxy answer every CONNECT from now on with status,
// e.g. "403 Forbidden"; "" serves them again.
func (p *Proxy) Refuse(status string) {
	p.mu.Lock()
	p.refuse = status
	p.mu.Unlock()
}

// Close stops the proxy, ends every connection and waits for them.
func (p *Proxy) Close() {
	p.mu.Lock()
	p.closed = true
	for c := range p.conns {
		c.Close()
	}
	p.mu.Unlock()
	p.ln.Close()
	p.wg.Wait()
}

// track adds c to the connections Close ends; false when closed already.
func (p *Proxy) track(c net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return false
	}
	p.conns[c] = struct{}{}
	return true
}

func (p *Proxy) untrack(c net.Conn) {
	p.mu.Lock()
	delete(p.conns, c)
	p.mu.Unlock()
	c.Close()
}

func (p *Proxy) serve() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		if !p.track(c) {
			c.Close()
			return
		}
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			defer p.untrack(c)
			p.handle(c)
		}()
	}
}

// handle serves one client connection: one CONNECT, then the splice.
func (p *Proxy) handle(c net.Conn) {
	c.SetDeadline(time.Now().Add(10 * time.Second))
	br := bufio.NewReader(c)
	req, err := http.ReadRequest(br)
	if err != nil {
		return
	}
	if req.Method != http.MethodConnect {
		io.WriteString(c, "HTTP/1.1 405 Method Not Allowed\r\nContent-Length: 0\r\n\r\n")
		return
	}
	target := req.RequestURI
	p.mu.Lock()
	p.targets = append(p.targets, target)
	refuse := p.refuse
	p.mu.Unlock()
	if p.opt.User != "" && req.Header.Get("Proxy-Authorization") != "Basic "+
		base64.StdEncoding.EncodeToString([]byte(p.opt.User+":"+p.opt.Password)) {
		io.WriteString(c, "HTTP/1.1 407 Proxy Authentication Required\r\n"+
			"Proxy-Authenticate: Basic realm=\"connectproxy\"\r\nContent-Length: 0\r\n\r\n")
		return
	}
	if refuse != "" {
		io.WriteString(c, "HTTP/1.1 "+refuse+"\r\nContent-Length: 0\r\n\r\n")
		return
	}
	up, err := p.dial(target)
	if err != nil {
		io.WriteString(c, "HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n")
		return
	}
	if !p.track(up) {
		up.Close()
		return
	}
	defer p.untrack(up)
	if _, err := io.WriteString(c, "HTTP/1.1 200 Connection established\r\n\r\n"); err != nil {
		return
	}
	c.SetDeadline(time.Time{})
	// What the client sent after its request (it should wait, but need
	// not) goes first.
	if n := br.Buffered(); n > 0 {
		early, _ := br.Peek(n)
		if _, err := up.Write(early); err != nil {
			return
		}
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		io.Copy(up, c)
		closeWrite(up)
	}()
	io.Copy(c, up)
	closeWrite(c)
	<-done
}

// dial connects to target, a host:port, through Options.Hosts.
func (p *Proxy) dial(target string) (net.Conn, error) {
	host, port, err := net.SplitHostPort(target)
	if err != nil {
		return nil, err
	}
	if ip, ok := p.opt.Hosts[host]; ok {
		target = net.JoinHostPort(ip, port)
	}
	return net.DialTimeout("tcp", target, 5*time.Second)
}

func closeWrite(c net.Conn) {
	if cw, ok := c.(interface{ CloseWrite() error }); ok {
		cw.CloseWrite()
	}
}

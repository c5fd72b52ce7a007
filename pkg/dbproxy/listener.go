package dbproxy

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Route is a route as a Listener serves it.
type Route struct {
	// Name is the route's name, what Upstream.Dial is asked for.
	Name string
	// Allow lists the client networks that may use the route; empty allows
	// all.
	Allow []netip.Prefix
	// Default marks the route a PostgreSQL client gets when it names none.
	// A tcp or mysql listener serves its one route whatever this says.
	Default bool
}

// allows reports whether a client at a may use r.
func (r *Route) allows(a netip.Addr) bool {
	if len(r.Allow) == 0 {
		return true
	}
	for _, p := range r.Allow {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// DefaultHandshakeTimeout bounds a client's startup phase when
// Listener.HandshakeTimeout is zero.
const DefaultHandshakeTimeout = 10 * time.Second

// Listener serves the routes on one address.
//
// Set the fields, call SetRoutes and Open to bind and start serving, Close
// to stop accepting. SetRoutes may be called again at any time; clients
// accepted afterwards see the new routes. Connections already accepted run
// until they end or the context given to Open is done; Wait waits for them.
type Listener struct {
	// Addr is the host:port to listen on.
	Addr string
	// Protocol is ProtocolTCP, ProtocolPostgres or ProtocolMySQL; empty
	// means ProtocolTCP.
	Protocol string
	// Upstream opens backends. Required.
	Upstream Upstream
	// Logger; nil means slog.Default().
	Logger *slog.Logger
	// HandshakeTimeout bounds a PostgreSQL or MySQL client's startup
	// phase, before the backend is asked for and again after it is open
	// until the database is ready. Zero means DefaultHandshakeTimeout.
	HandshakeTimeout time.Duration

	// TLS, for PostgreSQL, holds the certificate a client that asks for
	// TLS gets; the listener adds the ALPN protocol "postgresql". Nil
	// means TLS is refused (SSLRequest is answered 'N').
	TLS *tls.Config
	// Domain, for PostgreSQL, is the DNS domain under which a TLS server
	// name picks a route: a client of "sales.db.example.com" with Domain
	// "db.example.com" gets route "sales". Empty means server names pick
	// no route.
	Domain string
	// Cancels maps the cancel keys given to PostgreSQL clients to their
	// sessions. Share one among a server's listeners; nil means one of the
	// listener's own.
	Cancels *CancelKeys

	routes   atomic.Pointer[[]Route]
	tlsConf  *tls.Config // TLS with ALPN, set by Open
	ln       net.Listener
	log      *slog.Logger
	acceptWG sync.WaitGroup // the accept loop
	connWG   sync.WaitGroup // connection handlers
	active   atomic.Int64   // connection handlers running
	closed   chan struct{}
	once     sync.Once
}

// Log attribute keys, the same as the server's.
const (
	keyRoute  = "route"
	keyClient = "client"
	keyAgent  = "agent"
	keyTarget = "target"
	keyReason = "reason"
	keyErr    = "err"
	keyListen = "listen"
)

// SetRoutes replaces the routes the listener serves.
func (l *Listener) SetRoutes(routes []Route) {
	rs := append([]Route(nil), routes...)
	l.routes.Store(&rs)
}

// Routes returns the routes the listener serves.
func (l *Listener) Routes() []Route {
	if p := l.routes.Load(); p != nil {
		return *p
	}
	return nil
}

// Open binds the listener and starts accepting. ctx bounds the life of every
// connection it accepts. If binding fails, Open may be called again.
func (l *Listener) Open(ctx context.Context) error {
	switch l.Protocol {
	case "", ProtocolTCP, ProtocolMySQL, ProtocolPostgres:
	default:
		return fmt.Errorf("protocol %q is not supported (use %s, %s or %s)", l.Protocol, ProtocolTCP, ProtocolPostgres, ProtocolMySQL)
	}
	if l.Upstream == nil {
		return errors.New("dbproxy: Listener.Upstream is nil")
	}
	l.log = l.Logger
	if l.log == nil {
		l.log = slog.Default()
	}
	l.log = l.log.With(keyListen, l.Addr)
	if l.Cancels == nil {
		l.Cancels = &CancelKeys{}
	}
	if l.TLS != nil {
		l.tlsConf = l.TLS.Clone()
		l.tlsConf.NextProtos = []string{PostgresALPN}
		l.tlsConf.MinVersion = max(l.tlsConf.MinVersion, tls.VersionTLS12)
	}
	ln, err := net.Listen("tcp", l.Addr)
	if err != nil {
		return err
	}
	l.ln = ln
	l.closed = make(chan struct{})
	l.acceptWG.Add(1)
	go l.acceptLoop(ctx)
	return nil
}

// BoundAddr is the address actually listened on (useful with port 0), or
// nil before Open has succeeded.
func (l *Listener) BoundAddr() net.Addr {
	if l.ln == nil {
		return nil
	}
	return l.ln.Addr()
}

// Close stops accepting and waits for the accept loop. Connections in
// progress go on.
func (l *Listener) Close() error {
	if l.ln == nil {
		return nil
	}
	var err error
	l.once.Do(func() {
		close(l.closed)
		err = l.ln.Close()
		l.acceptWG.Wait()
	})
	return err
}

// Wait waits for every accepted connection to end.
func (l *Listener) Wait() { l.connWG.Wait() }

// Active is the number of accepted connections still being served.
func (l *Listener) Active() int { return int(l.active.Load()) }

func (l *Listener) handshakeTimeout() time.Duration {
	if l.HandshakeTimeout > 0 {
		return l.HandshakeTimeout
	}
	return DefaultHandshakeTimeout
}

func (l *Listener) acceptLoop(ctx context.Context) {
	defer l.acceptWG.Done()
	var backoff time.Duration
	for {
		conn, err := l.ln.Accept()
		if err != nil {
			select {
			case <-l.closed:
				return
			default:
			}
			if errors.Is(err, net.ErrClosed) {
				return
			}
			// Out of file descriptors and the like: wait, then retry.
			backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
			l.log.Warn("accept failed; retrying", keyErr, err, "retry_in", backoff)
			select {
			case <-time.After(backoff):
			case <-l.closed:
				return
			}
			continue
		}
		backoff = 0
		client := addrPort(conn.RemoteAddr())
		if l.Protocol == ProtocolTCP || l.Protocol == "" {
			// Refused before a goroutine is spent on it.
			r, ok := l.onlyRoute()
			if !ok || !r.allows(client.Addr()) {
				reject(conn)
				l.log.Info("client not allowed", keyRoute, r.Name, keyClient, client.String())
				continue
			}
		}
		l.connWG.Add(1)
		l.active.Add(1)
		go func() {
			defer l.connWG.Done()
			defer l.active.Add(-1)
			switch l.Protocol {
			case ProtocolPostgres:
				l.servePostgres(ctx, conn, client)
			case ProtocolMySQL:
				l.serveMySQL(ctx, conn, client)
			default:
				l.serveTCP(ctx, conn, client)
			}
		}()
	}
}

// onlyRoute returns the route of a listener that serves one.
func (l *Listener) onlyRoute() (Route, bool) {
	rs := l.Routes()
	if len(rs) != 1 {
		return Route{}, false
	}
	return rs[0], true
}

// lookup returns the route called name: the exact name, or else one that
// differs only in case (DNS names come lowercased).
func (l *Listener) lookup(name string) (Route, bool) {
	rs := l.Routes()
	for _, r := range rs {
		if r.Name == name {
			return r, true
		}
	}
	for _, r := range rs {
		if strings.EqualFold(r.Name, name) {
			return r, true
		}
	}
	return Route{}, false
}

// anyAllows reports whether some route of the listener lets a client at a
// in.
func (l *Listener) anyAllows(a netip.Addr) bool {
	for _, r := range l.Routes() {
		if r.allows(a) {
			return true
		}
	}
	return false
}

// notAllowedMessage says a client is refused for its address.
func notAllowedMessage(a netip.Addr) string {
	return fmt.Sprintf("connections from %s are not allowed here", a)
}

// defaultRoute returns the route a client that names none gets.
func (l *Listener) defaultRoute() (Route, bool) {
	for _, r := range l.Routes() {
		if r.Default {
			return r, true
		}
	}
	return Route{}, false
}

func (l *Listener) serveTCP(ctx context.Context, conn net.Conn, client netip.AddrPort) {
	r, _ := l.onlyRoute()
	b, err := l.Upstream.Dial(ctx, &Request{Route: r.Name, Client: client})
	if err != nil {
		conn.Close()
		l.logRefused(r.Name, client, err)
		return
	}
	b.Relay(ctx, conn)
}

// logRefused logs why a client could not be served.
func (l *Listener) logRefused(route string, client netip.AddrPort, err error) {
	attrs := []any{keyRoute, route, keyClient, client.String()}
	var re *RouteError
	if errors.As(err, &re) {
		attrs = append(attrs, keyAgent, re.Agent, keyTarget, re.Target, keyReason, re.Error())
	} else {
		attrs = append(attrs, keyErr, err)
	}
	l.log.Warn("session refused", attrs...)
}

// reject closes conn with a reset, so the client learns at once.
func reject(conn net.Conn) {
	if tc, ok := conn.(*net.TCPConn); ok {
		tc.SetLinger(0)
	}
	conn.Close()
}

func addrPort(a net.Addr) netip.AddrPort {
	var ap netip.AddrPort
	if ta, ok := a.(*net.TCPAddr); ok {
		ap = ta.AddrPort()
	} else {
		ap, _ = netip.ParseAddrPort(a.String())
	}
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
}

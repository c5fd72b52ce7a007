package dbproxy

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"
)

// Listener serves one route's client endpoint.
//
// Set the fields, call Open to bind and start serving, Close to stop
// accepting. Connections already accepted run until they end or the context
// given to Open is done; Wait waits for them.
type Listener struct {
	// Route is the route's name.
	Route string
	// Addr is the host:port to listen on.
	Addr string
	// Protocol is ProtocolTCP; empty means ProtocolTCP.
	Protocol string
	// Allow lists the client networks that may connect; empty allows all.
	// A client outside them is disconnected before any byte is read.
	Allow []netip.Prefix
	// Upstream opens backends. Required.
	Upstream Upstream
	// Logger; nil means slog.Default().
	Logger *slog.Logger

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
)

// Open binds the listener and starts accepting. ctx bounds the life of every
// connection it accepts.
func (l *Listener) Open(ctx context.Context) error {
	switch l.Protocol {
	case "", ProtocolTCP:
	default:
		return fmt.Errorf("route %q: protocol %q is not supported", l.Route, l.Protocol)
	}
	if l.Upstream == nil {
		return errors.New("dbproxy: Listener.Upstream is nil")
	}
	l.log = l.Logger
	if l.log == nil {
		l.log = slog.Default()
	}
	l.log = l.log.With(keyRoute, l.Route)
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

// BoundAddr is the address actually listened on (useful with port 0).
func (l *Listener) BoundAddr() net.Addr { return l.ln.Addr() }

// Close stops accepting and waits for the accept loop. Connections in
// progress go on.
func (l *Listener) Close() error {
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
		if !l.allowed(client.Addr()) {
			reject(conn)
			l.log.Info("client not allowed", keyClient, client.String())
			continue
		}
		l.connWG.Add(1)
		l.active.Add(1)
		go func() {
			defer l.connWG.Done()
			defer l.active.Add(-1)
			l.serve(ctx, conn, client)
		}()
	}
}

func (l *Listener) allowed(a netip.Addr) bool {
	if len(l.Allow) == 0 {
		return true
	}
	for _, p := range l.Allow {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

func (l *Listener) serve(ctx context.Context, conn net.Conn, client netip.AddrPort) {
	b, err := l.Upstream.Dial(ctx, &Request{Route: l.Route, Client: client})
	if err != nil {
		conn.Close()
		attrs := []any{keyClient, client.String()}
		var oe *RouteError
		if errors.As(err, &oe) {
			attrs = append(attrs, keyAgent, oe.Agent, keyTarget, oe.Target, keyReason, oe.Error())
		} else {
			attrs = append(attrs, keyErr, err)
		}
		l.log.Warn("session refused", attrs...)
		return
	}
	b.Relay(ctx, conn)
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

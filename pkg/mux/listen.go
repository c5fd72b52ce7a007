package mux

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"

	"github.com/quic-go/quic-go"
)

// QUICListener accepts QUIC connections and turns them into sessions.
// quic-go runs the handshakes, concurrently, each within HandshakeTimeout.
//
// Every session shares the listener's UDP socket. Close stops accepting and
// aborts handshakes in progress; sessions already accepted keep working,
// and the socket is closed once the last of them has ended.
type QUICListener struct {
	ln *quic.Listener
	tr *quic.Transport
	pc net.PacketConn

	cfg Config

	mu       sync.Mutex
	closed   bool // Close was called
	sessions int  // accepted sessions not yet ended
	released bool // transport and socket closed
}

var _ Listener = (*QUICListener)(nil)

// ListenQUIC listens on the UDP address addr.
func ListenQUIC(addr string, tlsConf *tls.Config, cfg *Config) (*QUICListener, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	pc, err := net.ListenPacket("udp", addr)
	if err != nil {
		return nil, err
	}
	l, err := NewQUICListener(pc, tlsConf, cfg)
	if err != nil {
		pc.Close()
		return nil, err
	}
	return l, nil
}

// NewQUICListener serves sessions from pc, which it owns from now on unless
// it returns an error.
func NewQUICListener(pc net.PacketConn, tlsConf *tls.Config, cfg *Config) (*QUICListener, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	c := cfg.withDefaults()
	raised := processUDPBuffers.prepare(pc)
	tr := newQUICTransport(pc, statelessResetKey(tlsConf))
	ln, err := tr.Listen(quicTLSConfig(tlsConf), quicConfig(c))
	if err != nil {
		tr.Close()
		return nil, fmt.Errorf("quic listen on %s: %w", pc.LocalAddr(), err)
	}
	if !raised {
		processUDPBuffers.check(pc, c.Logger)
	}
	return &QUICListener{ln: ln, tr: tr, pc: pc, cfg: c}, nil
}

// Accept returns the next session whose handshake has completed.
func (l *QUICListener) Accept(ctx context.Context) (Session, error) {
	conn, err := l.ln.Accept(ctx)
	if err != nil {
		if errors.Is(err, quic.ErrServerClosed) {
			return nil, ErrListenerClosed
		}
		if ctxErr := ctx.Err(); ctxErr != nil {
			return nil, ctxErr
		}
		return nil, err
	}
	if !l.addSession() {
		conn.CloseWithError(codeSessionClosed, "listener closed")
		return nil, ErrListenerClosed
	}
	return newQUICSession(conn, l.cfg, l.removeSession), nil
}

// addSession counts one more session on the socket, unless the listener is
// closed.
func (l *QUICListener) addSession() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return false
	}
	l.sessions++
	return true
}

// removeSession is a session's release: the last one out after Close
// closes the socket.
func (l *QUICListener) removeSession() {
	l.mu.Lock()
	l.sessions--
	last := l.closed && l.sessions == 0
	l.mu.Unlock()
	if last {
		l.release()
	}
}

func (l *QUICListener) release() {
	l.mu.Lock()
	if l.released {
		l.mu.Unlock()
		return
	}
	l.released = true
	l.mu.Unlock()
	l.tr.Close()
	l.pc.Close()
}

// Addr is the UDP address listened on.
func (l *QUICListener) Addr() net.Addr { return l.pc.LocalAddr() }

// Close stops accepting, aborts handshakes in progress and waits for them.
// Handshakes that completed but were never accepted are closed too.
func (l *QUICListener) Close() error {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return nil
	}
	l.closed = true
	l.mu.Unlock()

	// quic-go refuses the handshakes in flight and waits for them; after
	// that Accept hands out what is queued without blocking.
	err := l.ln.Close()
	for {
		conn, aerr := l.ln.Accept(context.Background())
		if aerr != nil {
			break
		}
		conn.CloseWithError(codeSessionClosed, "listener closed")
	}

	l.mu.Lock()
	idle := l.sessions == 0
	l.mu.Unlock()
	if idle {
		l.release()
	}
	return err
}

// MultiListener serves sessions over several transports at once, TLS on
// TCP and QUIC on UDP, on one port number. Accept returns a session from
// whichever transport has one.
type MultiListener struct {
	listeners  []Listener
	transports []string
	log        *slog.Logger

	sessions chan Session
	ctx      context.Context // canceled by Close
	cancel   context.CancelFunc
	wg       sync.WaitGroup
	running  atomic.Int32  // serve loops still running
	stopped  chan struct{} // closed when the last serve loop returns
	once     sync.Once
}

var _ Listener = (*MultiListener)(nil)

// listenRetries bounds the attempts at finding a port number free for both
// TCP and UDP when addr asks for any port.
const listenRetries = 8

// Listen listens for sessions on addr over the given transports
// (TransportTLS, TransportQUIC; none means both), TLS on TCP and QUIC on
// UDP with the same port number. With port 0 it picks a number free for
// both.
func Listen(addr string, tlsConf *tls.Config, cfg *Config, transports ...string) (*MultiListener, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	want, err := parseTransports(transports)
	if err != nil {
		return nil, err
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, fmt.Errorf("mux: listen address %q: %w", addr, err)
	}
	var lns []Listener
	for attempt := 1; ; attempt++ {
		lns, err = listenOnce(host, port, tlsConf, cfg, want)
		if err == nil || port != "0" || !errors.Is(err, syscall.EADDRINUSE) || attempt == listenRetries {
			break
		}
	}
	if err != nil {
		return nil, err
	}
	return newMultiListener(lns, want, cfg.withDefaults().Logger), nil
}

// parseTransports checks transport names; none means all. TLS comes first
// whatever the order given: with port 0, TCP picks the port number.
func parseTransports(names []string) ([]string, error) {
	all := []string{TransportTLS, TransportQUIC}
	if len(names) == 0 {
		return all, nil
	}
	for _, n := range names {
		if !slices.Contains(all, n) {
			return nil, fmt.Errorf("mux: unknown transport %q (want %q or %q)", n, TransportTLS, TransportQUIC)
		}
	}
	return slices.DeleteFunc(all, func(t string) bool { return !slices.Contains(names, t) }), nil
}

// listenOnce binds TCP first, then UDP on the port number TCP got.
func listenOnce(host, port string, tlsConf *tls.Config, cfg *Config, transports []string) ([]Listener, error) {
	var lns []Listener
	closeAll := func() {
		for _, l := range lns {
			l.Close()
		}
	}
	for _, tr := range transports {
		addr := net.JoinHostPort(host, port)
		var (
			l   Listener
			err error
		)
		switch tr {
		case TransportTLS:
			l, err = ListenTLS(addr, tlsConf, cfg)
		case TransportQUIC:
			l, err = ListenQUIC(addr, tlsConf, cfg)
		}
		if err != nil {
			closeAll()
			return nil, fmt.Errorf("mux: listen for %s on %s: %w", tr, addr, err)
		}
		lns = append(lns, l)
		_, port, _ = net.SplitHostPort(l.Addr().String())
	}
	return lns, nil
}

func newMultiListener(lns []Listener, transports []string, log *slog.Logger) *MultiListener {
	ctx, cancel := context.WithCancel(context.Background())
	m := &MultiListener{
		listeners:  lns,
		transports: transports,
		log:        log,
		sessions:   make(chan Session),
		ctx:        ctx,
		cancel:     cancel,
		stopped:    make(chan struct{}),
	}
	m.running.Store(int32(len(lns)))
	for _, l := range lns {
		m.wg.Add(1)
		go m.serve(l)
	}
	return m
}

// serve passes l's sessions on to Accept until l or m closes.
func (m *MultiListener) serve(l Listener) {
	defer m.wg.Done()
	defer func() {
		if m.running.Add(-1) == 0 {
			close(m.stopped)
		}
	}()
	for {
		s, err := l.Accept(m.ctx)
		if err != nil {
			if m.ctx.Err() == nil && !errors.Is(err, ErrListenerClosed) {
				m.log.Error("listener stopped", "addr", l.Addr().String(), "err", err)
			}
			return
		}
		select {
		case m.sessions <- s:
		case <-m.ctx.Done():
			s.Close()
			return
		}
	}
}

// Accept returns the next session from any of the transports.
func (m *MultiListener) Accept(ctx context.Context) (Session, error) {
	select {
	case s := <-m.sessions:
		return s, nil
	case <-m.stopped:
		return nil, ErrListenerClosed
	case <-m.ctx.Done():
		return nil, ErrListenerClosed
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// Addr is the address of the first transport listened on: TCP when TLS is
// served. QUIC, when served too, listens on UDP with the same port number.
func (m *MultiListener) Addr() net.Addr { return m.listeners[0].Addr() }

// Addrs are the addresses listened on, one per transport, in the order of
// Transports.
func (m *MultiListener) Addrs() []net.Addr {
	out := make([]net.Addr, len(m.listeners))
	for i, l := range m.listeners {
		out[i] = l.Addr()
	}
	return out
}

// Transports names the transports served: TransportTLS, TransportQUIC or
// both.
func (m *MultiListener) Transports() []string { return slices.Clone(m.transports) }

// Close closes every transport's listener and waits for them.
func (m *MultiListener) Close() error {
	var err error
	m.once.Do(func() {
		m.cancel()
		for _, l := range m.listeners {
			err = errors.Join(err, l.Close())
		}
		m.wg.Wait()
	})
	return err
}

// statelessResetKey derives the key of QUIC stateless resets from the
// server's private key, so that it is the same after a restart. A server
// that crashed and came back then answers packets of its old connections
// with a reset their peers accept, and an agent reconnects at once instead
// of waiting for its heartbeat timeout, as a TCP reset would make it. The
// derivation is one-way: the key reveals nothing of the private key. Nil
// (no resets) when the config has no certificate to derive from.
//
// With GetCertificate, the key comes from the certificate current when the
// listener opens; a certificate reloaded later does not change it.
func statelessResetKey(tlsConf *tls.Config) *quic.StatelessResetKey {
	if tlsConf == nil {
		return nil
	}
	var cert *tls.Certificate
	switch {
	case len(tlsConf.Certificates) > 0:
		cert = &tlsConf.Certificates[0]
	case tlsConf.GetCertificate != nil:
		// A certificate that can be replaced (reloaded): the one current
		// when the listener opens.
		cert, _ = tlsConf.GetCertificate(&tls.ClientHelloInfo{})
	}
	if cert == nil {
		return nil
	}
	der, err := x509.MarshalPKCS8PrivateKey(cert.PrivateKey)
	if err != nil {
		return nil
	}
	mac := hmac.New(sha256.New, der)
	mac.Write([]byte("tunnel quic stateless reset key v1"))
	var key quic.StatelessResetKey
	copy(key[:], mac.Sum(nil))
	return &key
}

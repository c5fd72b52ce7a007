package mux

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"time"
)

// alpnTLS names the tunnel protocol in the TLS handshake, so a TLS endpoint
// that speaks something else fails the handshake instead of the first read.
const alpnTLS = "tunnel-yamux/1"

// tlsConfig returns a copy of base fit for the tunnel: TLS 1.3 only, the
// tunnel's ALPN name, fixed-size records.
func tlsConfig(base *tls.Config) *tls.Config {
	c := base.Clone()
	c.MinVersion = tls.VersionTLS13
	c.NextProtos = []string{alpnTLS}
	// Records start small on a new connection, which helps web pages and
	// costs a bulk tunnel throughput; a tunnel lives long and moves bulk.
	c.DynamicRecordSizingDisabled = true
	return c
}

// DialTLS connects to addr over TCP (through cfg.Dial when set), runs the
// TLS handshake with tlsConf and returns the client side of a session.
func DialTLS(ctx context.Context, addr string, tlsConf *tls.Config, cfg *Config) (Session, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	c := cfg.withDefaults()
	dial := c.Dial
	if dial == nil {
		var d net.Dialer
		dial = d.DialContext
	}
	dctx, cancel := context.WithTimeout(ctx, c.HandshakeTimeout)
	defer cancel()
	raw, err := dial(dctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	s, err := ClientTLS(ctx, raw, tlsConf, cfg)
	if err != nil {
		raw.Close()
		return nil, err
	}
	return s, nil
}

// ClientTLS runs the client side of the handshake over an established
// connection (a direct TCP connection, or one through a proxy) and returns
// the session. On error the caller still owns conn.
func ClientTLS(ctx context.Context, conn net.Conn, tlsConf *tls.Config, cfg *Config) (Session, error) {
	return startTLS(ctx, conn, tlsConf, cfg, true)
}

// ServerTLS runs the server side of the handshake over an accepted connection
// and returns the session. On error the caller still owns conn.
func ServerTLS(ctx context.Context, conn net.Conn, tlsConf *tls.Config, cfg *Config) (Session, error) {
	return startTLS(ctx, conn, tlsConf, cfg, false)
}

// startTLS runs one side of the handshake over conn, under the cork that
// will carry the session's frames, and starts yamux on top.
func startTLS(ctx context.Context, conn net.Conn, tlsConf *tls.Config, cfg *Config, client bool) (Session, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	c := cfg.withDefaults()
	wc := newCorkConn(conn)
	var tc *tls.Conn
	if client {
		tc = tls.Client(wc, tlsConfig(tlsConf))
	} else {
		tc = tls.Server(wc, tlsConfig(tlsConf))
	}
	start := time.Now()
	if err := handshake(ctx, tc, conn, c.HandshakeTimeout); err != nil {
		return nil, err
	}
	if cfg == nil || cfg.StreamWindow == 0 {
		c.StreamWindow = autoStreamWindow(time.Since(start))
	}
	wc.startAsync()
	return newYamuxSession(tc, wc, client, c)
}

// Bounds of the stream window sized to the path (autoStreamWindow).
const (
	minAutoStreamWindow = 4 << 20
	autoWindowRate      = 250_000_000 // bytes per second: 2 Gbit/s
)

// autoStreamWindow sizes a yamux session's stream window to its path, from
// how long the TLS handshake took: about one round trip, plus the work of
// the handshake itself. yamux replenishes a window once half of it is
// consumed, so a stream moves about half its window per round trip; the
// window is twice what 2 Gbit/s moves in the handshake's time, at least
// 4 MiB and at most DefaultStreamWindow.
//
// A fixed large window costs on a short path: when a stream's reader is
// slower than the link, yamux buffers up to a window of data per stream,
// and with many busy streams that buffering (allocated, zeroed, copied)
// costs more than the window gains. On loopback 4 MiB is ample; a path
// of 35 ms or more gets 16 MiB.
func autoStreamWindow(handshake time.Duration) uint32 {
	w := 2 * handshake.Seconds() * autoWindowRate
	return uint32(min(max(w, minAutoStreamWindow), DefaultStreamWindow))
}

func handshake(ctx context.Context, tc *tls.Conn, raw net.Conn, timeout time.Duration) error {
	// The deadline bounds every byte of the handshake, including a peer that
	// sends nothing at all; the context lets the owner abort it sooner.
	if err := raw.SetDeadline(time.Now().Add(timeout)); err != nil {
		return err
	}
	if err := tc.HandshakeContext(ctx); err != nil {
		return fmt.Errorf("tls handshake: %w", err)
	}
	if tc.ConnectionState().Version != tls.VersionTLS13 {
		return errors.New("tls handshake: peer did not negotiate TLS 1.3")
	}
	return raw.SetDeadline(time.Time{})
}

// TLSListener accepts TCP connections and turns them into sessions. Each
// handshake runs in its own goroutine under HandshakeTimeout; failures are
// logged and the connection closed.
type TLSListener struct {
	ln      net.Listener
	tlsConf *tls.Config
	cfg     Config
	log     *slog.Logger

	sessions   chan Session
	handshakes chan struct{}   // one token per handshake in progress
	ctx        context.Context // canceled by Close
	cancel     context.CancelFunc
	wg         sync.WaitGroup
	closeOnce  sync.Once
}

var _ Listener = (*TLSListener)(nil)

// ListenTLS listens on the TCP address addr.
func ListenTLS(addr string, tlsConf *tls.Config, cfg *Config) (*TLSListener, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	return NewTLSListener(ln, tlsConf, cfg), nil
}

// NewTLSListener serves sessions from ln, which it owns from now on.
func NewTLSListener(ln net.Listener, tlsConf *tls.Config, cfg *Config) *TLSListener {
	c := cfg.withDefaults()
	ctx, cancel := context.WithCancel(context.Background())
	l := &TLSListener{
		ln:         ln,
		tlsConf:    tlsConf,
		cfg:        c,
		log:        c.Logger,
		sessions:   make(chan Session),
		handshakes: make(chan struct{}, c.MaxHandshakes),
		ctx:        ctx,
		cancel:     cancel,
	}
	l.wg.Add(1)
	go l.acceptLoop()
	return l
}

func (l *TLSListener) acceptLoop() {
	defer l.wg.Done()
	var backoff time.Duration
	for {
		// At MaxHandshakes, stop accepting: further peers wait in the
		// kernel's queue instead of each costing a goroutine and TLS state.
		select {
		case l.handshakes <- struct{}{}:
		case <-l.ctx.Done():
			return
		}
		conn, err := l.ln.Accept()
		if err != nil {
			<-l.handshakes
			if l.ctx.Err() != nil {
				return
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() || isTemporaryAcceptErr(err) {
				// Out of file descriptors and the like: wait and retry
				// rather than spin or give up.
				backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
				l.log.Warn("accept failed; retrying", "err", err, "retry_in", backoff)
				select {
				case <-time.After(backoff):
				case <-l.ctx.Done():
					return
				}
				continue
			}
			l.log.Error("listener stopped", "err", err)
			l.cancel()
			return
		}
		backoff = 0
		l.wg.Add(1)
		go l.handshake(conn)
	}
}

func (l *TLSListener) handshake(conn net.Conn) {
	defer l.wg.Done()
	s, err := ServerTLS(l.ctx, conn, l.tlsConf, &l.cfg)
	<-l.handshakes
	if err != nil {
		conn.Close()
		if l.ctx.Err() == nil {
			l.log.Info("handshake failed", "remote", conn.RemoteAddr().String(), "err", err)
		}
		return
	}
	select {
	case l.sessions <- s:
	case <-l.ctx.Done():
		s.Close()
	}
}

// Accept returns the next session whose handshake has completed.
func (l *TLSListener) Accept(ctx context.Context) (Session, error) {
	select {
	case s := <-l.sessions:
		return s, nil
	case <-l.ctx.Done():
		return nil, ErrListenerClosed
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// Addr is the TCP address listened on.
func (l *TLSListener) Addr() net.Addr { return l.ln.Addr() }

// Close stops accepting, aborts handshakes in progress and waits for them.
func (l *TLSListener) Close() error {
	var err error
	l.closeOnce.Do(func() {
		l.cancel()
		err = l.ln.Close()
		l.wg.Wait()
	})
	return err
}

func isTemporaryAcceptErr(err error) bool {
	var ne interface{ Temporary() bool }
	return errors.As(err, &ne) && ne.Temporary()
}

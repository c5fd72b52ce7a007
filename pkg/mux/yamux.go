package mux

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync/atomic"
	"time"

	"github.com/hashicorp/yamux"
)

// yamuxSession is a Session made of yamux over a TLS connection.
type yamuxSession struct {
	ys    *yamux.Session
	fc    *frameConn
	state tls.ConnectionState
}

var _ Session = (*yamuxSession)(nil)

func newYamuxSession(conn *tls.Conn, raw net.Conn, client bool, cfg Config) (*yamuxSession, error) {
	ycfg := yamux.DefaultConfig()
	ycfg.AcceptBacklog = cfg.AcceptBacklog
	ycfg.EnableKeepAlive = true
	ycfg.KeepAliveInterval = cfg.KeepAliveInterval
	ycfg.ConnectionWriteTimeout = cfg.WriteTimeout
	ycfg.MaxStreamWindowSize = cfg.StreamWindow
	// A stream the peer never acknowledges means the peer is gone; the
	// session's keepalive notices that too, so this is only a backstop.
	ycfg.StreamOpenTimeout = 2 * cfg.HandshakeTimeout
	ycfg.StreamCloseTimeout = cfg.HalfCloseTimeout
	ycfg.LogOutput = nil
	ycfg.Logger = yamuxLogger{cfg.Logger}

	wc := &frameConn{Conn: conn, raw: raw}
	var (
		ys  *yamux.Session
		err error
	)
	if client {
		ys, err = yamux.Client(wc, ycfg)
	} else {
		ys, err = yamux.Server(wc, ycfg)
	}
	if err != nil {
		return nil, fmt.Errorf("mux: yamux: %w", err)
	}
	return &yamuxSession{ys: ys, fc: wc, state: conn.ConnectionState()}, nil
}

func (s *yamuxSession) OpenStream(ctx context.Context) (Stream, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	// yamux blocks in OpenStream only while AcceptBacklog streams await the
	// peer's acknowledgement, and gives up when the session ends; so the
	// context is honoured at the start and by the caller's deadline on the
	// first write.
	st, err := s.ys.OpenStream()
	if err != nil {
		return nil, mapYamuxErr(err)
	}
	return newYamuxStream(st), nil
}

func (s *yamuxSession) AcceptStream(ctx context.Context) (Stream, error) {
	st, err := s.ys.AcceptStreamWithContext(ctx)
	if err != nil {
		if ctxErr := ctx.Err(); ctxErr != nil {
			return nil, ctxErr
		}
		return nil, mapYamuxErr(err)
	}
	return newYamuxStream(st), nil
}

func (s *yamuxSession) Close() error                         { return s.ys.Close() }
func (s *yamuxSession) Done() <-chan struct{}                { return s.ys.CloseChan() }
func (s *yamuxSession) NumStreams() int                      { return s.ys.NumStreams() }
func (s *yamuxSession) LocalAddr() net.Addr                  { return s.ys.LocalAddr() }
func (s *yamuxSession) RemoteAddr() net.Addr                 { return s.ys.RemoteAddr() }
func (s *yamuxSession) ConnectionState() tls.ConnectionState { return s.state }
func (s *yamuxSession) Transport() string                    { return TransportTLS }

func (s *yamuxSession) Stats() Stats {
	return Stats{BytesSent: s.fc.sent.Load(), BytesReceived: s.fc.received.Load()}
}

func mapYamuxErr(err error) error {
	switch {
	case errors.Is(err, yamux.ErrSessionShutdown), errors.Is(err, yamux.ErrRemoteGoAway):
		return fmt.Errorf("%w: %v", ErrSessionClosed, err)
	}
	return err
}

// yamuxStream adapts a yamux stream to Stream. yamux's own Close only ends
// the write side (it sends FIN) and leaves blocked reads waiting; Close here
// also ends the read side, as net.Conn promises.
type yamuxStream struct {
	*yamux.Stream
	closed atomic.Bool
}

func newYamuxStream(st *yamux.Stream) *yamuxStream { return &yamuxStream{Stream: st} }

// pastDeadline wakes blocked reads at once.
var pastDeadline = time.Unix(1, 0)

func (s *yamuxStream) Read(p []byte) (int, error) {
	n, err := s.Stream.Read(p)
	if err != nil && s.closed.Load() {
		return n, net.ErrClosed
	}
	return n, err
}

func (s *yamuxStream) Write(p []byte) (int, error) {
	n, err := s.Stream.Write(p)
	if err != nil && s.closed.Load() {
		return n, net.ErrClosed
	}
	return n, err
}

func (s *yamuxStream) CloseWrite() error { return s.Stream.Close() }

func (s *yamuxStream) Close() error {
	if s.closed.Swap(true) {
		return nil
	}
	_ = s.Stream.SetReadDeadline(pastDeadline)
	return s.Stream.Close()
}

func (s *yamuxStream) SetReadDeadline(t time.Time) error {
	if s.closed.Load() {
		return net.ErrClosed
	}
	return s.Stream.SetReadDeadline(t)
}

func (s *yamuxStream) SetDeadline(t time.Time) error {
	if err := s.SetReadDeadline(t); err != nil {
		return err
	}
	return s.Stream.SetWriteDeadline(t)
}

// frameConn sits between yamux and the TLS connection.
//
// yamux writes each data frame as two writes, the 12-byte header and then
// the body, and over TLS each write becomes its own record: a second record,
// MAC and syscall per frame. frameConn holds back a data header and sends it
// in one write with the start of the body that always follows it.
//
// It also counts the bytes that pass, for Session.Stats.
//
// Close closes the TCP connection underneath without a TLS close_notify,
// which could block for seconds on a peer that stopped reading; yamux has
// already said goodbye in its own protocol where it could.
type frameConn struct {
	net.Conn // the TLS connection
	raw      net.Conn

	sent, received atomic.Uint64

	// Owned by yamux's single send loop.
	hdr     [yamuxHeaderSize]byte
	pending bool
	buf     []byte
}

func (c *frameConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.received.Add(uint64(n))
	return n, err
}

const (
	yamuxHeaderSize = 12
	yamuxTypeData   = 0
	// tlsRecordPayload is the largest TLS record plaintext.
	tlsRecordPayload = 16 << 10
)

func (c *frameConn) Write(p []byte) (int, error) {
	n, err := c.write(p)
	c.sent.Add(uint64(n))
	return n, err
}

func (c *frameConn) write(p []byte) (int, error) {
	if !c.pending {
		if len(p) == yamuxHeaderSize && p[1] == yamuxTypeData && frameLength(p) > 0 {
			copy(c.hdr[:], p)
			c.pending = true
			return len(p), nil
		}
		return c.Conn.Write(p)
	}
	c.pending = false
	n := min(len(p), tlsRecordPayload-yamuxHeaderSize)
	c.buf = append(append(c.buf[:0], c.hdr[:]...), p[:n]...)
	if _, err := c.Conn.Write(c.buf); err != nil {
		return 0, err
	}
	if n == len(p) {
		return n, nil
	}
	m, err := c.Conn.Write(p[n:])
	return n + m, err
}

func frameLength(h []byte) uint32 {
	return uint32(h[8])<<24 | uint32(h[9])<<16 | uint32(h[10])<<8 | uint32(h[11])
}

func (c *frameConn) Close() error { return c.raw.Close() }

// yamuxLogger routes yamux's log lines into slog. yamux tags its lines
// "[ERR]" or "[WARN]"; most of them describe a connection that is already
// going away, which the session's owner reports in its own words, so they
// are kept at debug level unless yamux calls them errors.
type yamuxLogger struct{ l *slog.Logger }

func (y yamuxLogger) Print(v ...any)                 { y.log(fmt.Sprint(v...)) }
func (y yamuxLogger) Println(v ...any)               { y.log(fmt.Sprintln(v...)) }
func (y yamuxLogger) Printf(format string, v ...any) { y.log(fmt.Sprintf(format, v...)) }

func (y yamuxLogger) log(msg string) {
	msg = strings.TrimSpace(msg)
	level := slog.LevelDebug
	if rest, ok := strings.CutPrefix(msg, "[ERR] "); ok {
		msg = rest
		if !isClosedConnMessage(msg) {
			level = slog.LevelWarn
		}
	} else if rest, ok := strings.CutPrefix(msg, "[WARN] "); ok {
		msg = rest
	}
	y.l.Log(context.Background(), level, msg)
}

func isClosedConnMessage(msg string) bool {
	return strings.Contains(msg, net.ErrClosed.Error()) ||
		strings.Contains(msg, io.EOF.Error()) ||
		strings.Contains(msg, "connection reset")
}

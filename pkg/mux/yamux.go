package mux

import (
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
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

func newYamuxSession(conn *tls.Conn, raw *corkConn, client bool, cfg Config) (*yamuxSession, error) {
	ycfg := yamux.DefaultConfig()
	ycfg.AcceptBacklog = cfg.AcceptBacklog
	// yamux's keepalive gives up on a session when one ping waits longer
	// than the write timeout, and under load a ping waits in the same queue
	// as megabytes of data: it would kill busy, healthy tunnels. The owner's
	// heartbeat keeps the connection talking and watches for silence.
	ycfg.EnableKeepAlive = false
	ycfg.ConnectionWriteTimeout = cfg.WriteTimeout
	ycfg.MaxStreamWindowSize = cfg.StreamWindow
	// yamux closes the whole session when a stream it opened is not
	// acknowledged in time; with a live peer that takes one round trip.
	ycfg.StreamOpenTimeout = cfg.WriteTimeout
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
	// yamux's OpenStream takes no context. It blocks only while
	// AcceptBacklog opened streams await the peer's acknowledgement, and
	// gives up when the session ends; the context is checked before it,
	// and callers bound the stream's first exchange with a deadline.
	st, err := s.ys.OpenStream()
	if err != nil {
		return nil, mapYamuxErr(err)
	}
	return &yamuxStream{Stream: st, fc: s.fc}, nil
}

func (s *yamuxSession) AcceptStream(ctx context.Context) (Stream, error) {
	st, err := s.ys.AcceptStreamWithContext(ctx)
	if err != nil {
		if ctxErr := ctx.Err(); ctxErr != nil {
			return nil, ctxErr
		}
		return nil, mapYamuxErr(err)
	}
	return &yamuxStream{Stream: st, fc: s.fc}, nil
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
// also ends the read side, as net.Conn promises. yamux has no public reset,
// though it honours one from the peer: Reset writes the RST frame itself
// (see frameConn.inject).
type yamuxStream struct {
	*yamux.Stream
	fc          *frameConn
	closed      atomic.Bool // Close or Reset was called
	remoteReset atomic.Bool // the peer reset the stream
}

// pastDeadline wakes blocked reads at once.
var pastDeadline = time.Unix(1, 0)

func (s *yamuxStream) Read(p []byte) (int, error) {
	n, err := s.Stream.Read(p)
	if err == io.EOF && s.Stream.Session().IsClosed() && !s.closed.Load() {
		// yamux ends the streams of a dead session as if each peer had
		// closed its side cleanly; a truncated exchange must not look
		// complete. (A FIN that came just before the session died is
		// reported as a failure too: the safe side.)
		return n, fmt.Errorf("%w: the connection ended", ErrSessionClosed)
	}
	return n, s.mapErr(err)
}

func (s *yamuxStream) Write(p []byte) (int, error) {
	n, err := s.Stream.Write(p)
	return n, s.mapErr(err)
}

func (s *yamuxStream) mapErr(err error) error {
	switch {
	case err == nil:
		return nil
	case s.closed.Load():
		return net.ErrClosed
	case errors.Is(err, yamux.ErrConnectionReset):
		s.remoteReset.Store(true)
		return ErrStreamReset
	}
	return err
}

func (s *yamuxStream) CloseWrite() error { return s.Stream.Close() }

func (s *yamuxStream) Close() error {
	if s.closed.Swap(true) {
		return nil
	}
	_ = s.Stream.SetReadDeadline(pastDeadline)
	return s.Stream.Close()
}

// Reset sends the peer a RST for the stream, then closes it here. yamux
// frees the local stream once its half-close timeout passes, as the peer,
// having reset it, will not answer the FIN.
func (s *yamuxStream) Reset() error {
	if s.closed.Swap(true) {
		return nil
	}
	_ = s.Stream.SetReadDeadline(pastDeadline)
	var err error
	if !s.remoteReset.Load() {
		err = s.fc.inject(rstFrame(s.StreamID()))
	}
	if cerr := s.Stream.Close(); err == nil {
		err = cerr
	}
	return err
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
// in one write with the start of the body that always follows it. Under the
// TLS connection, raw collects the records of each frame so that the frame
// leaves in one syscall however many records it spans.
//
// It also writes frames of its own between yamux's (inject), counts the
// bytes that pass for Session.Stats, and on Close closes the TCP connection
// underneath without a TLS close_notify, which could block for seconds on a
// peer that stopped reading; yamux has said goodbye in its own protocol
// where it could.
type frameConn struct {
	net.Conn           // the TLS connection
	raw      *corkConn // the TCP connection under conn

	sent, received atomic.Uint64

	mu      sync.Mutex // yamux's send loop (Write) and inject
	hdr     [yamuxHeaderSize]byte
	pending bool   // hdr holds a data header whose body comes next
	queued  []byte // injected frames waiting for the frame in progress to end
	buf     []byte
}

const (
	yamuxHeaderSize      = 12
	yamuxTypeData        = 0
	yamuxTypeWindow      = 1
	yamuxFlagRST         = 8
	tlsRecordPayload     = 16 << 10 // the largest TLS record plaintext
	yamuxProtocolVersion = 0
)

// rstFrame is a yamux window update with the RST flag: the peer's yamux
// resets the stream, failing its reads and writes, and forgets it.
func rstFrame(id uint32) []byte {
	f := make([]byte, yamuxHeaderSize)
	f[0], f[1] = yamuxProtocolVersion, yamuxTypeWindow
	binary.BigEndian.PutUint16(f[2:], yamuxFlagRST)
	binary.BigEndian.PutUint32(f[4:], id)
	return f
}

func (c *frameConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.received.Add(uint64(n))
	return n, err
}

func (c *frameConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.raw.cork(len(p))
	n, err := c.write(p)
	c.sent.Add(uint64(n))
	if err == nil && !c.pending && len(c.queued) > 0 {
		q := c.queued
		c.queued = nil
		m, qerr := c.Conn.Write(q)
		c.sent.Add(uint64(m))
		err = qerr
	}
	if uerr := c.raw.uncork(); err == nil {
		err = uerr
	}
	return n, err
}

func (c *frameConn) write(p []byte) (int, error) {
	if !c.pending {
		if len(p) == yamuxHeaderSize && p[1] == yamuxTypeData && binary.BigEndian.Uint32(p[8:]) > 0 {
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

// inject writes a whole frame of its own between yamux's frames: at once
// when none is in progress, else right after the current one.
func (c *frameConn) inject(frame []byte) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.pending {
		c.queued = append(c.queued, frame...)
		return nil
	}
	n, err := c.Conn.Write(frame)
	c.sent.Add(uint64(n))
	return err
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

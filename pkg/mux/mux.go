// Package mux carries many logical streams over one authenticated connection
// between a tunnel agent and a tunnel server.
//
// A Session is one such connection; a Stream is one logical, ordered,
// flow-controlled byte stream inside it, with a half-close. There are two
// implementations behind the same interfaces: yamux over TLS 1.3 on TCP
// (DialTLS, ListenTLS) and QUIC (DialQUIC, ListenQUIC). Listen serves both
// on one port number, TCP and UDP. Authentication is the same over both:
// Session.ConnectionState carries the peer's certificates either way.
//
// The package knows nothing about agents, routes or databases: callers bring
// their own tls.Config (see pkg/auth) and their own protocol on the streams.
package mux

import (
	"context"
	"crypto/tls"
	"errors"
	"log/slog"
	"net"
	"time"
)

// Transport names, as reported by Session.Transport.
const (
	TransportTLS  = "tls"
	TransportQUIC = "quic"
)

var (
	// ErrSessionClosed is returned by operations on a session that has ended.
	ErrSessionClosed = errors.New("mux: session closed")
	// ErrListenerClosed is returned by Accept after Close.
	ErrListenerClosed = errors.New("mux: listener closed")
	// ErrStreamReset is returned by reads and writes on a stream the peer
	// has reset.
	ErrStreamReset = errors.New("mux: stream reset by peer")
)

// Stream is one logical connection inside a Session.
//
// Close ends both directions: blocked reads and writes return, and the peer
// reads io.EOF after the data already written. CloseWrite ends only the write
// direction; reading goes on until the peer ends its own. Reset ends both
// directions abruptly, like a TCP reset: the peer's reads and writes fail
// with ErrStreamReset instead of seeing a clean end, and data still in
// flight may be lost. Use it when a session fails, so the failure reaches
// the other end as a failure.
type Stream interface {
	net.Conn
	CloseWrite() error
	Reset() error
}

// Session is one multiplexed connection to a peer.
type Session interface {
	// OpenStream opens a new stream. The peer sees it once it has been
	// written to; callers write a header at once.
	OpenStream(ctx context.Context) (Stream, error)
	// AcceptStream waits for the next stream the peer opens.
	AcceptStream(ctx context.Context) (Stream, error)
	// Close ends the session and every stream in it.
	Close() error
	// Done is closed once the session has ended, for whatever reason.
	Done() <-chan struct{}
	// NumStreams is the number of streams currently open.
	NumStreams() int
	LocalAddr() net.Addr
	RemoteAddr() net.Addr
	// ConnectionState is the TLS state of the handshake that set up the
	// session: the peer's certificates, the negotiated version.
	ConnectionState() tls.ConnectionState
	// Transport is TransportTLS or TransportQUIC.
	Transport() string
	// Stats counts the bytes moved on the connection, all streams and
	// framing included. A count that stops growing while the peer should be
	// sending is how a silent, dead link shows.
	Stats() Stats
}

// Stats are a session's byte counts on the wire (after TLS or QUIC framing
// is removed, before the mux's own framing is).
type Stats struct {
	BytesSent     uint64
	BytesReceived uint64
}

// Listener yields authenticated sessions. Handshakes run concurrently, so a
// slow or hostile peer never delays the others.
type Listener interface {
	Accept(ctx context.Context) (Session, error)
	Addr() net.Addr
	// Close stops listening, aborts handshakes in progress and waits for
	// them. Sessions already returned by Accept are the caller's.
	Close() error
}

// Config tunes a session. The zero value, or a nil *Config, means defaults.
type Config struct {
	// HandshakeTimeout bounds the TLS handshake. Default 10s.
	HandshakeTimeout time.Duration

	// StreamWindow is the most a peer may send on one stream before the
	// reader consumes it: the per-stream flow-control window, and the most
	// a stream buffers when its reader is slower than the link. yamux
	// replenishes it once half is consumed, so one stream moves about half
	// of it per round trip. Zero sizes it to the path: over TLS from the
	// handshake's duration, 4 MiB on a short path up to 16 MiB
	// (DefaultStreamWindow), which keeps a 2 Gbit/s link with 35 ms RTT
	// full; over QUIC, quic-go tunes it from a quarter of 16 MiB.
	StreamWindow uint32

	// WriteTimeout is how long a write may wait for its turn on the
	// connection before it fails: a safety valve for a connection that
	// accepts no data. Default 60s; the owner's heartbeat is expected to
	// notice a dead connection much sooner. TLS only: QUIC's own loss
	// recovery and IdleTimeout end a connection that accepts nothing.
	WriteTimeout time.Duration

	// AcceptBacklog is how many streams may wait for AcceptStream, and how
	// many opened streams may wait for the peer's acknowledgement. Default 1024.
	// TLS only: over QUIC, MaxStreams bounds both.
	AcceptBacklog int

	// MaxHandshakes caps the handshakes a Listener runs at once; further
	// connections wait in the kernel's accept queue. Default 256.
	// TLS only: quic-go runs QUIC handshakes itself, without this cap.
	MaxHandshakes int

	// HalfCloseTimeout bounds how long a stream whose write side was closed
	// may wait for the peer to close its own before it is reset. Default 60s.
	HalfCloseTimeout time.Duration

	// MaxStreams is how many streams the peer may have open at once on a
	// QUIC session; opening one more waits until one ends. It must be at
	// least the most sessions a server runs through one agent (the
	// server's per-agent limit, 10,000 by default) plus the control
	// stream. Default 16384. yamux has no such limit and ignores it.
	MaxStreams int

	// KeepAlive is how often an otherwise idle QUIC connection sends a
	// packet, so the NAT and firewall mappings along the path, which for
	// UDP often expire within 30 seconds, stay open. Default 10s; negative
	// turns keep-alives off. QUIC only: the owner's heartbeat keeps a TCP
	// connection's mappings open.
	KeepAlive time.Duration

	// IdleTimeout is how long a QUIC connection may receive nothing at all
	// before QUIC drops it. It is a backstop: the owner's heartbeat is what
	// should notice a dead link (15s by default), so keep this well above
	// that timeout. Default 60s. QUIC only.
	IdleTimeout time.Duration

	// Dial opens the TCP connection DialTLS runs TLS over. Nil means a
	// direct connection; an HTTPProxy's DialContext goes through an HTTP
	// proxy. TLS only.
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)

	// Logger receives the transport's own messages. Nil means slog.Default().
	Logger *slog.Logger
}

// Defaults for Config.
const (
	DefaultHandshakeTimeout = 10 * time.Second
	DefaultStreamWindow     = 16 << 20
	DefaultWriteTimeout     = 60 * time.Second
	DefaultAcceptBacklog    = 1024
	DefaultMaxHandshakes    = 256
	DefaultHalfCloseTimeout = 60 * time.Second
	DefaultMaxStreams       = 16384
	DefaultKeepAlive        = 10 * time.Second
	DefaultIdleTimeout      = 60 * time.Second
)

// Settings for the side of a session whose peer opens few streams of its
// own, as a tunnel server's agents open only their control stream. Each
// session then holds a smaller accept queue (yamux keeps one slot per
// backlog entry, 8 bytes each), and a peer that opens more streams than it
// should is refused early. AcceptBacklog also bounds the streams this side
// has opened and the peer has not yet acknowledged: 256 opens per round
// trip, per connection.
const (
	ServerAcceptBacklog = 256
	ServerMaxStreams    = 16
)

// withDefaults returns a copy of c with zero fields set to their defaults.
func (c *Config) withDefaults() Config {
	var out Config
	if c != nil {
		out = *c
	}
	if out.HandshakeTimeout <= 0 {
		out.HandshakeTimeout = DefaultHandshakeTimeout
	}
	if out.StreamWindow == 0 {
		out.StreamWindow = DefaultStreamWindow
	}
	if out.WriteTimeout <= 0 {
		out.WriteTimeout = DefaultWriteTimeout
	}
	if out.AcceptBacklog <= 0 {
		out.AcceptBacklog = DefaultAcceptBacklog
	}
	if out.MaxHandshakes <= 0 {
		out.MaxHandshakes = DefaultMaxHandshakes
	}
	if out.HalfCloseTimeout <= 0 {
		out.HalfCloseTimeout = DefaultHalfCloseTimeout
	}
	if out.MaxStreams <= 0 {
		out.MaxStreams = DefaultMaxStreams
	}
	if out.KeepAlive == 0 {
		out.KeepAlive = DefaultKeepAlive
	}
	if out.IdleTimeout <= 0 {
		out.IdleTimeout = DefaultIdleTimeout
	}
	if out.Logger == nil {
		out.Logger = slog.Default()
	}
	return out
}

// minStreamWindow is yamux's initial window; a smaller maximum is refused.
const minStreamWindow = 256 << 10

// Validate reports a configuration that cannot work.
func (c *Config) Validate() error {
	if c == nil {
		return nil
	}
	if c.StreamWindow != 0 && c.StreamWindow < minStreamWindow {
		return errors.New("mux: StreamWindow must be at least 256 KiB")
	}
	if c.MaxStreams < 0 {
		return errors.New("mux: MaxStreams must not be negative")
	}
	if c.IdleTimeout < 0 {
		return errors.New("mux: IdleTimeout must not be negative")
	}
	return nil
}

// BindDeadline bounds c's reads and writes by ctx: c's deadline becomes
// ctx's, and ctx ending wakes blocked reads and writes at once. The returned
// stop disarms the wake-up (not the deadline) and reports whether it was
// still armed, like the stop of context.AfterFunc.
func BindDeadline(ctx context.Context, c net.Conn) (stop func() bool) {
	deadline, _ := ctx.Deadline()
	c.SetDeadline(deadline)
	return context.AfterFunc(ctx, func() { c.SetDeadline(pastDeadline) })
}

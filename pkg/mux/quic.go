package mux

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/quic-go/quic-go"
)

// alpnQUIC names the tunnel protocol in the QUIC handshake. QUIC requires
// ALPN, so a QUIC endpoint that speaks something else fails the handshake.
const alpnQUIC = "tunnel-quic/1"

// Stream and connection error codes sent to the peer. They never surface to
// callers as numbers: the peer maps them back to ErrStreamReset or
// ErrSessionClosed.
const (
	// codeClosed cancels the read side on Close: the peer stops sending
	// data nobody will read, and QUIC releases the stream's credit.
	codeClosed quic.StreamErrorCode = 0
	// codeReset ends both directions on Reset, as a failure.
	codeReset quic.StreamErrorCode = 1
	// codeSessionClosed ends the connection on Session.Close.
	codeSessionClosed quic.ApplicationErrorCode = 0
)

// quicConfig maps c onto quic-go's configuration.
func quicConfig(c Config) *quic.Config {
	streamWindow := uint64(c.StreamWindow)
	// The connection window bounds what all streams together may have in
	// flight, and so what one peer can make us buffer; a few bulk streams
	// must still run at full speed side by side.
	connWindow := max(streamWindow, min(8*streamWindow, 64<<20))
	keepAlive := c.KeepAlive
	if keepAlive < 0 {
		keepAlive = 0
	}
	return &quic.Config{
		// quic-go aborts a handshake after its idle timeout without a
		// packet, or after twice that in all: half of HandshakeTimeout
		// keeps the whole handshake within HandshakeTimeout.
		HandshakeIdleTimeout: c.HandshakeTimeout / 2,
		MaxIdleTimeout:       c.IdleTimeout,
		KeepAlivePeriod:      keepAlive,
		// quic-go grows a window from its initial size up to the maximum
		// as the reader keeps up; starting at a quarter lets a new bulk
		// stream reach full speed within a few round trips while a
		// stalled reader holds far less.
		InitialStreamReceiveWindow:     streamWindow / 4,
		MaxStreamReceiveWindow:         streamWindow,
		InitialConnectionReceiveWindow: connWindow / 4,
		MaxConnectionReceiveWindow:     connWindow,
		// quic-go's default of 100 would make the 101st database session
		// through one agent wait for another to end.
		MaxIncomingStreams:    int64(c.MaxStreams),
		MaxIncomingUniStreams: -1,
	}
}

// quicTLSConfig returns a copy of base fit for the tunnel over QUIC: the
// tunnel's ALPN name and TLS 1.3, which QUIC requires anyway.
func quicTLSConfig(base *tls.Config) *tls.Config {
	c := base.Clone()
	c.MinVersion = tls.VersionTLS13
	c.NextProtos = []string{alpnQUIC}
	return c
}

// DialQUIC connects to the UDP address addr, runs the QUIC handshake with
// tlsConf and returns the client side of a session. The session has a UDP
// socket of its own, closed with it.
func DialQUIC(ctx context.Context, addr string, tlsConf *tls.Config, cfg *Config) (Session, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	c := cfg.withDefaults()
	dctx, cancel := context.WithTimeout(ctx, c.HandshakeTimeout)
	defer cancel()
	raddr, err := resolveUDP(dctx, addr)
	if err != nil {
		return nil, err
	}
	conn, release, err := dialQUIC(dctx, raddr, tlsConf, c)
	if err != nil {
		if ctxErr := ctx.Err(); ctxErr != nil {
			return nil, ctxErr
		}
		return nil, fmt.Errorf("quic handshake with %s: %w", addr, err)
	}
	return newQUICSession(conn, c, release), nil
}

// dialQUIC runs the handshake from a UDP socket of its own. release closes
// the transport and the socket; on error they are closed already.
func dialQUIC(ctx context.Context, raddr *net.UDPAddr, tlsConf *tls.Config, c Config) (*quic.Conn, func(), error) {
	network := "udp4"
	if raddr.AddrPort().Addr().Is6() {
		network = "udp6"
	}
	pc, err := net.ListenUDP(network, nil)
	if err != nil {
		return nil, nil, fmt.Errorf("open a UDP socket: %w", err)
	}
	tr := newQUICTransport(pc, nil)
	release := func() {
		tr.Close()
		pc.Close()
	}
	raised := processUDPBuffers.prepare(pc)
	conn, err := tr.Dial(ctx, raddr, quicTLSConfig(tlsConf), quicConfig(c))
	if !raised {
		processUDPBuffers.check(pc, c.Logger)
	}
	if err != nil {
		release()
		return nil, nil, err
	}
	return conn, release, nil
}

// newQUICTransport returns a quic-go transport over pc with receive offload
// turned on where the kernel offers it (see quic_linux.go). resetKey may be
// nil: no stateless resets.
func newQUICTransport(pc net.PacketConn, resetKey *quic.StatelessResetKey) *quic.Transport {
	if udp, ok := pc.(*net.UDPConn); ok {
		pc = quicPacketConn(udp)
	}
	return &quic.Transport{Conn: pc, StatelessResetKey: resetKey}
}

// resolveUDP looks addr up under ctx and returns its first address, in the
// resolver's order of preference. An empty host is this machine, as for
// net.Dial.
func resolveUDP(ctx context.Context, addr string) (*net.UDPAddr, error) {
	host, portStr, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, fmt.Errorf("mux: address %q: %w", addr, err)
	}
	port, err := net.DefaultResolver.LookupPort(ctx, "udp", portStr)
	if err != nil {
		return nil, fmt.Errorf("mux: address %q: %w", addr, err)
	}
	if host == "" {
		host = "localhost"
	}
	if ip, err := netip.ParseAddr(host); err == nil {
		return net.UDPAddrFromAddrPort(netip.AddrPortFrom(ip, uint16(port))), nil
	}
	ips, err := net.DefaultResolver.LookupNetIP(ctx, "ip", host)
	if err != nil {
		return nil, fmt.Errorf("mux: resolve %q: %w", host, err)
	}
	if len(ips) == 0 {
		return nil, fmt.Errorf("mux: resolve %q: no addresses", host)
	}
	return net.UDPAddrFromAddrPort(netip.AddrPortFrom(ips[0].Unmap(), uint16(port))), nil
}

// quicSession is a Session made of one QUIC connection.
type quicSession struct {
	conn      *quic.Conn
	state     tls.ConnectionState
	halfClose time.Duration // Config.HalfCloseTimeout

	// release frees what the session owns besides the connection: a
	// dialed session's transport and UDP socket, or the session's share of
	// a listener's. It runs once, when the connection ends.
	release     func()
	releaseOnce sync.Once

	// streams counts the streams opened or accepted here whose two
	// directions have not both ended; see quicStream.endHalf.
	streams atomic.Int64
}

var _ Session = (*quicSession)(nil)

func newQUICSession(conn *quic.Conn, cfg Config, release func()) *quicSession {
	s := &quicSession{
		conn:      conn,
		state:     conn.ConnectionState().TLS,
		halfClose: cfg.HalfCloseTimeout,
		release:   release,
	}
	// A connection can end without Close (the peer closed it, or it went
	// silent past the idle timeout); its socket must not outlive it.
	context.AfterFunc(conn.Context(), s.releaseResources)
	return s
}

func (s *quicSession) releaseResources() {
	s.releaseOnce.Do(func() {
		if s.release != nil {
			s.release()
		}
	})
}

// OpenStream opens a stream. QUIC tells the peer about a stream only with
// its first bytes, so callers write a header at once.
func (s *quicSession) OpenStream(ctx context.Context) (Stream, error) {
	// OpenStreamSync returns a stream at once when one is available, with
	// no look at ctx; an ended context still means no stream.
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	st, err := s.conn.OpenStreamSync(ctx)
	if err != nil {
		if ctxErr := ctx.Err(); ctxErr != nil {
			return nil, ctxErr
		}
		return nil, s.mapErr(err)
	}
	return newQUICStream(s, st), nil
}

func (s *quicSession) AcceptStream(ctx context.Context) (Stream, error) {
	st, err := s.conn.AcceptStream(ctx)
	if err != nil {
		if ctxErr := ctx.Err(); ctxErr != nil {
			return nil, ctxErr
		}
		return nil, s.mapErr(err)
	}
	return newQUICStream(s, st), nil
}

// Close ends the connection with a CONNECTION_CLOSE to the peer. It does
// not wait for the peer: quic-go sends the frame and returns, and answers
// the peer's late packets from the transport for a short while, or not at
// all once the socket is closed.
func (s *quicSession) Close() error {
	err := s.conn.CloseWithError(codeSessionClosed, "session closed")
	s.releaseResources()
	return err
}

func (s *quicSession) Done() <-chan struct{} { return s.conn.Context().Done() }

// NumStreams counts the streams whose two directions have not both ended.
// A stream the peer has opened counts from AcceptStream on; once the
// session has ended, none is open.
func (s *quicSession) NumStreams() int {
	if s.conn.Context().Err() != nil {
		return 0
	}
	return int(s.streams.Load())
}

func (s *quicSession) LocalAddr() net.Addr                  { return s.conn.LocalAddr() }
func (s *quicSession) RemoteAddr() net.Addr                 { return s.conn.RemoteAddr() }
func (s *quicSession) ConnectionState() tls.ConnectionState { return s.state }
func (s *quicSession) Transport() string                    { return TransportQUIC }

func (s *quicSession) Stats() Stats {
	st := s.conn.ConnectionStats()
	return Stats{BytesSent: st.BytesSent, BytesReceived: st.BytesReceived}
}

// mapErr turns an error that means the connection has ended into one that
// wraps ErrSessionClosed.
func (s *quicSession) mapErr(err error) error {
	if isConnClosed(err) || s.conn.Context().Err() != nil {
		return fmt.Errorf("%w: %v", ErrSessionClosed, err)
	}
	return err
}

// isConnClosed reports the errors quic-go gives for an ended connection.
func isConnClosed(err error) bool {
	var (
		appErr       *quic.ApplicationError
		transportErr *quic.TransportError
		idleErr      *quic.IdleTimeoutError
		handshakeErr *quic.HandshakeTimeoutError
		resetErr     *quic.StatelessResetError
	)
	return errors.As(err, &appErr) || errors.As(err, &transportErr) ||
		errors.As(err, &idleErr) || errors.As(err, &handshakeErr) ||
		errors.As(err, &resetErr)
}

// quicStream adapts a QUIC stream to Stream.
//
// A QUIC stream is two independent halves. Close here ends both: the send
// side with a FIN, so the peer reads io.EOF after the data, and the
// receive side with STOP_SENDING, which frees the stream's credit (the
// peer's MaxIncomingStreams) without waiting for the peer to finish.
// Reset cancels both halves with codeReset, which the peer reads as
// ErrStreamReset.
type quicStream struct {
	*quic.Stream
	sess *quicSession

	closed      atomic.Bool // Close or Reset was called
	remoteReset atomic.Bool // the peer reset the stream

	// Each half ends once, by whichever comes first: our own Close,
	// CloseWrite or Reset, the peer's FIN, RESET_STREAM or STOP_SENDING.
	// The second half to end takes the stream off the session's count.
	sendEnded, recvEnded atomic.Bool
	halves               atomic.Int32
	stopSendWatch        func() bool

	halfCloseMu    sync.Mutex
	halfCloseTimer *time.Timer // armed by CloseWrite until the receive half ends
}

var _ Stream = (*quicStream)(nil)

func newQUICStream(sess *quicSession, st *quic.Stream) *quicStream {
	sess.streams.Add(1)
	s := &quicStream{Stream: st, sess: sess}
	s.halves.Store(2)
	// The send side's context ends with our Close or CancelWrite, the
	// peer's STOP_SENDING, or the connection; the receive side's final
	// size becomes known with the peer's FIN or RESET_STREAM.
	s.stopSendWatch = context.AfterFunc(st.Context(), func() { s.endHalf(&s.sendEnded) })
	st.SetReceiveFinalSizeCallback(func(int64) { s.endHalf(&s.recvEnded) })
	return s
}

// endHalf marks one direction ended, once, and the stream ended with the
// second. It runs in quic-go's event loop too, so it must not block.
func (s *quicStream) endHalf(half *atomic.Bool) {
	if !half.CompareAndSwap(false, true) {
		return
	}
	if half == &s.recvEnded {
		s.stopHalfCloseTimer()
	}
	if s.halves.Add(-1) == 0 {
		s.sess.streams.Add(-1)
	}
}

func (s *quicStream) Read(p []byte) (int, error) {
	n, err := s.Stream.Read(p)
	if err != nil && err != io.EOF {
		err = s.mapErr(err)
	}
	return n, err
}

func (s *quicStream) Write(p []byte) (int, error) {
	// The peer's Reset cancels both of its halves, and its RESET_STREAM
	// may reach a reader before its STOP_SENDING reaches our send side;
	// once either has shown, the stream is reset both ways.
	if s.remoteReset.Load() && !s.closed.Load() {
		return 0, ErrStreamReset
	}
	n, err := s.Stream.Write(p)
	if err != nil {
		err = s.mapErr(err)
	}
	return n, err
}

// errPeerClosed is what a write gets once the peer has closed the stream
// and so stopped reading; TCP reports the same case as a broken pipe.
var errPeerClosed = fmt.Errorf("mux: stream closed by peer: %w", syscall.EPIPE)

func (s *quicStream) mapErr(err error) error {
	if s.closed.Load() {
		return net.ErrClosed
	}
	var se *quic.StreamError
	switch {
	case errors.As(err, &se) && se.Remote && se.ErrorCode == codeClosed:
		return errPeerClosed
	case errors.As(err, &se) && se.Remote:
		s.remoteReset.Store(true)
		return ErrStreamReset
	case errors.Is(err, quic.ErrStreamClosed):
		return fmt.Errorf("mux: write after CloseWrite: %w", net.ErrClosed)
	}
	return s.sess.mapErr(err)
}

// CloseWrite sends a FIN after the data written so far. If the peer does
// not end its own direction within HalfCloseTimeout, the stream is reset.
func (s *quicStream) CloseWrite() error {
	if s.closed.Load() {
		return nil
	}
	// quic-go refuses only to close a send side that was reset, here by
	// the peer's STOP_SENDING; that side has ended all the same, as with
	// yamux, where a reset stream closes without complaint.
	s.endSend(func() { _ = s.Stream.Close() })
	s.armHalfCloseTimer()
	return nil
}

func (s *quicStream) armHalfCloseTimer() {
	s.halfCloseMu.Lock()
	defer s.halfCloseMu.Unlock()
	if s.halfCloseTimer != nil || s.recvEnded.Load() {
		return
	}
	s.halfCloseTimer = time.AfterFunc(s.sess.halfClose, func() {
		if !s.recvEnded.Load() {
			s.Reset()
		}
	})
}

func (s *quicStream) stopHalfCloseTimer() {
	s.halfCloseMu.Lock()
	defer s.halfCloseMu.Unlock()
	if s.halfCloseTimer != nil {
		s.halfCloseTimer.Stop()
	}
}

// Close ends both directions: blocked reads and writes return, the peer
// reads io.EOF after the data already written, and data the peer still
// sends is refused rather than buffered.
func (s *quicStream) Close() error {
	if s.closed.Swap(true) {
		return nil
	}
	// A past deadline wakes a blocked Write, which keeps what it has
	// handed over; the FIN follows that.
	_ = s.Stream.SetWriteDeadline(pastDeadline)
	s.Stream.CancelRead(codeClosed)
	s.endHalf(&s.recvEnded)
	s.endSend(func() { _ = s.Stream.Close() }) // fails only for a send side already reset
	return nil
}

// Reset ends both directions at once; the peer's reads and writes fail
// with ErrStreamReset.
func (s *quicStream) Reset() error {
	if s.closed.Swap(true) {
		return nil
	}
	s.Stream.CancelRead(codeReset)
	s.endHalf(&s.recvEnded)
	s.endSend(func() { s.Stream.CancelWrite(codeReset) })
	return nil
}

// endSend ends the send half with end, which ends the send side's context
// too: the watch on that context is disarmed first, so as not to spend a
// goroutine on news we already have.
func (s *quicStream) endSend(end func()) {
	s.stopSendWatch()
	end()
	s.endHalf(&s.sendEnded)
}

func (s *quicStream) LocalAddr() net.Addr  { return s.sess.LocalAddr() }
func (s *quicStream) RemoteAddr() net.Addr { return s.sess.RemoteAddr() }

func (s *quicStream) SetReadDeadline(t time.Time) error {
	if s.closed.Load() {
		return net.ErrClosed
	}
	return s.Stream.SetReadDeadline(t)
}

func (s *quicStream) SetDeadline(t time.Time) error {
	if err := s.SetReadDeadline(t); err != nil {
		return err
	}
	return s.Stream.SetWriteDeadline(t)
}

// UDP socket buffers.
//
// quic-go asks the kernel for large UDP socket buffers, since a full
// receive buffer drops packets and a bulk transfer then slows to a crawl.
// Where the kernel refuses, quic-go prints a warning of its own through the
// standard log package, once per process, outside the caller's logging. So
// the buffers are raised here first: when that succeeds quic-go finds them
// big enough and stays silent; when it does not, quic-go is told to stay
// silent (its documented QUIC_GO_DISABLE_RECEIVE_BUFFER_WARNING, the only
// switch it offers and the one place this package touches the
// environment), makes its own further attempt (SO_RCVBUFFORCE on Linux,
// which works for root), and one clear line through the caller's logger
// says what was obtained and how to fix it.

// quicUDPBuffer is the buffer size quic-go v0.65 wants for each direction
// (desiredBufferSize in its sys_conn_buffers_nonopenbsd.go).
const quicUDPBuffer = 7 << 20

const quicBufferWarningEnv = "QUIC_GO_DISABLE_RECEIVE_BUFFER_WARNING"

// udpBuffers raises UDP buffers to want and warns, once, when it cannot.
type udpBuffers struct {
	want int
	once sync.Once
}

// processUDPBuffers is shared by the whole process because quic-go's own
// warning is: one line per process is enough to tell an operator.
var processUDPBuffers = &udpBuffers{want: quicUDPBuffer}

// bufferConn is the part of *net.UDPConn buffer sizing needs.
type bufferConn interface {
	SetReadBuffer(int) error
	SetWriteBuffer(int) error
	SyscallConn() (syscall.RawConn, error)
}

// prepare raises pc's buffers before quic-go sees pc and reports whether
// both reached want. When they did not, quic-go's own warning is silenced
// and check must follow once quic-go has made its attempt.
func (b *udpBuffers) prepare(pc net.PacketConn) bool {
	bc, ok := pc.(bufferConn)
	if ok {
		_ = bc.SetReadBuffer(b.want)
		_ = bc.SetWriteBuffer(b.want)
		if rcv, snd, err := bufferSizes(bc); err == nil && rcv >= b.want && snd >= b.want {
			return true
		}
	}
	if os.Getenv(quicBufferWarningEnv) == "" {
		os.Setenv(quicBufferWarningEnv, "true")
	}
	return false
}

// check reads pc's buffer sizes back and, the first time in the process
// that they fall short, logs how to raise the limits.
func (b *udpBuffers) check(pc net.PacketConn, log *slog.Logger) {
	bc, ok := pc.(bufferConn)
	if !ok {
		return
	}
	rcv, snd, err := bufferSizes(bc)
	if err != nil || rcv >= b.want && snd >= b.want {
		return
	}
	b.once.Do(func() {
		log.Warn("UDP socket buffers are smaller than QUIC wants; bulk transfers over QUIC may be slow. "+
			"To raise the limits: sysctl -w net.core.rmem_max=7500000 net.core.wmem_max=7500000",
			"receive_buffer_kib", rcv>>10, "send_buffer_kib", snd>>10, "wanted_kib", b.want>>10)
	})
}

// bufferSizes reads the buffer sizes the kernel reports for c. Linux
// reports twice the size granted, its bookkeeping included; quic-go
// compares that same figure with what it wants, and so does udpBuffers.
func bufferSizes(c bufferConn) (rcv, snd int, err error) {
	raw, err := c.SyscallConn()
	if err != nil {
		return 0, 0, err
	}
	var rerr, serr error
	if err := raw.Control(func(fd uintptr) {
		rcv, rerr = getsockoptInt(syscall.GetsockoptInt, fd, syscall.SO_RCVBUF)
		snd, serr = getsockoptInt(syscall.GetsockoptInt, fd, syscall.SO_SNDBUF)
	}); err != nil {
		return 0, 0, err
	}
	return rcv, snd, errors.Join(rerr, serr)
}

// getsockoptInt calls get, which is syscall.GetsockoptInt: its descriptor
// is an int on Unix and a Handle on Windows, and the type parameter lets
// one call compile for both.
func getsockoptInt[FD ~int | ~uintptr](get func(FD, int, int) (int, error), fd uintptr, opt int) (int, error) {
	return get(FD(fd), syscall.SOL_SOCKET, opt)
}

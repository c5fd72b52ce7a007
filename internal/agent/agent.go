// Package agent is the tunnel-agent engine: it holds one multiplexed
// connection to tunnel-server, reconnecting forever with backoff, and for
// every data stream the server opens it dials the named target, if and only
// if the agent's own configuration declares it, and splices the bytes.
//
// It is not the command line (cmd/tunnel-agent) and not the config file
// (package config): it gets resolved Options.
package agent

import (
	"context"
	crand "crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/url"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tunnelrelay/tunnel/internal/logging"
	"github.com/tunnelrelay/tunnel/internal/metrics"
	"github.com/tunnelrelay/tunnel/internal/proto"
	"github.com/tunnelrelay/tunnel/pkg/mux"
)

// Target is a database the agent may dial.
type Target struct {
	// Name is what the server asks for.
	Name string
	// Address is the host:port dialed for Name, and nothing else.
	Address string
	// ProxyProtocol sends a PROXY protocol v2 header first, carrying the
	// original client's address (a LOCAL header when it is unknown, as in
	// Check).
	ProxyProtocol bool
	// TLS is how the agent encrypts to a PostgreSQL target, after the
	// PROXY header if any: TLSDisable (or empty), TLSRequire, TLSVerifyCA
	// or TLSVerifyFull. Anything but TLSDisable is for PostgreSQL only: the
	// agent asks for TLS with an SSLRequest.
	TLS string
	// TLSCA is the PEM of the CA certificate(s) the target's certificate
	// must chain to. Required for TLSVerifyCA; empty means the system roots
	// for TLSVerifyFull. Only for those two modes.
	TLSCA string
	// TLSServerName is the name TLSVerifyFull checks the certificate for,
	// and the SNI sent in every mode. Empty means the host of Address.
	TLSServerName string
}

// Options configure an Agent. Zero fields mean defaults.
type Options struct {
	// Name is the agent's name, for logs (the server learns it from the
	// certificate in TLSConfig).
	Name string
	// ServerAddress is the server's host:port.
	ServerAddress string
	// TLSConfig authenticates the agent and verifies the server (see
	// auth.ClientConfig). Required unless Dial is set.
	TLSConfig *tls.Config
	// Targets are the only addresses the agent will ever dial.
	Targets []Target
	// Version is the agent's release, told to the server.
	Version string

	// MaxSessions caps concurrent sessions. Default 10000.
	MaxSessions int
	// DialTimeout bounds a connection to a target. Default 10s.
	DialTimeout time.Duration
	// HandshakeTimeout bounds connecting to the server, and reading a data
	// stream's header. Default 10s.
	HandshakeTimeout time.Duration
	// HalfCloseTimeout bounds a half-closed session. Default 30s.
	HalfCloseTimeout time.Duration
	// MaxHeaderSize bounds every tunnel protocol frame read. Default 4096.
	MaxHeaderSize int
	// BackoffBase and BackoffMax shape the reconnect delays: attempt n waits
	// a random time in [0, min(BackoffMax, BackoffBase·2ⁿ)). Defaults 500ms
	// and 30s.
	BackoffBase, BackoffMax time.Duration
	// StableAfter: a connection that lasted this long resets the backoff.
	// Default 10s.
	StableAfter time.Duration

	// Transport is how the agent connects: TransportTLS, TransportQUIC or
	// TransportAuto (empty means auto): QUIC first, TLS when QUIC fails.
	Transport string
	// QUICTimeout is how long, with TransportAuto, a QUIC attempt may take
	// before the agent falls back to TLS. Default 3s.
	QUICTimeout time.Duration
	// QUICRetry is how long, with TransportAuto, the agent stays on TLS
	// after QUIC failed before it tries QUIC again. Default 5m.
	QUICRetry time.Duration
	// Proxy is an HTTP proxy (http or https URL, with any user:password)
	// the agent reaches the server through with CONNECT; nil means
	// directly. QUIC cannot pass it: with a proxy TransportAuto uses TLS
	// only, and TransportQUIC is refused.
	Proxy *url.URL

	// Mux tunes the multiplexed connection.
	Mux *mux.Config
	// DialTLS and DialQUIC connect to the server over each transport; nil
	// means mux.DialTLS or mux.DialQUIC to ServerAddress. Tests use them to
	// put a proxy in the way.
	DialTLS, DialQUIC func(ctx context.Context) (mux.Session, error)
	// Keys stores a new key when the server rotates the agent's key; nil
	// means the agent cannot rotate and ignores the server's request.
	Keys KeyStore
	// Logger; nil means slog.Default().
	Logger *slog.Logger
}

func (o *Options) setDefaults() {
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&o.DialTimeout, 10*time.Second)
	def(&o.HandshakeTimeout, 10*time.Second)
	def(&o.HalfCloseTimeout, 30*time.Second)
	def(&o.BackoffBase, 500*time.Millisecond)
	def(&o.BackoffMax, 30*time.Second)
	def(&o.StableAfter, 10*time.Second)
	def(&o.QUICTimeout, 3*time.Second)
	def(&o.QUICRetry, 5*time.Minute)
	if o.Transport == "" {
		o.Transport = TransportAuto
	}
	if o.MaxSessions <= 0 {
		o.MaxSessions = 10000
	}
	if o.MaxHeaderSize <= 0 {
		o.MaxHeaderSize = 4096
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
}

// Agent is the engine. Create it with New and run it with Run.
type Agent struct {
	// Static after New.
	opt      Options
	instance string
	log      *slog.Logger
	registry *prometheus.Registry
	metrics  *metrics.Agent

	targets        atomic.Pointer[targetSet]  // replaced by SetTargets
	tlsConf        atomic.Pointer[tls.Config] // replaced by SetTLSConfig
	targetsChanged chan struct{}              // a Targets frame is due
	moveReq        chan string                // a move to a new connection is due, and why
	drainOnce      sync.Once
	drain          chan struct{} // closed by Drain

	active   atomic.Int64 // open sessions
	rotating atomic.Bool  // a key rotation is under way

	// bg runs the connections left for a new one while they serve their
	// last sessions; Run waits for it.
	bg sync.WaitGroup

	// Where transport "auto" stands; see transport.go.
	fallbackMu sync.Mutex
	fallback   fallback
}

// New returns an Agent.
func New(opt Options) (*Agent, error) {
	opt.setDefaults()
	switch opt.Transport {
	case TransportAuto, TransportTLS, TransportQUIC:
	default:
		return nil, fmt.Errorf("agent: unknown transport %q", opt.Transport)
	}
	if err := opt.checkProxy(); err != nil {
		return nil, err
	}
	if opt.DialTLS == nil || opt.DialQUIC == nil {
		if opt.TLSConfig == nil {
			return nil, errors.New("agent: Options.TLSConfig is nil")
		}
		if opt.ServerAddress == "" {
			return nil, errors.New("agent: Options.ServerAddress is empty")
		}
	}
	a := &Agent{
		opt:            opt,
		log:            logging.Module(opt.Logger, "agent"),
		targetsChanged: make(chan struct{}, 1),
		moveReq:        make(chan string, 1),
		drain:          make(chan struct{}),
	}
	ts, err := newTargetSet(opt.Targets)
	if err != nil {
		return nil, fmt.Errorf("agent: %w", err)
	}
	a.targets.Store(ts)
	a.tlsConf.Store(opt.TLSConfig)
	var id [8]byte
	crand.Read(id[:])
	a.instance = hex.EncodeToString(id[:])
	a.initMetrics()
	return a, nil
}

// Run connects to the server and serves it, reconnecting with backoff
// whenever the connection fails or ends, until ctx is done (it returns nil)
// or the server refuses the agent for good (it returns the *proto.Refuse).
func (a *Agent) Run(ctx context.Context) error {
	defer a.bg.Wait()
	a.logProxy()
	attempt := 0
	var quickUntil time.Time // the server is restarting: retry often until then
	for {
		start := time.Now()
		welcomed, err := a.runOnce(ctx)
		if ctx.Err() != nil {
			return nil
		}
		var ref *proto.Refuse
		if errors.As(err, &ref) && ref.Code.Permanent() {
			a.log.Error("refused by server; giving up", logging.KeyReason, ref.Message, "code", string(ref.Code))
			return ref
		}
		if welcomed && time.Since(start) >= a.opt.StableAfter {
			attempt = 0
		}
		if errors.Is(err, errServerRestarting) {
			attempt = 0
			quickUntil = time.Now().Add(restartWindow)
		}
		delay := a.backoff(attempt)
		if time.Now().Before(quickUntil) {
			delay = min(delay, rand.N(restartBackoff)+time.Millisecond)
		}
		attempt++
		a.log.Warn(describeConnErr(err, welcomed)+"; retrying", logging.KeyErr, err.Error(), "retry_in", delay.Round(time.Millisecond))
		t := time.NewTimer(delay)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return nil
		}
	}
}

// backoff is exponential backoff with full jitter.
func (a *Agent) backoff(attempt int) time.Duration {
	ceiling := a.opt.BackoffMax
	if attempt < 32 {
		ceiling = min(ceiling, a.opt.BackoffBase<<attempt)
	}
	return rand.N(ceiling) + time.Millisecond
}

// describeConnErr says in one phrase what went wrong with a connection.
func describeConnErr(err error, welcomed bool) string {
	var (
		verr *tls.CertificateVerificationError
		ref  *proto.Refuse
	)
	switch {
	case welcomed:
		return "connection to server lost"
	case errors.As(err, &verr):
		return "server certificate not trusted (check [server] ca and address in the config)"
	case errors.As(err, &ref):
		return "refused by server"
	}
	return "cannot connect to server"
}

// runOnce makes one connection and serves it until it ends, moving to a
// new one when serve switches transports.
func (a *Agent) runOnce(ctx context.Context) (welcomed bool, err error) {
	c, err := a.connect(ctx, false)
	if err != nil {
		return false, err
	}
	defer a.metrics.Disconnected()
	for {
		a.logConnected(c)
		next, err := c.serve(ctx)
		if next == nil {
			return true, err
		}
		c = next
	}
}

func (a *Agent) logConnected(c *conn) {
	a.metrics.Connected(c.sess.Transport())
	attrs := []any{"server", a.opt.ServerAddress, "transport", c.sess.Transport(),
		"targets", a.targets.Load().names, "server_version", c.welcome.ServerVersion}
	if c.fallback != "" {
		attrs = append(attrs, "fallback", c.fallback)
	}
	if a.proxied() {
		attrs = append(attrs, "proxy", a.opt.Proxy.Redacted())
	}
	a.log.Info("connected to server", attrs...)
}

// conn is one welcomed connection to the server.
type conn struct {
	a        *Agent
	sess     mux.Session
	ctl      mux.Stream
	welcome  proto.Welcome
	fallback string // why this connection is TLS, with transport auto
	writeMu  sync.Mutex

	reconnect chan string            // the server asked for a new connection, and why
	rotate    chan struct{}          // the server asked for a new key
	keyReply  chan proto.KeyAccepted // the server's answer to NewKey
}

// dial connects to the server over one transport.
func (a *Agent) dial(ctx context.Context, transport string) (mux.Session, error) {
	if transport == TransportQUIC {
		if a.opt.DialQUIC != nil {
			return a.opt.DialQUIC(ctx)
		}
		return mux.DialQUIC(ctx, a.opt.ServerAddress, a.tlsConf.Load(), a.muxConfig())
	}
	if a.opt.DialTLS != nil {
		return a.opt.DialTLS(ctx)
	}
	return mux.DialTLS(ctx, a.opt.ServerAddress, a.tlsConf.Load(), a.muxConfig())
}

func (a *Agent) muxConfig() *mux.Config {
	cfg := mux.Config{}
	if a.opt.Mux != nil {
		cfg = *a.opt.Mux
	}
	if cfg.HandshakeTimeout == 0 {
		cfg.HandshakeTimeout = a.opt.HandshakeTimeout
	}
	if cfg.Logger == nil {
		cfg.Logger = logging.Module(a.opt.Logger, "mux")
	}
	if cfg.Dial == nil && a.proxied() {
		cfg.Dial = a.proxyDial().DialContext
	}
	if cfg.HalfCloseTimeout == 0 {
		cfg.HalfCloseTimeout = a.opt.HalfCloseTimeout + 5*time.Second
	}
	if cfg.MaxStreams == 0 {
		// The server opens a stream per session; QUIC makes it wait for
		// credit beyond this many. A few more than the session limit lets
		// sessions over the limit be refused with a reason, not stall.
		cfg.MaxStreams = a.opt.MaxSessions + 64
	}
	return &cfg
}

// connectOver dials the server over one transport and runs the hello
// exchange. With probe set the server only checks the credential.
func (a *Agent) connectOver(ctx context.Context, transport string, probe bool, fallback string) (*conn, error) {
	sess, err := a.dial(ctx, transport)
	if err != nil {
		return nil, err
	}
	c, err := a.hello(ctx, sess, probe, fallback)
	if err != nil {
		sess.Close()
		return nil, err
	}
	return c, nil
}

func (a *Agent) hello(ctx context.Context, sess mux.Session, probe bool, fallback string) (*conn, error) {
	hello := &proto.Hello{
		Version:      proto.Version,
		AgentVersion: a.opt.Version,
		Targets:      a.targets.Load().names,
		Instance:     a.instance,
		Probe:        probe,
		Fallback:     fallback,
	}
	ctl, err := a.firstExchange(ctx, sess, proto.FrameHello, hello, proto.FrameWelcome, "hello")
	if err != nil {
		return nil, err
	}
	c := &conn{a: a, sess: sess, ctl: ctl.stream, fallback: fallback, reconnect: make(chan string, 1),
		rotate: make(chan struct{}, 1), keyReply: make(chan proto.KeyAccepted, 1)}
	if err := proto.DecodeJSON(proto.FrameWelcome, ctl.answer, &c.welcome); err != nil {
		return nil, err
	}
	return c, nil
}

// answered is a control stream and the payload of the server's answer.
type answered struct {
	stream mux.Stream
	answer []byte
}

// firstExchange opens the control stream of sess, sends v as frame t and
// reads the server's answer, all within the handshake timeout. The answer
// must be a frame of type want (its payload is returned, the stream's
// deadline cleared) or a Refuse, returned as a *proto.Refuse error. what
// names the request in errors.
func (a *Agent) firstExchange(ctx context.Context, sess mux.Session, t proto.FrameType, v any, want proto.FrameType, what string) (*answered, error) {
	ctx, cancel := context.WithTimeout(ctx, a.opt.HandshakeTimeout)
	defer cancel()
	ctl, err := sess.OpenStream(ctx)
	if err != nil {
		return nil, err
	}
	stop := mux.BindDeadline(ctx, ctl)
	defer stop()
	if err := proto.WriteJSON(ctl, t, v); err != nil {
		return nil, fmt.Errorf("send %s: %w", what, err)
	}
	got, p, err := proto.ReadFrame(ctl, a.opt.MaxHeaderSize)
	if err != nil {
		if ctx.Err() != nil {
			err = fmt.Errorf("%w (no answer within %v)", err, a.opt.HandshakeTimeout)
		}
		return nil, fmt.Errorf("no answer to %s: %w", what, err)
	}
	switch got {
	case want:
	case proto.FrameRefuse:
		var ref proto.Refuse
		if err := proto.DecodeJSON(got, p, &ref); err != nil {
			return nil, err
		}
		return nil, &ref
	default:
		return nil, fmt.Errorf("%w: %s in answer to %s", proto.ErrUnexpected, got, what)
	}
	if !stop() {
		// The timeout fired just now and has set a past deadline.
		return nil, fmt.Errorf("no answer to %s: %w", what, ctx.Err())
	}
	ctl.SetDeadline(time.Time{})
	return &answered{stream: ctl, answer: p}, nil
}

// serve answers heartbeats and data streams until the connection ends, and
// returns why it ended. The connection counts as dead when nothing at all
// has arrived for the heartbeat timeout (see the server's side).
//
// With transport auto, a TLS connection moves to QUIC once QUIC is due
// again and no session is open: serve then returns the new connection.
func (c *conn) serve(ctx context.Context) (next *conn, err error) {
	interval, timeout := c.welcome.HeartbeatInterval(), c.welcome.HeartbeatTimeout()
	if interval <= 0 || timeout <= interval {
		interval, timeout = 5*time.Second, 15*time.Second
	}
	readErr := make(chan error, 1)
	go func() { readErr <- c.readLoop() }()

	// The connection's own context: when it ends, dials still in progress
	// for its streams stop at once instead of delaying the reconnect.
	connCtx, cancel := context.WithCancel(ctx)
	var streams sync.WaitGroup
	acceptDone := make(chan struct{})
	go func() {
		defer close(acceptDone)
		for {
			st, err := c.sess.AcceptStream(connCtx)
			if err != nil {
				return
			}
			streams.Add(1)
			go func() {
				defer streams.Done()
				c.a.serveStream(connCtx, st)
			}()
		}
	}()

	tick := time.NewTicker(interval)
	defer tick.Stop()
	watch := mux.NewWatchdog(c.sess, time.Now())
	var quicAt time.Time // when to try moving to QUIC; zero for never
	if c.a.opt.Transport == TransportAuto && c.sess.Transport() != mux.TransportQUIC {
		quicAt = c.a.quicRetryAt()
	}
	v2 := c.welcome.Version >= 2
	drain := c.a.drain
	var (
		moveReason string           // a move to a new connection is pending
		moveAt     <-chan time.Time // when to try it again
		serverGone bool             // the server asked for the move: it is stopping
	)
loop:
	for {
		select {
		case moveReason = <-c.a.moveReq:
			moveAt = time.After(0)
		case <-c.rotate:
			streams.Add(1)
			go func() {
				defer streams.Done()
				c.rotateKey(connCtx)
			}()
		case reason := <-c.reconnect:
			serverGone = true
			moveReason = "the server asked: " + reason
			moveAt = time.After(0)
		case <-moveAt:
			moveAt = nil
			if c.a.draining() {
				continue
			}
			if next = c.tryMove(ctx, moveReason); next != nil {
				err = errors.New("moved to a new connection: " + moveReason)
				break loop
			}
			moveAt = time.After(moveRetry())
		case <-c.a.targetsChanged:
			if v2 {
				if err = c.writeJSON(proto.FrameTargets, &proto.Targets{Targets: c.a.targets.Load().names}); err != nil {
					err = fmt.Errorf("control stream: %w", err)
					break loop
				}
			}
		case <-drain:
			drain = nil
			moveAt = nil
			if v2 {
				if err = c.writeJSON(proto.FrameDraining, &proto.Draining{Reason: "the agent is stopping"}); err != nil {
					err = fmt.Errorf("control stream: %w", err)
					break loop
				}
			}
		case now := <-tick.C:
			if idle := watch.Idle(now); idle >= timeout {
				err = fmt.Errorf("nothing received from the server for %v (heartbeat timeout)", idle.Round(time.Millisecond))
				break loop
			}
			// Our own ping: over QUIC, a restarted server answers it with
			// a stateless reset, and the agent reconnects at once. QUIC
			// resets only packets larger than a reset would be, so the
			// ping is padded (the protocol ignores bytes after the seq).
			ping := append(proto.AppendSeq(nil, uint64(now.UnixNano())), pingPadding[:]...)
			if err = c.write(proto.FramePing, ping); err != nil {
				err = fmt.Errorf("heartbeat not sent: %w", err)
				break loop
			}
			if !quicAt.IsZero() && !now.Before(quicAt) && c.idle() {
				if next = c.switchToQUIC(ctx); next != nil {
					err = errors.New("moved to QUIC")
					break loop
				}
				quicAt = c.a.quicRetryAt()
			}
		case err = <-readErr:
			readErr = nil
			break loop
		case <-c.sess.Done():
			// The read loop ends too; what it read last (a refusal, say)
			// says more than "closed".
			err = <-readErr
			readErr = nil
			var ref *proto.Refuse
			if !errors.As(err, &ref) {
				err = errors.New("connection closed by the server")
			}
			break loop
		case <-ctx.Done():
			err = ctx.Err()
			break loop
		}
	}
	var ref *proto.Refuse
	if next == nil && serverGone && ctx.Err() == nil && !errors.As(err, &ref) {
		// The server said it was going, and however this connection
		// ended (a failed read or write, or the close), that is it going.
		err = fmt.Errorf("%w: %v", errServerRestarting, err)
	}
	finish := func() {
		c.sess.Close()
		cancel()
		if readErr != nil {
			<-readErr
		}
		<-acceptDone
		streams.Wait()
	}
	if next == nil {
		finish()
		return nil, err
	}
	// Moved to a new connection: the sessions on this one finish here,
	// however long they last. The server closes it once they are done;
	// it also ends when nothing arrives on it for the heartbeat timeout
	// (the server keeps pinging it) or when the agent stops.
	c.a.bg.Go(func() {
		defer finish()
		tick := time.NewTicker(interval)
		defer tick.Stop()
		for {
			select {
			case <-c.sess.Done():
				return
			case <-ctx.Done():
				return
			case now := <-tick.C:
				if watch.Idle(now) >= timeout {
					c.a.log.Warn("the previous connection fell silent; closing it and its sessions")
					return
				}
			}
		}
	})
	return next, err
}

// idle reports whether the connection carries no session: only the control
// stream is open, and no stream is being set up.
func (c *conn) idle() bool {
	return c.a.active.Load() == 0 && c.sess.NumStreams() <= 1
}

// pingPadding makes the QUIC packet carrying a ping comfortably larger
// than quic-go's smallest resettable packet (42 bytes).
var pingPadding [48]byte

// write sends one frame on the control stream.
func (c *conn) write(t proto.FrameType, payload []byte) error {
	c.writeMu.Lock()
	defer c.writeMu.Unlock()
	c.ctl.SetWriteDeadline(time.Now().Add(c.a.opt.HandshakeTimeout))
	return proto.WriteFrame(c.ctl, t, payload)
}

// writeJSON sends one JSON frame on the control stream.
func (c *conn) writeJSON(t proto.FrameType, v any) error {
	c.writeMu.Lock()
	defer c.writeMu.Unlock()
	c.ctl.SetWriteDeadline(time.Now().Add(c.a.opt.HandshakeTimeout))
	return proto.WriteJSON(c.ctl, t, v)
}

// readLoop answers the server's pings and takes its refusals.
func (c *conn) readLoop() error {
	for {
		t, p, err := proto.ReadFrame(c.ctl, c.a.opt.MaxHeaderSize)
		if err != nil {
			return fmt.Errorf("control stream: %w", err)
		}
		switch t {
		case proto.FramePing:
			if err := c.write(proto.FramePong, p); err != nil {
				return fmt.Errorf("control stream: %w", err)
			}
		case proto.FramePong:
			// The answer to our own ping; that it came is what counts,
			// and how long it took is a metric.
			if sent, err := proto.ParseSeq(p); err == nil {
				if rtt := time.Since(time.Unix(0, int64(sent))); rtt >= 0 && rtt < time.Hour {
					c.a.metrics.HeartbeatRTT(rtt)
				}
			}
		case proto.FrameReconnect:
			var r proto.Reconnect
			if err := proto.DecodeJSON(t, p, &r); err != nil {
				return err
			}
			select {
			case c.reconnect <- r.Reason:
			default:
			}
		case proto.FrameRotateKey:
			select {
			case c.rotate <- struct{}{}:
			default:
			}
		case proto.FrameKeyAccepted:
			var r proto.KeyAccepted
			if err := proto.DecodeJSON(t, p, &r); err != nil {
				return err
			}
			select {
			case c.keyReply <- r:
			default:
			}
		case proto.FrameRefuse:
			var ref proto.Refuse
			if err := proto.DecodeJSON(t, p, &ref); err != nil {
				return err
			}
			return &ref
		default:
			c.a.log.Debug("ignoring control frame", "frame", t.String())
		}
	}
}

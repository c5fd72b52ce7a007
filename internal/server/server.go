// Package server is the tunnel-server engine: it accepts agents on a
// mux.Listener, keeps one live connection per agent, serves the routes'
// client listeners and opens a data stream through the right agent for every
// client session. The admin API (package admin) drives it.
//
// It is not the command line (cmd/tunnel-server) and not the storage
// (package store): it gets a store and a listener and runs until Close.
package server

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tunnelrelay/tunnel/internal/logging"
	"github.com/tunnelrelay/tunnel/internal/metrics"
	"github.com/tunnelrelay/tunnel/internal/store"
	"github.com/tunnelrelay/tunnel/pkg/auth"
	"github.com/tunnelrelay/tunnel/pkg/dbproxy"
	"github.com/tunnelrelay/tunnel/pkg/mux"
)

// Options configure a Server. Zero fields mean defaults.
type Options struct {
	// Store holds agents and routes. Required.
	Store store.Store
	// Logger; nil means slog.Default().
	Logger *slog.Logger
	// Version is the server's release, told to agents and shown in status.
	Version string

	// HandshakeTimeout bounds an agent's hello after the TLS handshake.
	// Default 10s.
	HandshakeTimeout time.Duration
	// OpenTimeout bounds how long a client waits for the agent to reach the
	// target. Default 15s.
	OpenTimeout time.Duration
	// MaxSessionsPerAgent caps the open sessions through one agent.
	// Default 10000.
	MaxSessionsPerAgent int
	// MaxHeaderSize bounds every frame of the tunnel protocol the server
	// reads. Default 4096.
	MaxHeaderSize int
	// HeartbeatInterval is how often the server pings each agent. Default 5s.
	HeartbeatInterval time.Duration
	// HeartbeatTimeout is how long a silent agent connection lives. Default 15s.
	HeartbeatTimeout time.Duration
	// HalfCloseTimeout bounds a half-closed session. Default 30s.
	HalfCloseTimeout time.Duration
	// RouteRetryInterval is how often a route whose address could not be
	// bound is tried again. Default 5s.
	RouteRetryInterval time.Duration
	// PostgresTLS holds the certificate PostgreSQL clients get when they
	// ask for TLS; nil means PostgreSQL routes refuse TLS.
	PostgresTLS *tls.Config
	// PostgresDomain is the DNS domain under which a PostgreSQL client's
	// TLS server name picks its route (ROUTE.PostgresDomain); empty means
	// server names pick no route.
	PostgresDomain string
	// LivenessTimeout is how long a second connection for an agent waits for
	// the first one to answer a ping before it replaces it. Default 2s, and
	// never more than HeartbeatTimeout.
	LivenessTimeout time.Duration
	// CAFingerprint is the auth.CertFingerprint of the CA certificate agents
	// pin, handed out with enrollment tokens; empty when not known.
	CAFingerprint string
	// ThroughputInterval is how often the routes' byte counts are sampled
	// into the throughput history, which keeps ThroughputWindow of them.
	// Default 5s.
	ThroughputInterval time.Duration
}

func (o *Options) setDefaults() {
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&o.HandshakeTimeout, 10*time.Second)
	def(&o.OpenTimeout, 15*time.Second)
	def(&o.HeartbeatInterval, 5*time.Second)
	def(&o.HeartbeatTimeout, 15*time.Second)
	def(&o.HalfCloseTimeout, 30*time.Second)
	def(&o.RouteRetryInterval, 5*time.Second)
	def(&o.LivenessTimeout, 2*time.Second)
	def(&o.ThroughputInterval, 5*time.Second)
	o.LivenessTimeout = min(o.LivenessTimeout, o.HeartbeatTimeout)
	if o.MaxSessionsPerAgent <= 0 {
		o.MaxSessionsPerAgent = 10000
	}
	if o.MaxHeaderSize <= 0 {
		o.MaxHeaderSize = 4096
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
}

// Server is the engine. Create it with New, start it with Open, stop it with
// Close.
type Server struct {
	// Static after New.
	opt      Options
	store    store.Store
	log      *slog.Logger
	verifier auth.Verifier
	started  time.Time
	epoch    time.Time // origin of heartbeat timestamps
	registry *prometheus.Registry
	metrics  *metrics.Server

	throughput *throughputRing // written by sampleThroughput

	// Set by Open.
	ctx    context.Context // canceled by Close: ends every goroutine below
	cancel context.CancelFunc
	ln     mux.Listener
	wg     sync.WaitGroup // accept loop, agent connections, route retries

	nextSession atomic.Uint64
	dialing     atomic.Int64 // Dial calls under way
	// caFingerprint is Options.CAFingerprint, as changed by SetCAFingerprint.
	caFingerprint atomic.Pointer[string]
	maxPerAgent   atomic.Int64       // Options.MaxSessionsPerAgent, as changed by SetLimits
	openTimeout   atomic.Int64       // Options.OpenTimeout in ns, as changed by SetLimits
	cancels       dbproxy.CancelKeys // PostgreSQL cancel keys, shared by every route
	enrollFails   failLimiter        // failed enrollment attempts by peer address

	routeMu sync.Mutex // serializes AddRoute and RemoveRoute: store and map change together

	mu       sync.Mutex
	agents   map[string]*agentConn // live connections, by agent name
	routes   map[string]*route     // by route name
	ports    map[string]*port      // by listen address, as stored
	retired  []*port               // ports without routes whose connections may still run
	sessions map[uint64]*session   // live sessions
	// restarting holds when each agent whose connection ended while
	// draining went away: its successor is expected soon (see awaitAgent).
	restarting map[string]time.Time
	failed     chan error // the accept loop's error, when it stops on its own
	closing    bool

	endedBytes byteCount // moved by sessions that have ended
}

// New returns a Server; Open starts it.
func New(opt Options) (*Server, error) {
	if opt.Store == nil {
		return nil, errors.New("server: Options.Store is nil")
	}
	opt.setDefaults()
	if opt.HeartbeatTimeout <= opt.HeartbeatInterval {
		return nil, fmt.Errorf("server: heartbeat timeout (%v) must be greater than the interval (%v)", opt.HeartbeatTimeout, opt.HeartbeatInterval)
	}
	s := &Server{
		opt:      opt,
		store:    opt.Store,
		log:      logging.Module(opt.Logger, "server"),
		agents:   map[string]*agentConn{},
		routes:   map[string]*route{},
		ports:    map[string]*port{},
		sessions: map[uint64]*session{},

		restarting: map[string]time.Time{},
		failed:     make(chan error, 1),
		throughput: newThroughputRing(opt.ThroughputInterval),
	}
	s.verifier = auth.Verifier{Lookup: s.lookupAgent}
	s.SetLimits(opt.MaxSessionsPerAgent, opt.OpenTimeout)
	s.SetCAFingerprint(opt.CAFingerprint)
	s.initMetrics()
	return s, nil
}

// SetCAFingerprint changes the CA fingerprint handed out with enrollment
// tokens, as when a reload loads another server.ca.
func (s *Server) SetCAFingerprint(fp string) { s.caFingerprint.Store(&fp) }

// SetLimits changes the per-agent session limit and the open timeout, as
// on a config reload; zero keeps a value. They apply to sessions that start
// from now on.
func (s *Server) SetLimits(maxSessionsPerAgent int, openTimeout time.Duration) {
	if maxSessionsPerAgent > 0 {
		s.maxPerAgent.Store(int64(maxSessionsPerAgent))
	}
	if openTimeout > 0 {
		s.openTimeout.Store(int64(openTimeout))
	}
}

func (s *Server) lookupAgent(ctx context.Context, name string) (auth.Registration, error) {
	a, err := s.store.Agent(ctx, name)
	if errors.Is(err, store.ErrNotFound) {
		return auth.Registration{}, auth.ErrUnknownAgent
	}
	if err != nil {
		return auth.Registration{}, err
	}
	return auth.Registration{Fingerprint: a.Fingerprint, Pending: a.PendingFingerprint, Disabled: a.Disabled}, nil
}

// Open starts serving agents from ln and opens the listeners of every stored
// route. ctx bounds Open itself; what it starts runs until Close, so that a
// signal can start a drain instead of cutting every session at once. A route
// whose address cannot be bound is logged and retried in the background.
func (s *Server) Open(ctx context.Context, ln mux.Listener) error {
	s.ctx, s.cancel = context.WithCancel(context.WithoutCancel(ctx))
	s.started = time.Now()
	s.epoch = s.started
	s.ln = ln
	routes, err := s.store.Routes(ctx)
	if err != nil {
		s.cancel()
		return fmt.Errorf("load routes: %w", err)
	}
	// Session ids only need to differ between sessions of one server and
	// be unlikely to repeat across restarts in the logs; a clock reading is
	// enough, and wrapping around is harmless.
	s.nextSession.Store(uint64(time.Now().UnixNano()) << 8)
	for _, r := range routes {
		s.startRoute(r)
	}
	s.wg.Add(1)
	go s.acceptAgents()
	s.throughput.last = s.started
	s.wg.Add(1)
	go s.sampleThroughput()
	s.log.Info("serving agents", "listen", ln.Addr().String(), "routes", len(routes))
	return nil
}

func (s *Server) acceptAgents() {
	defer s.wg.Done()
	for {
		sess, err := s.ln.Accept(s.ctx)
		if err != nil {
			if s.ctx.Err() == nil && !errors.Is(err, mux.ErrListenerClosed) {
				s.log.Error("agent listener stopped", logging.KeyErr, err)
				s.failed <- err
			}
			return
		}
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			s.serveAgent(sess)
		}()
	}
}

// Close stops accepting agents and clients, lets live sessions finish until
// ctx is done, then ends every connection and waits for all goroutines.
func (s *Server) Close(ctx context.Context) error {
	s.mu.Lock()
	s.closing = true
	ports := make([]*port, 0, len(s.ports)+len(s.retired))
	for _, p := range s.ports {
		ports = append(ports, p)
	}
	ports = append(ports, s.retired...)
	agents := make([]*agentConn, 0, len(s.agents))
	for _, ac := range s.agents {
		agents = append(agents, ac)
	}
	s.mu.Unlock()

	err := s.ln.Close()
	for _, p := range ports {
		p.stopListening()
	}
	// Agents start reconnecting now, so that they are back as soon as
	// this server's successor listens; their sessions in flight finish on
	// the connections they have. The request must leave before the
	// connections close: each write is bounded, and the connections stay
	// up at least reconnectLinger after it, for QUIC, whose writes only
	// queue, to send it.
	var asked sync.WaitGroup
	for _, ac := range agents {
		asked.Go(func() { ac.reconnect("server shutting down") })
	}
	askedAt := time.Now()
	if n := s.liveSessions(); n > 0 {
		s.log.Info("draining sessions", "sessions", n)
		tick := time.NewTicker(50 * time.Millisecond)
	drain:
		for s.liveSessions() > 0 {
			select {
			case <-ctx.Done():
				s.log.Warn("drain timeout: closing sessions", "sessions", s.liveSessions())
				break drain
			case <-tick.C:
			}
		}
		tick.Stop()
	}
	asked.Wait()
	if rest := reconnectLinger - time.Since(askedAt); len(agents) > 0 && rest > 0 {
		linger := time.NewTimer(rest)
		select {
		case <-linger.C:
		case <-ctx.Done():
		}
		linger.Stop()
	}
	s.cancel()
	s.wg.Wait()
	for _, p := range ports {
		p.wait()
	}
	return err
}

// Failed delivers the error that stopped the server from accepting agents,
// when that happens before Close: a server in that state serves its
// connected agents but no new ones, and should be stopped and restarted.
func (s *Server) Failed() <-chan error { return s.failed }

// liveSessions counts the sessions in flight, and those being set up.
func (s *Server) liveSessions() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.sessions) + int(s.dialing.Load())
}

// since returns the heartbeat timestamp for now.
func (s *Server) since() uint64 { return uint64(time.Since(s.epoch)) }

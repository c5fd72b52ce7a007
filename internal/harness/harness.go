// Package harness runs a tunnel-server engine and tunnel-agent engines in
// one process on loopback, with fresh credentials: the fixture of the
// end-to-end tests and of the benchmark command. It is not for production:
// it keeps the CA key in memory and logs wherever it is told.
package harness

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"path/filepath"
	"sync"
	"time"

	"github.com/tunnelrelay/tunnel/internal/admin"
	"github.com/tunnelrelay/tunnel/internal/agent"
	"github.com/tunnelrelay/tunnel/internal/logging"
	"github.com/tunnelrelay/tunnel/internal/server"
	"github.com/tunnelrelay/tunnel/internal/store"
	"github.com/tunnelrelay/tunnel/pkg/auth"
	"github.com/tunnelrelay/tunnel/pkg/mux"
)

// PostgresDomain is a DNS domain the test server's certificate covers
// (*.db.test), for PostgreSQL routes picked by TLS server name.
const PostgresDomain = "db.test"

// ServerHost is a name the test server's certificate covers and no DNS
// knows: an agent given ServerHost:port as the server's address
// (AgentConfig.ServerAddress) reaches it only through a proxy that maps the
// name to 127.0.0.1, as internal/testutil/connectproxy can.
const ServerHost = "tunnel.test"

// Server is an in-process tunnel-server.
type Server struct {
	*server.Server
	CA        *auth.CA
	CAPEM     []byte
	Store     store.Store
	TLSConfig *tls.Config // the agent listener's
	Listener  mux.Listener
	Addr      string // where agents connect
	Logger    *slog.Logger

	mu     sync.Mutex
	agents []*Agent
}

// Config for StartServer.
type Config struct {
	// Dir holds the database. Required.
	Dir string
	// Listen is the agent address; default "127.0.0.1:0".
	Listen string
	// Options for the engine; Store is filled in.
	Options server.Options
	// Mux tunes the agent listener's sessions.
	Mux *mux.Config
}

// StartServer creates a CA, a server certificate for 127.0.0.1 and
// localhost, a SQLite store in cfg.Dir, and starts the engine.
func StartServer(ctx context.Context, cfg Config) (*Server, error) {
	ca, err := auth.NewCA("tunnel test CA", 24*time.Hour)
	if err != nil {
		return nil, err
	}
	certPEM, keyPEM, err := ca.IssueServerCert([]string{"127.0.0.1", "localhost", ServerHost, "*." + PostgresDomain}, 24*time.Hour)
	if err != nil {
		return nil, err
	}
	if cfg.Options.PostgresTLS == nil {
		// As tunnel-server run does: PostgreSQL clients get the server's
		// certificate unless another is configured.
		cert, err := tls.X509KeyPair(certPEM, keyPEM)
		if err != nil {
			return nil, err
		}
		cfg.Options.PostgresTLS = &tls.Config{Certificates: []tls.Certificate{cert}}
	}
	// As tunnel-server run does: the CA goes in the chain, for agents that
	// enroll by its fingerprint.
	chainPEM, err := auth.AppendCACert(certPEM, ca.CertPEM())
	if err != nil {
		return nil, err
	}
	tlsConf, err := auth.ServerConfig(chainPEM, keyPEM)
	if err != nil {
		return nil, err
	}
	if cfg.Options.CAFingerprint == "" {
		cfg.Options.CAFingerprint = auth.CertFingerprint(ca.Cert)
	}
	st, err := store.OpenSQLite(ctx, filepath.Join(cfg.Dir, "tunnel.db"))
	if err != nil {
		return nil, err
	}
	s, err := StartServerWith(ctx, cfg, st, tlsConf)
	if err != nil {
		st.Close()
		return nil, err
	}
	s.CA, s.CAPEM = ca, ca.CertPEM()
	return s, nil
}

// StartServerWith starts the engine on an existing store and TLS config
// (a restart).
func StartServerWith(ctx context.Context, cfg Config, st store.Store, tlsConf *tls.Config) (*Server, error) {
	listen := cfg.Listen
	if listen == "" {
		listen = "127.0.0.1:0"
	}
	log := cfg.Options.Logger
	if log == nil {
		log = slog.Default()
	}
	muxCfg := mux.Config{}
	if cfg.Mux != nil {
		muxCfg = *cfg.Mux
	}
	if muxCfg.Logger == nil {
		muxCfg.Logger = logging.Module(log, "mux")
	}
	if muxCfg.HandshakeTimeout == 0 {
		muxCfg.HandshakeTimeout = cfg.Options.HandshakeTimeout
	}
	if muxCfg.AcceptBacklog == 0 && muxCfg.MaxStreams == 0 {
		// As tunnel-server run sets them.
		muxCfg.AcceptBacklog, muxCfg.MaxStreams = mux.ServerAcceptBacklog, mux.ServerMaxStreams
	}
	ln, err := mux.Listen(listen, tlsConf, &muxCfg)
	if err != nil {
		return nil, err
	}
	opt := cfg.Options
	opt.Store = st
	opt.Logger = log
	srv, err := server.New(opt)
	if err != nil {
		ln.Close()
		return nil, err
	}
	if err := srv.Open(ctx, ln); err != nil {
		ln.Close()
		return nil, err
	}
	return &Server{Server: srv, Store: st, TLSConfig: tlsConf, Listener: ln, Addr: ln.Addr().String(), Logger: log}, nil
}

// Close stops the agents started through s, then the server, waiting at
// most drain for sessions, and closes the store.
func (s *Server) Close(drain time.Duration) error {
	s.mu.Lock()
	agents := s.agents
	s.agents = nil
	s.mu.Unlock()
	for _, a := range agents {
		a.Stop()
	}
	ctx, cancel := context.WithTimeout(context.Background(), drain)
	defer cancel()
	return errors.Join(s.Server.Close(ctx), s.Store.Close())
}

// Agent is an in-process tunnel-agent.
type Agent struct {
	*agent.Agent
	Name   string
	Key    *auth.AgentKey
	cancel context.CancelFunc
	done   chan struct{}
	err    error
}

// AgentConfig for NewAgent.
type AgentConfig struct {
	Name    string
	Targets []agent.Target
	// Options for the engine; name, address, TLS and targets are filled in.
	Options agent.Options
	// Key, if set, is used instead of a new key.
	Key *auth.AgentKey
	// Register adds the agent to the server first (the default when Key is nil).
	Register bool
	// CAPEM, if set, is pinned instead of the server's CA.
	CAPEM []byte
	// Via, if set, names the address each TLS connection attempt dials
	// instead of the server's (a fault proxy, say).
	Via func() string
	// ViaQUIC is Via for QUIC connection attempts (a UDP fault proxy).
	ViaQUIC func() string
	// Transport is the agent's transport: "tls", "quic" or "auto". Empty
	// means Options.Transport, and "tls" when that is empty too (the
	// server listens for both).
	Transport string
	// OnSession, if set, sees every session the agent connects.
	OnSession func(mux.Session)
	// ServerAddress, if set, is the server's address as the agent's config
	// would give it (ServerHost:port, say) instead of the listener's; its
	// host is the name the agent checks the certificate for.
	ServerAddress string
}

// NewAgent creates an agent (registering it when asked) without starting it.
func (s *Server) NewAgent(ctx context.Context, cfg AgentConfig) (*Agent, error) {
	key := cfg.Key
	if key == nil {
		var err error
		if key, err = auth.NewAgentKey(); err != nil {
			return nil, err
		}
		cfg.Register = true
	}
	if cfg.Register {
		if _, err := s.AddAgent(ctx, admin.AddAgentRequest{Name: cfg.Name, Fingerprint: key.Fingerprint()}); err != nil {
			return nil, err
		}
	}
	caPEM := cfg.CAPEM
	if caPEM == nil {
		caPEM = s.CAPEM
	}
	serverAddr, serverName := s.Addr, "127.0.0.1"
	if cfg.ServerAddress != "" {
		serverAddr = cfg.ServerAddress
		host, _, err := net.SplitHostPort(serverAddr)
		if err != nil {
			return nil, err
		}
		serverName = host
	}
	tlsConf, err := auth.ClientConfig(cfg.Name, key, caPEM, serverName)
	if err != nil {
		return nil, err
	}
	opt := cfg.Options
	opt.Name = cfg.Name
	opt.ServerAddress = serverAddr
	opt.TLSConfig = tlsConf
	opt.Targets = cfg.Targets
	switch {
	case cfg.Transport != "":
		opt.Transport = cfg.Transport
	case opt.Transport == "":
		opt.Transport = agent.TransportTLS
	}
	dialer := func(via func() string, dial func(context.Context, string, *tls.Config, *mux.Config) (mux.Session, error)) func(context.Context) (mux.Session, error) {
		if via == nil && cfg.OnSession == nil {
			return nil
		}
		return func(ctx context.Context) (mux.Session, error) {
			addr := s.Addr
			if via != nil {
				addr = via()
			}
			sess, err := dial(ctx, addr, tlsConf, &mux.Config{HandshakeTimeout: opt.HandshakeTimeout, Logger: opt.Logger})
			if err == nil && cfg.OnSession != nil {
				cfg.OnSession(sess)
			}
			return sess, err
		}
	}
	opt.DialTLS = dialer(cfg.Via, mux.DialTLS)
	opt.DialQUIC = dialer(cfg.ViaQUIC, mux.DialQUIC)
	if opt.Logger == nil {
		opt.Logger = s.Logger
	}
	a, err := agent.New(opt)
	if err != nil {
		return nil, err
	}
	return &Agent{Agent: a, Name: cfg.Name, Key: key}, nil
}

// StartAgent creates an agent and runs it in the background until Stop (or
// the server's Close).
func (s *Server) StartAgent(ctx context.Context, cfg AgentConfig) (*Agent, error) {
	a, err := s.NewAgent(ctx, cfg)
	if err != nil {
		return nil, err
	}
	a.Start(ctx)
	s.mu.Lock()
	s.agents = append(s.agents, a)
	s.mu.Unlock()
	return a, nil
}

// Start runs the agent in the background.
func (a *Agent) Start(ctx context.Context) {
	ctx, a.cancel = context.WithCancel(ctx)
	a.done = make(chan struct{})
	go func() {
		defer close(a.done)
		a.err = a.Run(ctx)
	}()
}

// Stop stops the agent and waits for it; it returns Run's result.
func (a *Agent) Stop() error {
	if a.cancel == nil {
		return nil
	}
	a.cancel()
	<-a.done
	return a.err
}

// Done is closed when Run has returned.
func (a *Agent) Done() <-chan struct{} { return a.done }

// Err is Run's result, after Done.
func (a *Agent) Err() error { return a.err }

// WaitOnline waits until the server lists the agent as connected.
func (s *Server) WaitOnline(ctx context.Context, name string) error {
	for {
		agents, err := s.Agents(ctx)
		if err != nil {
			return err
		}
		for _, a := range agents {
			if a.Name == name && a.Online {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("agent %q not online: %w", name, ctx.Err())
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// AddProtocolRoute adds a route of the given protocol on listen ("" means
// a system-chosen loopback port) and returns its address. isDefault nil
// leaves the choice to the server.
func (s *Server) AddProtocolRoute(ctx context.Context, name, agentName, target, protocol, listen string, isDefault *bool) (string, error) {
	if listen == "" {
		listen = "127.0.0.1:0"
	}
	r, err := s.Server.AddRoute(ctx, admin.AddRouteRequest{
		Name: name, Agent: agentName, Target: target, Listen: listen, Protocol: protocol, Default: isDefault,
	})
	if err != nil {
		return "", err
	}
	return r.Listen, nil
}

// AddTCPRoute adds a TCP route on a system-chosen loopback port and returns
// the address clients connect to.
func (s *Server) AddTCPRoute(ctx context.Context, name, agentName, target string, allow ...string) (string, error) {
	r, err := s.Server.AddRoute(ctx, admin.AddRouteRequest{
		Name: name, Agent: agentName, Target: target, Listen: "127.0.0.1:0", Allow: allow,
	})
	if err != nil {
		return "", err
	}
	return r.Listen, nil
}

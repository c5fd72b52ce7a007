package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"github.com/tunnelrelay/tunnel/internal/agent"
	"github.com/tunnelrelay/tunnel/internal/harness"
	"github.com/tunnelrelay/tunnel/internal/logging"
	"github.com/tunnelrelay/tunnel/internal/netsim"
	"github.com/tunnelrelay/tunnel/internal/server"
)

// Path is one way from the benchmark's clients to a target.
type Path int

// The paths the throughput scenarios measure, in the order they run.
const (
	PathDirect Path = iota // straight to the target
	PathRelay              // through the reference relay
	PathTunnel             // through a route of the tunnel server and an agent, over TLS
	PathQUIC               // the same with the agent connected over QUIC
	numPaths
)

// Paths lists the paths every throughput scenario measures, in order;
// PathQUIC is measured by the bulk scenario only.
var Paths = []Path{PathDirect, PathRelay, PathTunnel}

func (p Path) String() string {
	switch p {
	case PathDirect:
		return "direct"
	case PathRelay:
		return "reference relay"
	case PathTunnel:
		return "tunnel (TLS)"
	case PathQUIC:
		return "tunnel (QUIC)"
	}
	return fmt.Sprintf("Path(%d)", int(p))
}

// Endpoints are the addresses clients dial to reach one target by each
// path; "" where the path is not set up.
type Endpoints [numPaths]string

// Addr returns the address for path p.
func (e Endpoints) Addr(p Path) string { return e[p] }

// drainTimeout bounds how long closing the tunnel server waits for sessions.
const drainTimeout = 2 * time.Second

// Env holds what scenarios share: the configuration, the in-process tunnel
// server, the binaries built for the process scenarios, and everything
// Expose started, which Close stops.
type Env struct {
	// Static after newEnv.
	Config Config
	tunnel *harness.Server
	dir    string
	ctx    context.Context // the agents' lifetime

	mu     sync.Mutex
	relays []*Relay    // guarded by mu
	bins   *binaries   // guarded by mu: built by the first binaries call
	binErr error       // guarded by mu: why building failed
	links  []io.Closer // guarded by mu: emulated links
}

// newEnv starts the tunnel server with a quiet logger and default options:
// the configuration a user gets.
func newEnv(ctx context.Context, cfg Config) (*Env, error) {
	dir, err := os.MkdirTemp("", "tunnel-bench-")
	if err != nil {
		return nil, err
	}
	srv, err := harness.StartServer(ctx, harness.Config{
		Dir:     dir,
		Options: server.Options{Logger: logging.Discard()},
	})
	if err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("start the tunnel server: %w", err)
	}
	return &Env{Config: cfg, tunnel: srv, dir: dir, ctx: ctx}, nil
}

// Expose makes target reachable by the direct, relay and tunnel paths: it
// starts a reference relay to it, and an agent (with its own tunnel
// connection) that declares it, with a route. name must be a valid agent
// name; it is used for the agent, its target and the route.
func (e *Env) Expose(ctx context.Context, name, target string) (Endpoints, error) {
	relay, err := StartRelay(e.ctx, target)
	if err != nil {
		return Endpoints{}, fmt.Errorf("start the reference relay: %w", err)
	}
	e.mu.Lock()
	e.relays = append(e.relays, relay)
	e.mu.Unlock()

	route, err := e.exposeTunnel(ctx, name, target, harness.AgentConfig{Transport: "tls"})
	if err != nil {
		return Endpoints{}, err
	}
	return Endpoints{PathDirect: target, PathRelay: relay.Addr(), PathTunnel: route}, nil
}

// ExposeQUIC makes target reachable through its own agent that connects to
// the server over QUIC (the server listens for TLS and QUIC on one port),
// and returns the route's address.
func (e *Env) ExposeQUIC(ctx context.Context, name, target string) (string, error) {
	return e.exposeTunnel(ctx, name, target, harness.AgentConfig{Transport: "quic"})
}

// exposeTunnel starts an agent named name that declares target under the
// same name, configured as base (Name, Targets and Options are filled in),
// waits for it to connect and adds a route; it returns the route's address.
func (e *Env) exposeTunnel(ctx context.Context, name, target string, base harness.AgentConfig) (string, error) {
	base.Name = name
	base.Targets = []agent.Target{{Name: name, Address: target}}
	base.Options = agent.Options{Logger: logging.Discard()}
	if _, err := e.tunnel.StartAgent(e.ctx, base); err != nil {
		return "", fmt.Errorf("start agent %q: %w", name, err)
	}
	wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := e.tunnel.WaitOnline(wctx, name); err != nil {
		return "", err
	}
	if base.Transport != "" {
		// A path measured over another transport would make a wrong row.
		agents, err := e.tunnel.Agents(ctx)
		if err != nil {
			return "", err
		}
		for _, a := range agents {
			if a.Name == name && a.Transport != base.Transport {
				return "", fmt.Errorf("agent %q connected over %q, not %q", name, a.Transport, base.Transport)
			}
		}
	}
	route, err := e.tunnel.AddTCPRoute(ctx, name, name, name)
	if err != nil {
		return "", fmt.Errorf("add route %q: %w", name, err)
	}
	return route, nil
}

// ExposeOverLink makes target reachable by plain TCP over an emulated link
// (client → link → target) and through the tunnel with the same kind of
// link between the agent and the server (client → route, server ⇄ link ⇄
// agent → target). It returns the plain address as PathDirect and the
// route as PathTunnel.
func (e *Env) ExposeOverLink(ctx context.Context, name, target string, link netsim.Config) (Endpoints, error) {
	plain, err := e.startLink(target, link)
	if err != nil {
		return Endpoints{}, err
	}
	wan, err := e.startLink(e.tunnel.Addr, link)
	if err != nil {
		return Endpoints{}, err
	}
	// TLS over TCP, the transport the link carries (a QUIC agent's UDP
	// would go around it).
	route, err := e.exposeTunnel(ctx, name, target, harness.AgentConfig{Transport: "tls", Via: wan.Addr})
	if err != nil {
		return Endpoints{}, err
	}
	return Endpoints{PathDirect: plain.Addr(), PathTunnel: route}, nil
}

func (e *Env) startLink(target string, cfg netsim.Config) (*netsim.Link, error) {
	l, err := netsim.Listen("127.0.0.1:0", target, cfg)
	if err != nil {
		return nil, fmt.Errorf("start an emulated link: %w", err)
	}
	e.mu.Lock()
	e.links = append(e.links, l)
	e.mu.Unlock()
	return l, nil
}

// Close stops the relays, the agents, the tunnel server and the links, and
// removes the run's directory with the binaries.
func (e *Env) Close() error {
	e.mu.Lock()
	relays, links := e.relays, e.links
	e.relays, e.links = nil, nil
	e.mu.Unlock()
	var errs []error
	for _, r := range relays {
		errs = append(errs, r.Close())
	}
	errs = append(errs, e.tunnel.Close(drainTimeout))
	for _, l := range links {
		errs = append(errs, l.Close())
	}
	errs = append(errs, os.RemoveAll(e.dir))
	return errors.Join(errs...)
}

// progress writes one line to the progress writer.
func (e *Env) progress(format string, args ...any) {
	fmt.Fprintf(e.Config.Progress, "tunnel-bench: "+format+"\n", args...)
}

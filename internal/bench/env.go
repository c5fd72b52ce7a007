package bench

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"time"

	"github.com/tunnelrelay/tunnel/internal/agent"
	"github.com/tunnelrelay/tunnel/internal/harness"
	"github.com/tunnelrelay/tunnel/internal/logging"
	"github.com/tunnelrelay/tunnel/internal/server"
)

// Path is one way from the benchmark's clients to a target.
type Path int

// The paths every scenario measures, in the order they run.
const (
	PathDirect Path = iota // straight to the target
	PathRelay              // through the reference relay
	PathTunnel             // through a route of the tunnel server and an agent
)

// Paths lists every Path in order.
var Paths = []Path{PathDirect, PathRelay, PathTunnel}

func (p Path) String() string {
	switch p {
	case PathDirect:
		return "direct"
	case PathRelay:
		return "reference relay"
	case PathTunnel:
		return "tunnel"
	}
	return fmt.Sprintf("Path(%d)", int(p))
}

// Endpoints are the addresses clients dial to reach one target by each path.
type Endpoints [3]string

// Addr returns the address for path p.
func (e Endpoints) Addr(p Path) string { return e[p] }

// drainTimeout bounds how long closing the tunnel server waits for sessions.
const drainTimeout = 2 * time.Second

// Env holds what scenarios share: the configuration, the in-process tunnel
// server, and everything Expose started, which Close stops.
type Env struct {
	// Static after newEnv.
	Config Config
	tunnel *harness.Server
	dir    string
	ctx    context.Context // the agents' lifetime

	mu     sync.Mutex
	relays []*Relay
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

// Expose makes target reachable by every path: it starts a reference relay
// to it, and an agent (with its own tunnel connection) that declares it,
// with a route. name must be a valid agent name; it is used for the agent,
// its target and the route.
func (e *Env) Expose(ctx context.Context, name, target string) (Endpoints, error) {
	relay, err := StartRelay(e.ctx, target)
	if err != nil {
		return Endpoints{}, fmt.Errorf("start the reference relay: %w", err)
	}
	e.mu.Lock()
	e.relays = append(e.relays, relay)
	e.mu.Unlock()

	_, err = e.tunnel.StartAgent(e.ctx, harness.AgentConfig{
		Name:    name,
		Targets: []agent.Target{{Name: name, Address: target}},
		Options: agent.Options{Logger: logging.Discard()},
	})
	if err != nil {
		return Endpoints{}, fmt.Errorf("start agent %q: %w", name, err)
	}
	wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := e.tunnel.WaitOnline(wctx, name); err != nil {
		return Endpoints{}, err
	}
	route, err := e.tunnel.AddTCPRoute(ctx, name, name, name)
	if err != nil {
		return Endpoints{}, fmt.Errorf("add route %q: %w", name, err)
	}
	return Endpoints{PathDirect: target, PathRelay: relay.Addr(), PathTunnel: route}, nil
}

// Close stops the relays, the agents and the tunnel server, and removes the
// server's directory.
func (e *Env) Close() error {
	e.mu.Lock()
	relays := e.relays
	e.relays = nil
	e.mu.Unlock()
	var errs []error
	for _, r := range relays {
		errs = append(errs, r.Close())
	}
	errs = append(errs, e.tunnel.Close(drainTimeout), os.RemoveAll(e.dir))
	return errors.Join(errs...)
}

// progress writes one line to the progress writer.
func (e *Env) progress(format string, args ...any) {
	fmt.Fprintf(e.Config.Progress, "tunnel-bench: "+format+"\n", args...)
}

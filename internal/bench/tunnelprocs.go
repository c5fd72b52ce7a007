package bench

import (
	"context"
	"fmt"
	"maps"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/tunnelrelay/tunnel/internal/admin"
	"github.com/tunnelrelay/tunnel/internal/netutil"
)

// A tunnel-server and tunnel-agent pair as processes, set up the way the
// README tells a user to: tunnel-server init, run, agent add (which writes
// the agent's config), a [[targets]] entry appended to that config,
// tunnel-agent run, route add. Limits a measurement needs raised are set
// through the documented TUNNEL_SERVER_* and TUNNEL_AGENT_* environment
// overrides. Both log at warn, to a buffer shown when something fails.

// procStopGrace bounds how long a stopping process may take before it is
// killed; the server is told to drain for less.
const procStopGrace = 5 * time.Second

// procServer is a running tunnel-server process.
type procServer struct {
	*proc
	bins      *binaries
	dir       string
	config    string        // its tunnel-server.toml
	agentAddr string        // where agents connect
	admin     *admin.Client // its admin endpoint
	caPEM     []byte        // the CA agents pin
}

// startProcServer initialises a server in a new directory under the run's
// and runs it, with env added to its environment.
func startProcServer(ctx context.Context, e *Env, bins *binaries, name string, env []string) (*procServer, error) {
	dir, err := os.MkdirTemp(e.dir, name+"-")
	if err != nil {
		return nil, err
	}
	ports, err := netutil.FreePorts(2)
	if err != nil {
		return nil, err
	}
	agentAddr, adminAddr := loopback(ports[0]), loopback(ports[1])
	if _, err := runCommand(ctx, bins.path(serverBin), nil, "init", "--dir", dir, "--hostname", "127.0.0.1",
		"--listen", agentAddr, "--admin-listen", adminAddr); err != nil {
		return nil, err
	}
	cfg := filepath.Join(dir, "tunnel-server.toml")
	token, err := os.ReadFile(filepath.Join(dir, "admin.token"))
	if err != nil {
		return nil, err
	}
	caPEM, err := os.ReadFile(filepath.Join(dir, "ca.crt"))
	if err != nil {
		return nil, err
	}
	env = append([]string{"TUNNEL_SERVER_LIMITS_DRAIN_TIMEOUT=1s"}, env...)
	p, err := startProc(serverBin, bins.path(serverBin), env, "run", "--config", cfg, "--log", "warn")
	if err != nil {
		return nil, err
	}
	s := &procServer{proc: p, bins: bins, dir: dir, config: cfg, agentAddr: agentAddr,
		admin: admin.NewClient(adminAddr, strings.TrimSpace(string(token))), caPEM: caPEM}
	err = poll(ctx, 15*time.Second, "tunnel-server to answer on its admin endpoint", func() (bool, error) {
		if err := p.alive(); err != nil {
			return false, err
		}
		_, err := s.admin.Agents(ctx)
		return err == nil, nil
	})
	if err != nil {
		s.stop(procStopGrace)
		return nil, err
	}
	return s, nil
}

// manage runs a management command of tunnel-server against s (agent add,
// route add...).
func (s *procServer) manage(ctx context.Context, args ...string) error {
	_, err := runCommand(ctx, s.bins.path(serverBin), nil, append(args, "--config", s.config)...)
	return err
}

// startAgent registers an agent, declares one target in its config and
// runs it, with env added to its environment; it returns once the server
// lists the agent as online.
func (s *procServer) startAgent(ctx context.Context, name, targetName, targetAddr string, env []string) (*proc, error) {
	cfg := filepath.Join(s.dir, "tunnel-agent-"+name+".toml")
	if err := s.manage(ctx, "agent", "add", name, "--out", cfg); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(cfg, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		return nil, err
	}
	_, err = fmt.Fprintf(f, "\n[[targets]]\nname = %q\naddress = %q\n", targetName, targetAddr)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return nil, err
	}
	p, err := startProc(agentBin, s.bins.path(agentBin), env, "run", "--config", cfg, "--log", "warn")
	if err != nil {
		return nil, err
	}
	err = poll(ctx, 30*time.Second, "agent "+name+" to connect", func() (bool, error) {
		if err := p.alive(); err != nil {
			return false, err
		}
		agents, err := s.admin.Agents(ctx)
		if err != nil {
			return false, nil // asked again in a moment
		}
		for _, a := range agents {
			if a.Name == name && a.Online {
				return true, nil
			}
		}
		return false, nil
	})
	if err != nil {
		p.stop(procStopGrace)
		return nil, err
	}
	return p, nil
}

// online counts the agents the server lists as connected.
func (s *procServer) online(ctx context.Context) (int, error) {
	byTransport, err := s.transports(ctx)
	n := 0
	for _, c := range byTransport {
		n += c
	}
	return n, err
}

// transports counts the connected agents by the transport they use.
func (s *procServer) transports(ctx context.Context) (map[string]int, error) {
	agents, err := s.admin.Agents(ctx)
	if err != nil {
		return nil, err
	}
	m := map[string]int{}
	for _, a := range agents {
		if a.Online {
			m[a.Transport]++
		}
	}
	return m, nil
}

// transportsText says which transports connected agents use, e.g.
// "tls (200)".
func transportsText(m map[string]int) string {
	var parts []string
	for _, t := range slices.Sorted(maps.Keys(m)) {
		name := t
		if name == "" {
			name = "unknown"
		}
		parts = append(parts, fmt.Sprintf("%s (%d)", name, m[t]))
	}
	if len(parts) == 0 {
		return "none"
	}
	return strings.Join(parts, ", ")
}

// addRoute adds a route on a free loopback port with `route add` and
// returns its address.
func (s *procServer) addRoute(ctx context.Context, name, agentName, target string) (string, error) {
	ports, err := netutil.FreePorts(1)
	if err != nil {
		return "", err
	}
	addr := loopback(ports[0])
	if err := s.manage(ctx, "route", "add", name, "--agent", agentName, "--target", target, "--listen", addr); err != nil {
		return "", err
	}
	return addr, nil
}

// procTunnel is a server and one agent as processes, with a route to one
// target.
type procTunnel struct {
	server *procServer
	agent  *proc
	route  string // where clients connect
}

// startProcTunnel sets up a server and an agent process with a route to
// target. serverEnv and agentEnv are added to their environments.
func startProcTunnel(ctx context.Context, e *Env, bins *binaries, name, target string, serverEnv, agentEnv []string) (*procTunnel, error) {
	srv, err := startProcServer(ctx, e, bins, name, serverEnv)
	if err != nil {
		return nil, err
	}
	ag, err := srv.startAgent(ctx, name, "target", target, agentEnv)
	if err != nil {
		srv.stop(procStopGrace)
		return nil, err
	}
	route, err := srv.addRoute(ctx, name, name, "target")
	if err != nil {
		ag.stop(procStopGrace)
		srv.stop(procStopGrace)
		return nil, err
	}
	return &procTunnel{server: srv, agent: ag, route: route}, nil
}

// stop stops the agent, then the server.
func (t *procTunnel) stop() {
	t.agent.stop(procStopGrace)
	t.server.stop(procStopGrace)
}

// alive reports the first of the two processes found to have exited.
func (t *procTunnel) alive() error {
	if err := t.server.alive(); err != nil {
		return err
	}
	return t.agent.alive()
}

// runCommand runs a program to completion and returns its output; a
// failure carries the output's last lines.
func runCommand(ctx context.Context, path string, env []string, args ...string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, path, args...)
	cmd.Env = append(childEnv(), env...)
	cmd.WaitDelay = 5 * time.Second
	out, err := cmd.CombinedOutput()
	if err != nil {
		return out, fmt.Errorf("%s %s: %v: %s", filepath.Base(path), strings.Join(args[:min(2, len(args))], " "), err, lastLines(out, 3))
	}
	return out, nil
}

// poll calls check every 50 ms until it reports done or an error, for at
// most limit.
func poll(ctx context.Context, limit time.Duration, what string, check func() (bool, error)) error {
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	for {
		done, err := check()
		if err != nil {
			return err
		}
		if done {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waited %v for %s: %w", limit, what, ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func loopback(port int) string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(port)) }

package server

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sort"
	"strconv"
	"time"

	"github.com/tunnelrelay/tunnel/internal/admin"
	"github.com/tunnelrelay/tunnel/internal/logging"
	"github.com/tunnelrelay/tunnel/internal/proto"
	"github.com/tunnelrelay/tunnel/internal/store"
	"github.com/tunnelrelay/tunnel/pkg/auth"
	"github.com/tunnelrelay/tunnel/pkg/dbproxy"
)

// The Server is what the admin endpoint manages.
var _ admin.API = (*Server)(nil)

var (
	invalid  = admin.Invalid
	conflict = admin.Conflict
)

// AddAgent registers an agent by its key's fingerprint.
func (s *Server) AddAgent(ctx context.Context, req admin.AddAgentRequest) (*admin.Agent, error) {
	if err := auth.CheckName("agent", req.Name); err != nil {
		return nil, invalid(err)
	}
	if !auth.ValidFingerprint(req.Fingerprint) {
		return nil, invalid(fmt.Errorf("agent %q: %q is not a key fingerprint", req.Name, req.Fingerprint))
	}
	if err := s.store.AddAgent(ctx, store.Agent{Name: req.Name, Fingerprint: req.Fingerprint}); err != nil {
		return nil, err
	}
	a, err := s.store.Agent(ctx, req.Name)
	if err != nil {
		return nil, err
	}
	s.log.Info("agent added", logging.KeyAgent, req.Name, "fingerprint", req.Fingerprint)
	out := s.agentInfo(a)
	return &out, nil
}

// RemoveAgent unregisters an agent and drops its live connection.
func (s *Server) RemoveAgent(ctx context.Context, name string) error {
	if err := s.store.RemoveAgent(ctx, name); err != nil {
		return err
	}
	s.forgetRestart(name)
	s.log.Info("agent removed", logging.KeyAgent, name)
	for _, ac := range s.agentConns(name) {
		ac.kick(proto.RefuseUnknownAgent, fmt.Sprintf("agent %q was removed from this server", name))
	}
	return nil
}

// SetAgentDisabled disables or enables an agent; disabling drops its live
// connection.
func (s *Server) SetAgentDisabled(ctx context.Context, name string, disabled bool) error {
	if err := s.store.SetAgentDisabled(ctx, name, disabled); err != nil {
		return err
	}
	s.forgetRestart(name)
	if !disabled {
		s.log.Info("agent enabled", logging.KeyAgent, name)
		return nil
	}
	s.log.Info("agent disabled", logging.KeyAgent, name)
	for _, ac := range s.agentConns(name) {
		ac.kick(proto.RefuseAgentDisabled, fmt.Sprintf("agent %q was disabled on this server", name))
	}
	return nil
}

// Agents lists the registered agents with their connections.
func (s *Server) Agents(ctx context.Context) ([]admin.Agent, error) {
	agents, err := s.store.Agents(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]admin.Agent, 0, len(agents))
	for _, a := range agents {
		out = append(out, s.agentInfo(a))
	}
	return out, nil
}

func (s *Server) agentInfo(a store.Agent) admin.Agent {
	info := admin.Agent{Name: a.Name, Fingerprint: a.Fingerprint, Waiting: a.Fingerprint == "",
		PendingFingerprint: a.PendingFingerprint, Disabled: a.Disabled, Created: a.CreatedAt}
	if ac := s.liveAgent(a.Name); ac != nil {
		since := ac.since.UTC()
		info.Online = true
		info.Since = &since
		info.Remote = ac.remote
		info.Transport = ac.transport
		info.Fallback = ac.fallback
		info.Version = ac.version
		info.Targets = ac.targetNames()
		info.Sessions = int(ac.sessions.Load())
		info.RTTMillis = float64(ac.rtt.Load()) / float64(time.Millisecond)
	}
	return info
}

// AddRoute adds a route; its listener is open when AddRoute returns.
func (s *Server) AddRoute(ctx context.Context, req admin.AddRouteRequest) (*admin.Route, error) {
	if err := validateRoute(req); err != nil {
		return nil, invalid(err)
	}
	s.routeMu.Lock()
	defer s.routeMu.Unlock()
	if _, err := s.store.Agent(ctx, req.Agent); err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return nil, invalid(fmt.Errorf("route %q: unknown agent %q (see `tunnel-server agent list`)", req.Name, req.Agent))
		}
		return nil, err
	}
	if _, err := s.store.Route(ctx, req.Name); err == nil {
		return nil, fmt.Errorf("route %q: %w", req.Name, store.ErrExists)
	}
	// Stored as CIDRs, single addresses included.
	allow, _ := dbproxy.ParseAllow(req.Allow)
	req.Allow = req.Allow[:0]
	for _, p := range allow {
		req.Allow = append(req.Allow, p.String())
	}
	if req.Protocol == "" {
		req.Protocol = dbproxy.ProtocolTCP
	}
	r, err := s.addRoute(ctx, store.Route{
		Name:        req.Name,
		Agent:       req.Agent,
		Target:      req.Target,
		Listen:      req.Listen,
		Protocol:    req.Protocol,
		Allow:       req.Allow,
		MaxSessions: req.MaxSessions,
	}, req.Default)
	if err != nil {
		return nil, err
	}
	out := s.routeInfo(r, byteCount{})
	return &out, nil
}

func validateRoute(req admin.AddRouteRequest) error {
	if err := auth.CheckName("route", req.Name); err != nil {
		return err
	}
	if err := auth.CheckName("target", req.Target); err != nil {
		return fmt.Errorf("route %q: %w", req.Name, err)
	}
	host, port, err := net.SplitHostPort(req.Listen)
	if err != nil {
		return fmt.Errorf("route %q: listen address %q: %v", req.Name, req.Listen, err)
	}
	if p, err := strconv.Atoi(port); err != nil || p < 0 || p > 65535 {
		return fmt.Errorf("route %q: listen address %q: bad port", req.Name, req.Listen)
	}
	if host != "" {
		if _, err := netip.ParseAddr(host); err != nil {
			return fmt.Errorf("route %q: listen address %q: the host must be an IP address", req.Name, req.Listen)
		}
	}
	switch req.Protocol {
	case "", dbproxy.ProtocolTCP, dbproxy.ProtocolMySQL:
		if req.Default != nil && !*req.Default {
			return fmt.Errorf("route %q: only postgres routes can share an address, so a %s route is always its address's default",
				req.Name, cmp.Or(req.Protocol, dbproxy.ProtocolTCP))
		}
	case dbproxy.ProtocolPostgres:
	default:
		return fmt.Errorf("route %q: protocol %q is not supported (use %s, %s or %s)", req.Name, req.Protocol,
			dbproxy.ProtocolTCP, dbproxy.ProtocolPostgres, dbproxy.ProtocolMySQL)
	}
	if req.MaxSessions < 0 {
		return fmt.Errorf("route %q: max sessions must not be negative", req.Name)
	}
	if _, err := dbproxy.ParseAllow(req.Allow); err != nil {
		return fmt.Errorf("route %q: %w", req.Name, err)
	}
	return nil
}

// RemoveRoute removes a route and closes its listener. Sessions already
// running through it go on until they end.
func (s *Server) RemoveRoute(ctx context.Context, name string) error {
	s.routeMu.Lock()
	defer s.routeMu.Unlock()
	if err := s.store.RemoveRoute(ctx, name); err != nil {
		return err
	}
	s.mu.Lock()
	r := s.routes[name]
	s.mu.Unlock()
	if r != nil {
		s.removeRoute(r)
	}
	s.log.Info("route removed", logging.KeyRoute, name)
	return nil
}

// Routes lists the routes with their listeners' state.
func (s *Server) Routes(ctx context.Context) ([]admin.Route, error) {
	stored, err := s.store.Routes(ctx)
	if err != nil {
		return nil, err
	}
	_, bytes := s.countBytes()
	out := make([]admin.Route, 0, len(stored))
	for _, sr := range stored {
		s.mu.Lock()
		r := s.routes[sr.Name]
		s.mu.Unlock()
		if r == nil {
			// Added by another process sharing the store; not served here.
			out = append(out, admin.Route{Name: sr.Name, Agent: sr.Agent, Target: sr.Target, Listen: sr.Listen,
				Protocol: sr.Protocol, Default: sr.Default, Allow: sr.Allow, MaxSessions: sr.MaxSessions, Created: sr.CreatedAt,
				Error: "not served by this server process"})
			continue
		}
		out = append(out, s.routeInfo(r, bytes[r.cfg.Name]))
	}
	return out, nil
}

// routeInfo describes r, which has moved bytes (live sessions included).
func (s *Server) routeInfo(r *route, bytes byteCount) admin.Route {
	listening, why := r.state()
	return admin.Route{
		Name:        r.cfg.Name,
		Agent:       r.cfg.Agent,
		Target:      r.cfg.Target,
		Listen:      r.cfg.Listen,
		Protocol:    r.cfg.Protocol,
		Default:     r.cfg.Default,
		Allow:       r.cfg.Allow,
		MaxSessions: r.cfg.MaxSessions,
		Created:     r.cfg.CreatedAt,
		Listening:   listening,
		Error:       why,
		Sessions:    int(r.sessions.Load()),
		BytesUp:     bytes.up,
		BytesDown:   bytes.down,
	}
}

// Status returns agents, routes and live sessions.
func (s *Server) Status(ctx context.Context) (*admin.Status, error) {
	agents, err := s.Agents(ctx)
	if err != nil {
		return nil, err
	}
	routes, err := s.Routes(ctx)
	if err != nil {
		return nil, err
	}
	sessions, err := s.Sessions(ctx)
	if err != nil {
		return nil, err
	}
	return &admin.Status{
		Version:  s.opt.Version,
		Started:  s.started.UTC(),
		Listen:   s.ln.Addr().String(),
		Agents:   agents,
		Routes:   routes,
		Sessions: sessions,
	}, nil
}

// Sessions lists the live client sessions, oldest first.
func (s *Server) Sessions(ctx context.Context) ([]admin.Session, error) {
	s.mu.Lock()
	out := make([]admin.Session, 0, len(s.sessions))
	for _, ss := range s.sessions {
		out = append(out, admin.Session{
			ID:        ss.idString(),
			Route:     ss.route.cfg.Name,
			Agent:     ss.agent.name,
			Target:    ss.route.cfg.Target,
			Client:    ss.client,
			Started:   ss.started.UTC(),
			BytesUp:   ss.counters.AToB.Load(),
			BytesDown: ss.counters.BToA.Load(),
		})
	}
	s.mu.Unlock()
	sort.Slice(out, func(i, j int) bool { return out[i].Started.Before(out[j].Started) })
	return out, nil
}

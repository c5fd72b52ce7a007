package server

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tunnelrelay/tunnel/internal/logging"
	"github.com/tunnelrelay/tunnel/internal/store"
	"github.com/tunnelrelay/tunnel/pkg/dbproxy"
)

// route is a registered route.
type route struct {
	// Static after construction.
	cfg   store.Route
	allow []netip.Prefix
	port  *port // nil when err is set
	err   error // why the route cannot be served at all

	sessions  atomic.Int64
	opened    atomic.Uint64 // sessions started, for metrics
	bytesUp   atomic.Int64  // of ended sessions; updated under Server.mu
	bytesDown atomic.Int64
}

// port is a listen address and the routes served on it: one route, or
// several PostgreSQL routes.
type port struct {
	// Static after construction.
	addr string // as stored, the key of Server.ports
	ln   *dbproxy.Listener
	stop chan struct{} // closed when the port is stopped

	// Guarded by Server.routeMu once the server is open.
	routes map[string]*route

	mu        sync.Mutex
	listening bool
	listenErr error // why it is not listening
	stopped   bool
	retryWG   sync.WaitGroup
}

// newPort returns the port for addr, not yet listening.
func (s *Server) newPort(addr, protocol string) *port {
	return &port{
		addr: addr,
		ln: &dbproxy.Listener{
			Addr:             addr,
			Protocol:         protocol,
			Upstream:         s,
			Logger:           logging.Module(s.opt.Logger, "dbproxy"),
			HandshakeTimeout: s.opt.HandshakeTimeout,
			TLS:              s.opt.PostgresTLS,
			Domain:           s.opt.PostgresDomain,
			Cancels:          &s.cancels,
		},
		stop:   make(chan struct{}),
		routes: map[string]*route{},
	}
}

// publish gives the port's listener its current routes.
func (p *port) publish() {
	rs := make([]dbproxy.Route, 0, len(p.routes))
	for _, r := range p.routes {
		rs = append(rs, dbproxy.Route{Name: r.cfg.Name, Allow: r.allow, Default: r.cfg.Default})
	}
	p.ln.SetRoutes(rs)
}

// startRoute registers a stored route and opens its port's listener if it
// is the first route there, retrying in the background when the address
// cannot be bound.
func (s *Server) startRoute(cfg store.Route) {
	allow, err := dbproxy.ParseAllow(cfg.Allow)
	if err != nil {
		// Kept in the table so status shows it, but never served: an
		// allowlist that cannot be read must not mean "everyone".
		s.log.Error("route not served", logging.KeyRoute, cfg.Name, logging.KeyErr, err)
		s.mu.Lock()
		s.routes[cfg.Name] = &route{cfg: cfg, err: err}
		s.mu.Unlock()
		return
	}
	s.mu.Lock()
	p := s.ports[cfg.Listen]
	isNew := p == nil
	if isNew {
		p = s.newPort(cfg.Listen, cfg.Protocol)
		s.ports[cfg.Listen] = p
	}
	r := &route{cfg: cfg, allow: allow, port: p}
	s.routes[cfg.Name] = r
	s.mu.Unlock()
	p.routes[cfg.Name] = r
	p.publish()
	if !isNew {
		return
	}
	if err := p.ln.Open(s.ctx); err != nil {
		p.setListenErr(err)
		s.log.Error("route listener failed; retrying", logging.KeyRoute, cfg.Name, "listen", cfg.Listen,
			logging.KeyErr, err, "retry_every", s.opt.RouteRetryInterval)
		p.retryWG.Add(1)
		go s.retryListen(p)
		return
	}
	p.mu.Lock()
	p.listening = true
	p.mu.Unlock()
	s.log.Info("route listening", logging.KeyRoute, cfg.Name, "listen", p.ln.BoundAddr().String(),
		logging.KeyAgent, cfg.Agent, logging.KeyTarget, cfg.Target, "protocol", cfg.Protocol)
}

// state returns whether the route is served, and why not.
func (r *route) state() (bool, string) {
	if r.err != nil {
		return false, r.err.Error()
	}
	return r.port.state()
}

func (p *port) setListenErr(err error) {
	p.mu.Lock()
	p.listenErr = err
	p.mu.Unlock()
}

func (s *Server) retryListen(p *port) {
	defer p.retryWG.Done()
	t := time.NewTicker(s.opt.RouteRetryInterval)
	defer t.Stop()
	for {
		select {
		case <-t.C:
		case <-p.stop:
			return
		case <-s.ctx.Done():
			return
		}
		p.mu.Lock()
		if p.stopped {
			p.mu.Unlock()
			return
		}
		// Under the lock, so stopListening cannot miss a listener that
		// just opened.
		err := p.ln.Open(s.ctx)
		if err != nil {
			p.listenErr = err
			p.mu.Unlock()
			continue
		}
		p.listening, p.listenErr = true, nil
		p.mu.Unlock()
		s.log.Info("route listening", "listen", p.ln.BoundAddr().String())
		return
	}
}

// stopListening closes the port's listener; its sessions go on.
func (p *port) stopListening() {
	p.mu.Lock()
	if p.stopped {
		p.mu.Unlock()
		return
	}
	p.stopped = true
	close(p.stop)
	listening := p.listening
	p.mu.Unlock()
	if listening {
		p.ln.Close()
	}
	p.retryWG.Wait()
}

// active is the number of the port's client connections still served.
func (p *port) active() int { return p.ln.Active() }

// wait waits for the port's connections to end.
func (p *port) wait() { p.ln.Wait() }

// state returns whether the port listens, and why not.
func (p *port) state() (bool, string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	switch {
	case p.listening && !p.stopped:
		return true, ""
	case p.listenErr != nil:
		return false, p.listenErr.Error()
	}
	return false, ""
}

// addRoute validates, binds (unless the address is already served),
// stores and serves a new route, in that order, so a failure at any step
// leaves nothing behind. isDefault nil means: the default if it is the
// address's first route. The caller holds routeMu.
func (s *Server) addRoute(ctx context.Context, cfg store.Route, isDefault *bool) (*route, error) {
	allow, err := dbproxy.ParseAllow(cfg.Allow)
	if err != nil {
		return nil, invalid(err)
	}
	s.mu.Lock()
	p := s.ports[cfg.Listen]
	s.mu.Unlock()
	isNew := p == nil
	cfg.Default = isNew
	if isDefault != nil {
		cfg.Default = *isDefault
	}
	if isNew {
		p = s.newPort(cfg.Listen, cfg.Protocol)
		if err := p.ln.Open(s.ctx); err != nil {
			return nil, conflict(fmt.Errorf("route %q: cannot listen on %s: %w", cfg.Name, cfg.Listen, err))
		}
		if _, portNum, _ := net.SplitHostPort(cfg.Listen); portNum == "0" {
			// The system chose the port: keep the route on it.
			cfg.Listen = p.ln.BoundAddr().String()
			p.addr = cfg.Listen
		}
		p.listening = true
	}
	if err := s.store.AddRoute(ctx, cfg); err != nil {
		if isNew {
			p.stopListening()
		}
		return nil, err
	}
	if stored, err := s.store.Route(ctx, cfg.Name); err == nil {
		cfg = stored
	}
	r := &route{cfg: cfg, allow: allow, port: p}
	s.mu.Lock()
	s.routes[cfg.Name] = r
	if isNew {
		s.ports[p.addr] = p
	}
	s.mu.Unlock()
	p.routes[cfg.Name] = r
	p.publish()
	// cfg.Listen, not the listener's address: a shared port may still be
	// waiting to bind.
	s.log.Info("route added", logging.KeyRoute, cfg.Name, "listen", cfg.Listen,
		logging.KeyAgent, cfg.Agent, logging.KeyTarget, cfg.Target, "protocol", cfg.Protocol, "default", cfg.Default)
	return r, nil
}

// removeRoute stops serving r; its port stops listening once it serves no
// route. Sessions already running go on. The caller holds routeMu.
func (s *Server) removeRoute(r *route) {
	p := r.port
	if p == nil {
		s.mu.Lock()
		delete(s.routes, r.cfg.Name)
		s.mu.Unlock()
		return
	}
	delete(p.routes, r.cfg.Name)
	p.publish()
	s.mu.Lock()
	delete(s.routes, r.cfg.Name)
	empty := len(p.routes) == 0
	if empty && s.ports[p.addr] == p {
		delete(s.ports, p.addr)
		// Kept until its connections end, for Close to wait for; those
		// that have none left are forgotten now.
		kept := s.retired[:0]
		for _, old := range s.retired {
			if old.active() > 0 {
				kept = append(kept, old)
			}
		}
		s.retired = append(kept, p)
	}
	s.mu.Unlock()
	if empty {
		p.stopListening()
	}
}

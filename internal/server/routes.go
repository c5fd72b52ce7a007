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

// route is a registered route and its listener.
type route struct {
	// Static after construction.
	cfg   store.Route
	allow []netip.Prefix
	stop  chan struct{} // closed when the route is removed or the server closes

	sessions  atomic.Int64
	bytesUp   atomic.Int64
	bytesDown atomic.Int64

	mu        sync.Mutex
	ln        *dbproxy.Listener // nil while not listening
	listenErr error             // why it is not listening
	stopped   bool
	retryWG   sync.WaitGroup
}

// newListener returns the route's listener, not yet open.
func (s *Server) newListener(r *route) *dbproxy.Listener {
	return &dbproxy.Listener{
		Route:    r.cfg.Name,
		Addr:     r.cfg.Listen,
		Protocol: r.cfg.Protocol,
		Allow:    r.allow,
		Upstream: s,
		Logger:   logging.Module(s.opt.Logger, "dbproxy"),
	}
}

// startRoute registers a stored route and opens its listener, retrying in
// the background when the address cannot be bound.
func (s *Server) startRoute(cfg store.Route) {
	allow, err := dbproxy.ParseAllow(cfg.Allow)
	r := &route{cfg: cfg, allow: allow, stop: make(chan struct{})}
	s.mu.Lock()
	s.routes[cfg.Name] = r
	s.mu.Unlock()
	if err != nil {
		r.listenErr = err
		s.log.Error("route not served", logging.KeyRoute, cfg.Name, logging.KeyErr, err)
		return
	}
	ln := s.newListener(r)
	if err := ln.Open(s.ctx); err != nil {
		r.listenErr = err
		s.log.Error("route listener failed; retrying", logging.KeyRoute, cfg.Name, "listen", cfg.Listen,
			logging.KeyErr, err, "retry_every", s.opt.RouteRetryInterval)
		r.retryWG.Add(1)
		go s.retryListen(r)
		return
	}
	r.ln = ln
	s.log.Info("route listening", logging.KeyRoute, cfg.Name, "listen", ln.BoundAddr().String(),
		logging.KeyAgent, cfg.Agent, logging.KeyTarget, cfg.Target)
}

func (s *Server) retryListen(r *route) {
	defer r.retryWG.Done()
	t := time.NewTicker(s.opt.RouteRetryInterval)
	defer t.Stop()
	for {
		select {
		case <-t.C:
		case <-r.stop:
			return
		case <-s.ctx.Done():
			return
		}
		ln := s.newListener(r)
		err := ln.Open(s.ctx)
		r.mu.Lock()
		if r.stopped {
			r.mu.Unlock()
			if err == nil {
				ln.Close()
			}
			return
		}
		if err != nil {
			r.listenErr = err
			r.mu.Unlock()
			continue
		}
		r.ln, r.listenErr = ln, nil
		r.mu.Unlock()
		s.log.Info("route listening", logging.KeyRoute, r.cfg.Name, "listen", ln.BoundAddr().String())
		return
	}
}

// stopListening closes the route's listener; its sessions go on.
func (r *route) stopListening() {
	r.mu.Lock()
	if r.stopped {
		r.mu.Unlock()
		return
	}
	r.stopped = true
	close(r.stop)
	ln := r.ln
	r.mu.Unlock()
	if ln != nil {
		ln.Close()
	}
	r.retryWG.Wait()
}

// active is the number of the route's client connections still served.
func (r *route) active() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.ln == nil {
		return 0
	}
	return r.ln.Active()
}

// wait waits for the route's sessions to end.
func (r *route) wait() {
	r.mu.Lock()
	ln := r.ln
	r.mu.Unlock()
	if ln != nil {
		ln.Wait()
	}
}

// state returns whether the route listens, and why not.
func (r *route) state() (bool, string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	switch {
	case r.ln != nil && !r.stopped:
		return true, ""
	case r.listenErr != nil:
		return false, r.listenErr.Error()
	}
	return false, ""
}

// addRoute validates, binds, stores and serves a new route, in that order,
// so a failure at any step leaves nothing behind.
func (s *Server) addRoute(ctx context.Context, cfg store.Route) (*route, error) {
	allow, err := dbproxy.ParseAllow(cfg.Allow)
	if err != nil {
		return nil, invalid(err)
	}
	r := &route{cfg: cfg, allow: allow, stop: make(chan struct{})}
	ln := s.newListener(r)
	if err := ln.Open(s.ctx); err != nil {
		return nil, conflict(fmt.Errorf("route %q: cannot listen on %s: %w", cfg.Name, cfg.Listen, err))
	}
	if _, port, _ := net.SplitHostPort(cfg.Listen); port == "0" {
		// The system chose the port: keep the route on it.
		cfg.Listen = ln.BoundAddr().String()
	}
	if err := s.store.AddRoute(ctx, cfg); err != nil {
		ln.Close()
		return nil, err
	}
	stored, err := s.store.Route(ctx, cfg.Name)
	if err == nil {
		r.cfg = stored
	}
	r.ln = ln
	s.mu.Lock()
	s.routes[cfg.Name] = r
	s.mu.Unlock()
	s.log.Info("route added", logging.KeyRoute, cfg.Name, "listen", ln.BoundAddr().String(),
		logging.KeyAgent, cfg.Agent, logging.KeyTarget, cfg.Target)
	return r, nil
}

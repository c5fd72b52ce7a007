// Package dbproxy is the client-facing front door of tunnel-server: the
// listeners that database clients connect to, one per route.
//
// A Listener accepts connections, refuses clients outside its allowed CIDRs
// before reading a byte, asks its Upstream for a backend (a stream through
// the tunnel to the route's target) and hands both to the backend's Relay.
// It does not know how backends are reached; the server engine implements
// Upstream.
//
// Routes of protocol "tcp" are relayed as raw bytes. Protocol-aware routes
// (PostgreSQL, MySQL), which can tell a client in its own protocol why it
// cannot be served, are built on the same Listener.
package dbproxy

import (
	"context"
	"fmt"
	"net"
	"net/netip"
)

// Protocols a route can have.
const (
	ProtocolTCP = "tcp"
)

// Request describes a client connection that wants a route's target.
type Request struct {
	Route  string
	Client netip.AddrPort
}

// Backend is an open connection to a route's target.
type Backend interface {
	net.Conn
	// Relay copies bytes between client and the backend until both
	// directions have ended or ctx is done, then closes both.
	Relay(ctx context.Context, client net.Conn)
}

// Upstream opens backends for routes.
type Upstream interface {
	// Dial returns a backend for req, or an error; an *RouteError says why in
	// terms a client can be told.
	Dial(ctx context.Context, req *Request) (Backend, error)
}

// ErrorCode classifies why a route could not be served.
type ErrorCode int

const (
	// ErrInternal: anything not listed below.
	ErrInternal ErrorCode = iota
	// ErrUnknownRoute: no route of that name.
	ErrUnknownRoute
	// ErrAgentOffline: the route's agent is not connected.
	ErrAgentOffline
	// ErrUnknownTarget: the agent does not declare the route's target.
	ErrUnknownTarget
	// ErrDialFailed: the agent could not connect to the target.
	ErrDialFailed
	// ErrLimitReached: a session limit of the route or the agent is reached.
	ErrLimitReached
	// ErrForbidden: the client address is not allowed.
	ErrForbidden
)

func (c ErrorCode) String() string {
	switch c {
	case ErrUnknownRoute:
		return "unknown route"
	case ErrAgentOffline:
		return "agent offline"
	case ErrUnknownTarget:
		return "unknown target"
	case ErrDialFailed:
		return "target unreachable"
	case ErrLimitReached:
		return "session limit reached"
	case ErrForbidden:
		return "client address not allowed"
	}
	return "internal error"
}

// RouteError is a failure to serve a route that the client should hear about.
type RouteError struct {
	Code   ErrorCode
	Agent  string // the route's agent, when known
	Target string // the route's target, when known
	Reason string // human-readable detail, safe to show a client
}

func (e *RouteError) Error() string {
	if e.Reason == "" {
		return e.Code.String()
	}
	return e.Code.String() + ": " + e.Reason
}

// ParseAllow parses CIDRs (or single addresses) for Listener.Allow.
func ParseAllow(cidrs []string) ([]netip.Prefix, error) {
	out := make([]netip.Prefix, 0, len(cidrs))
	for _, s := range cidrs {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			a, aerr := netip.ParseAddr(s)
			if aerr != nil {
				return nil, fmt.Errorf("allow %q: not a CIDR or an IP address", s)
			}
			p = netip.PrefixFrom(a, a.BitLen())
		}
		out = append(out, p.Masked())
	}
	return out, nil
}

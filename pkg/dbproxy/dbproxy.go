// Package dbproxy is the client-facing front door of tunnel-server: the
// listeners that database clients connect to, one per route.
//
// A Listener accepts connections on one address for one route, or for
// several PostgreSQL routes, decides which route a client wants and whether
// it may have it, asks its Upstream for a backend (a stream through the
// tunnel to the route's target) and hands both to the backend's Relay. It
// does not know how backends are reached; the server engine implements
// Upstream.
//
// Routes of protocol "tcp" are relayed as raw bytes, and a client that is
// refused is reset. "postgres" and "mysql" routes tell a refused client why,
// in its own protocol, so the database client prints it. A PostgreSQL
// listener also terminates the client's TLS, picks the route from the TLS
// server name or a startup parameter, and routes cancel requests (see
// CancelKeys). After the startup phase every protocol is relayed as raw
// bytes.
package dbproxy

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
)

// Protocols a route can have.
const (
	ProtocolTCP      = "tcp"
	ProtocolPostgres = "postgres"
	ProtocolMySQL    = "mysql"
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
	// Sibling opens another connection to the same target the same way
	// (for a PostgreSQL cancel request), outside the route's session
	// limits. It fails once the backend's way to the target is gone.
	Sibling(ctx context.Context) (net.Conn, error)
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

// messageFor says to a client of route why it cannot be served: the reason,
// led by the route's name unless the reason already names it.
func (e *RouteError) messageFor(route string) string {
	msg := e.Reason
	if msg == "" {
		msg = e.Code.String()
	}
	if route != "" && !strings.Contains(msg, "route "+strconv.Quote(route)) {
		msg = fmt.Sprintf("route %q: %s", route, msg)
	}
	return msg
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

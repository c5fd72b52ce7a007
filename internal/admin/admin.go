// Package admin is tunnel-server's management API: JSON over HTTP on a
// loopback address or a unix socket, behind the admin token. The server
// engine implements API; Handler serves it, and the status page; Client is
// what the tunnel-server management commands (agent, route, status) use.
// docs/API.md documents every endpoint for people, and a test keeps the two
// in step: an endpoint added here must be documented there.
//
// Endpoints, all under /api/v1, need the token as a bearer header:
//
//	GET    /status                  Status
//	GET    /agents                  []Agent
//	POST   /agents                  AddAgentRequest → Agent
//	DELETE /agents/{name}
//	POST   /agents/{name}/disable
//	POST   /agents/{name}/enable
//	POST   /agents/{name}/token     EnrollTokenRequest → EnrollToken
//	POST   /agents/{name}/rotate    → RotateKeyResult
//	GET    /routes                  []Route
//	POST   /routes                  AddRouteRequest → Route
//	DELETE /routes/{name}
//	GET    /sessions                []Session
//	GET    /throughput              Throughput
//
// POST /agents/{name}/token issues a one-time enrollment token, and
// registers the agent without a key when it is new; POST
// /agents/{name}/rotate asks the connected agent for a new key and waits
// until it is in use. docs/API.md says more.
//
// Errors are {"error": "..."} with status 400 (invalid), 401 (no or wrong
// token), 404 (not found), 405 (wrong method), 409 (exists, in use, address
// in use, not allowed in the current state), 504 (timed out) or 500.
//
// The status page is served at / without a token: its files (embedded,
// nothing loaded from elsewhere) carry no data, and it reads the API like
// any client. POST /ui/login turns the token into the cookie tunnel_admin
// (an HMAC of a fixed label keyed by the token, never the token), which the
// API accepts on GET and HEAD only, so a browser can read but only the
// bearer token can change anything. It is not for people on other hosts:
// the listener is loopback or a unix socket, reached over SSH.
package admin

import (
	"context"
	"errors"
	"log/slog"
	"time"
)

// Errors an API implementation wraps so Handler can choose the status code.
// The store's ErrNotFound, ErrExists and ErrInUse are recognised too.
var (
	// ErrInvalid: the request is malformed or names something invalid.
	ErrInvalid = errors.New("invalid request")
	// ErrConflict: the request clashes with the current state.
	ErrConflict = errors.New("conflict")
	// ErrTimeout: the request's work did not finish in time.
	ErrTimeout = errors.New("timed out")
)

// Invalid marks err as an invalid request (400) without changing its text.
func Invalid(err error) error { return &kindError{kind: ErrInvalid, err: err} }

// Conflict marks err as a conflict with the current state (409) without
// changing its text.
func Conflict(err error) error { return &kindError{kind: ErrConflict, err: err} }

// Timeout marks err as work that did not finish in time (504) without
// changing its text.
func Timeout(err error) error { return &kindError{kind: ErrTimeout, err: err} }

type kindError struct{ kind, err error }

func (e *kindError) Error() string   { return e.err.Error() }
func (e *kindError) Unwrap() []error { return []error{e.kind, e.err} }

// API is what the server engine offers to the admin endpoint.
type API interface {
	Status(ctx context.Context) (*Status, error)
	Agents(ctx context.Context) ([]Agent, error)
	AddAgent(ctx context.Context, req AddAgentRequest) (*Agent, error)
	RemoveAgent(ctx context.Context, name string) error
	SetAgentDisabled(ctx context.Context, name string, disabled bool) error
	Routes(ctx context.Context) ([]Route, error)
	AddRoute(ctx context.Context, req AddRouteRequest) (*Route, error)
	RemoveRoute(ctx context.Context, name string) error
	IssueEnrollToken(ctx context.Context, name string, req EnrollTokenRequest) (*EnrollToken, error)
	RotateAgentKey(ctx context.Context, name string) (*RotateKeyResult, error)
	Sessions(ctx context.Context) ([]Session, error)
	Throughput(ctx context.Context) (*Throughput, error)
}

// Agent is a registered agent and, when it is connected, its connection.
type Agent struct {
	Name        string `json:"name"`
	Fingerprint string `json:"fingerprint"` // empty while waiting for enrollment
	// Waiting is set for an agent registered with an enrollment token that
	// has not enrolled yet: it has no key, and no connection is accepted.
	Waiting bool `json:"waiting_for_enrollment,omitempty"`
	// PendingFingerprint is the next key during a key rotation.
	PendingFingerprint string    `json:"pending_fingerprint,omitempty"`
	Disabled           bool      `json:"disabled"`
	Created            time.Time `json:"created"`

	Online    bool       `json:"online"`
	Since     *time.Time `json:"since,omitempty"`     // connected since
	Remote    string     `json:"remote,omitempty"`    // address it connects from
	Transport string     `json:"transport,omitempty"` // "tls" or "quic"
	Fallback  string     `json:"fallback,omitempty"`  // why it is on TLS although it prefers QUIC
	Version   string     `json:"version,omitempty"`   // agent release
	Targets   []string   `json:"targets,omitempty"`   // declared target names
	Sessions  int        `json:"sessions"`            // open sessions
	RTTMillis float64    `json:"rtt_ms,omitempty"`    // last heartbeat round trip
}

// Route is a registered route and its listener's state.
type Route struct {
	Name        string    `json:"name"`
	Agent       string    `json:"agent"`
	Target      string    `json:"target"`
	Listen      string    `json:"listen"`
	Protocol    string    `json:"protocol"`
	Default     bool      `json:"default"` // the route of clients that name none on its address
	Allow       []string  `json:"allow,omitempty"`
	MaxSessions int       `json:"max_sessions,omitempty"`
	Created     time.Time `json:"created"`

	Listening bool   `json:"listening"`
	Error     string `json:"error,omitempty"` // why it is not listening
	Sessions  int    `json:"sessions"`        // open sessions
	BytesUp   int64  `json:"bytes_up"`        // client to target since the server started, live sessions included
	BytesDown int64  `json:"bytes_down"`      // target to client since the server started, live sessions included
}

// Session is a live client session.
type Session struct {
	ID        string    `json:"id"`
	Route     string    `json:"route"`
	Agent     string    `json:"agent"`
	Target    string    `json:"target"`
	Client    string    `json:"client"`
	Started   time.Time `json:"started"`
	BytesUp   int64     `json:"bytes_up"`
	BytesDown int64     `json:"bytes_down"`
}

// Status is the whole picture.
type Status struct {
	Version  string    `json:"version"`
	Started  time.Time `json:"started"`
	Listen   string    `json:"listen"` // where agents connect
	Agents   []Agent   `json:"agents"`
	Routes   []Route   `json:"routes"`
	Sessions []Session `json:"sessions"`
}

// Throughput is the bytes the server's routes moved over the last minutes,
// one sample per interval, oldest first. A new server has no samples yet;
// the first comes one interval after it starts.
type Throughput struct {
	IntervalSeconds float64            `json:"interval_seconds"` // time between samples
	WindowSeconds   float64            `json:"window_seconds"`   // how far back samples are kept
	Samples         []ThroughputSample `json:"samples"`
}

// ThroughputSample is what moved in one interval.
type ThroughputSample struct {
	Time      time.Time `json:"time"`    // end of the interval
	Seconds   float64   `json:"seconds"` // its measured length
	BytesUp   int64     `json:"bytes_up"`
	BytesDown int64     `json:"bytes_down"`
	// Routes holds, by route name, the routes that moved bytes in the
	// interval; idle routes are left out.
	Routes map[string]RouteBytes `json:"routes,omitempty"`
}

// RouteBytes is one route's share of a ThroughputSample.
type RouteBytes struct {
	BytesUp   int64 `json:"bytes_up"`
	BytesDown int64 `json:"bytes_down"`
}

// AddAgentRequest registers an agent by the fingerprint of its public key;
// the private key stays with whoever made it.
type AddAgentRequest struct {
	Name        string `json:"name"`
	Fingerprint string `json:"fingerprint"`
}

// EnrollTokenRequest asks for an enrollment token.
type EnrollTokenRequest struct {
	// ExpiresInSeconds is the token's lifetime; 0 means 86400 (24 hours).
	ExpiresInSeconds int64 `json:"expires_in_seconds,omitempty"`
}

// EnrollToken is a new one-time enrollment token. Token is a secret: it is
// shown once, and never logged (LogValue leaves it out).
type EnrollToken struct {
	Agent   string    `json:"agent"`
	Token   string    `json:"token"`
	TokenID string    `json:"token_id"` // the token's public part
	Expires time.Time `json:"expires"`
	// CAFingerprint identifies the CA certificate agents pin, for
	// `tunnel-agent enroll --ca-fingerprint`; empty when the server does not
	// know it.
	CAFingerprint string `json:"ca_fingerprint,omitempty"`
	// Created is set when this request registered the agent.
	Created bool `json:"created"`
}

// LogValue logs t without its secret.
func (t EnrollToken) LogValue() slog.Value {
	return slog.GroupValue(slog.String("agent", t.Agent), slog.String("token_id", t.TokenID),
		slog.Time("expires", t.Expires), slog.String("ca_fingerprint", t.CAFingerprint))
}

// RotateKeyResult is the outcome of a key rotation.
type RotateKeyResult struct {
	Agent          string `json:"agent"`
	OldFingerprint string `json:"old_fingerprint"`
	Fingerprint    string `json:"fingerprint"`
}

// AddRouteRequest adds a route.
type AddRouteRequest struct {
	Name     string `json:"name"`
	Agent    string `json:"agent"`
	Target   string `json:"target"`
	Listen   string `json:"listen"`
	Protocol string `json:"protocol,omitempty"`
	// Default makes the route its address's default; absent means it is
	// the default if it is the first route on its address.
	Default     *bool    `json:"default,omitempty"`
	Allow       []string `json:"allow,omitempty"`
	MaxSessions int      `json:"max_sessions,omitempty"`
}

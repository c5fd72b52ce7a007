// Package admin is tunnel-server's management API: JSON over HTTP on a
// loopback address or a unix socket, behind a bearer token. The server
// engine implements API; Handler serves it; Client is what the
// tunnel-server management commands (agent, route, status) use.
//
// Endpoints, all under /api/v1:
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
//
// POST /agents/{name}/token makes a one-time enrollment token for the agent:
// it registers the agent without a key if there is none of that name, and
// replaces the unused token of one still waiting for enrollment (the old
// token stops working); an agent that has a key already gets 409. The body
// may be empty or {"expires_in_seconds": N}: the token's lifetime, default
// 86400 (24 hours), 60 to 2592000 (30 days). The answer holds the token
// (a secret, shown once: the server keeps only its hash), its expiry, and
// the fingerprint of the CA agents pin ("sha256:" and base64url of the
// SHA-256 of the CA certificate's DER), for `tunnel-agent enroll`.
//
// POST /agents/{name}/rotate asks the connected agent for a new key and
// waits, at most 20 seconds, until the agent has connected with it; the
// answer holds the old and the new fingerprint. 409 when the agent is not
// connected, speaks protocol version 1 or waits for enrollment, or a
// rotation is already under way; 504 when the agent did not finish in
// time (its old key then stays valid).
//
// Errors are {"error": "..."} with status 400 (invalid), 401 (no or wrong
// token), 404 (not found), 409 (exists, in use, address in use, state does
// not allow it), 504 (timed out) or 500.
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
	BytesUp   int64  `json:"bytes_up"`        // client to target, since the server started
	BytesDown int64  `json:"bytes_down"`      // target to client, since the server started
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

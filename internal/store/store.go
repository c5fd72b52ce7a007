// Package store is tunnel-server's registry of agents and routes: who may
// connect and which client endpoints forward to which agent target.
//
// Store is the interface the server engine and the admin API use; SQLite is
// its embedded implementation and Open is the one place where a backend is
// chosen, so a PostgreSQL backend shared by several server replicas can be
// added without touching callers. Every backend must pass the conformance
// suite in package storetest.
//
// The store holds configuration only. It is not for live state (who is
// connected, session counters, bytes moved) and it holds no secrets: an agent
// is known by the fingerprint of its public key, which cannot be used to
// impersonate it, and an enrollment token by the hash of its secret.
package store

import (
	"context"
	"errors"
	"time"
)

// Errors returned by every Store, wrapped with the name of the thing they are
// about (for example `agent "acme": not found`); test for them with errors.Is.
var (
	// ErrNotFound means the named agent or route is not registered.
	ErrNotFound = errors.New("not found")
	// ErrExists means an agent or route with that name is already registered,
	// or another route already listens on the same address.
	ErrExists = errors.New("already exists")
	// ErrInUse means an agent cannot be removed because routes still name it;
	// the message lists those routes.
	ErrInUse = errors.New("in use")
	// ErrInvalid means an agent, route or Config failed validation; the
	// message names the field.
	ErrInvalid = errors.New("invalid")
	// ErrTokenUsed means an enrollment token was used already (or its agent
	// has a key by now).
	ErrTokenUsed = errors.New("enrollment token already used")
	// ErrTokenExpired means an enrollment token expired before it was used.
	ErrTokenExpired = errors.New("enrollment token expired")
)

// Errors returned when opening a database.
var (
	// ErrNewerSchema means the database was written by a newer version of
	// tunnel-server than this one; it is refused rather than misread.
	ErrNewerSchema = errors.New("database schema is newer than this program supports")
	// ErrForeignDatabase means the file is a database of some other program.
	ErrForeignDatabase = errors.New("not a tunnel-server database")
)

// Route protocols. A route added with an empty Protocol gets ProtocolTCP.
const (
	// ProtocolTCP forwards bytes without looking at them.
	ProtocolTCP = "tcp"
	// ProtocolPostgres speaks PostgreSQL to the client. Only PostgreSQL
	// routes may share a listen address.
	ProtocolPostgres = "postgres"
	// ProtocolMySQL speaks MySQL to the client, one address per route.
	ProtocolMySQL = "mysql"
)

// Agent is a registered tunnel agent. Fingerprint is the SHA-256 fingerprint
// of the agent's public key as produced by pkg/auth (an opaque string here,
// e.g. "sha256:...").
//
// An agent registered for enrollment has no Fingerprint until it enrolls;
// PendingFingerprint is its next key during a key rotation.
type Agent struct {
	Name        string
	Fingerprint string
	// PendingFingerprint is the key the agent announced during a rotation,
	// accepted besides Fingerprint until a connection proves it. Empty when
	// no rotation is under way.
	PendingFingerprint string
	Disabled           bool
	// CreatedAt is returned in UTC. A store keeps at least whole seconds.
	CreatedAt time.Time
}

// EnrollToken is a one-time enrollment token of an agent waiting for its
// key. The store never sees the token's secret, only its hash.
type EnrollToken struct {
	// ID is the token's public id, unique in the store.
	ID string
	// Agent is the name of the agent the token enrolls.
	Agent string
	// Hash is the SHA-256 hash of the token's secret, 32 bytes.
	Hash []byte
	// CreatedAt and ExpiresAt are returned in UTC. A store keeps at least
	// whole seconds. CreatedAt is set to now if it is zero.
	CreatedAt, ExpiresAt time.Time
	// UsedAt is when the token was used; zero while it is unused.
	UsedAt time.Time
}

// Route is a client endpoint on the server forwarded to Target of Agent.
type Route struct {
	Name     string
	Agent    string
	Target   string
	Listen   string // host:port the server listens on
	Protocol string // ProtocolTCP, ProtocolPostgres or ProtocolMySQL; empty on insert means "tcp"
	// Default makes the route its listen address's default: the one a
	// client that names no route reaches. At most one route per address is
	// the default.
	Default bool
	// Allow lists the client CIDRs the route accepts; empty means all. It is
	// stored and returned in the given order.
	Allow       []string
	MaxSessions int // 0 means unlimited
	// CreatedAt is returned in UTC. A store keeps at least whole seconds.
	CreatedAt time.Time
}

// Store is the registry of agents and routes. Implementations are safe for
// concurrent use, by several goroutines and by several processes sharing the
// same database. Names are case-sensitive and kept as given; lists are sorted
// by name in byte order.
type Store interface {
	// Agents returns every agent, sorted by name.
	Agents(ctx context.Context) ([]Agent, error)
	// Agent returns the named agent, or an error wrapping ErrNotFound.
	Agent(ctx context.Context, name string) (Agent, error)
	// AddAgent registers a. It sets CreatedAt to now if it is zero. It fails
	// with ErrExists if the name is taken and ErrInvalid if a fails Validate.
	AddAgent(ctx context.Context, a Agent) error
	// SetAgentDisabled disables or re-enables the named agent, or fails with
	// ErrNotFound.
	SetAgentDisabled(ctx context.Context, name string, disabled bool) error
	// RemoveAgent removes the named agent and its enrollment tokens. It
	// fails with ErrNotFound, or with ErrInUse (listing the route names)
	// while routes still name the agent.
	RemoveAgent(ctx context.Context, name string) error

	// IssueEnrollToken stores t, an enrollment token for agent t.Agent, in
	// one step. An agent of that name that does not exist is registered
	// without a key (created reports it, and its CreatedAt is t's); one that
	// waits for enrollment keeps its place and loses its unused tokens, so
	// only t is valid; one that has a key already makes it fail with
	// ErrExists. It fails with ErrInvalid if t fails Validate.
	IssueEnrollToken(ctx context.Context, t EnrollToken) (created bool, err error)
	// EnrollToken returns the token with the given id, or an error wrapping
	// ErrNotFound.
	EnrollToken(ctx context.Context, id string) (EnrollToken, error)
	// UseEnrollToken enrolls the agent of the token with the given id, in
	// one step: match is called with the token's stored hash and must
	// report whether the presented secret hashes to it (in constant time);
	// then the token is marked used at now and fingerprint becomes the
	// agent's key. It returns the agent's name, or fails with ErrNotFound
	// (no such token, or match said no), ErrTokenUsed (used already, or the
	// agent has a key), ErrTokenExpired (ExpiresAt is not after now) or
	// ErrInvalid (empty fingerprint), changing nothing.
	UseEnrollToken(ctx context.Context, id string, match func(hash []byte) bool, fingerprint string, now time.Time) (agent string, err error)

	// SetPendingFingerprint records the named agent's next key, replacing
	// an earlier pending one. It fails with ErrNotFound, and with ErrInvalid
	// when fingerprint is empty or is the current key, or the agent has no
	// key yet (it waits for enrollment).
	SetPendingFingerprint(ctx context.Context, name, fingerprint string) error
	// PromoteFingerprint makes the named agent's pending key its key, if
	// the pending key is fingerprint; the old key is forgotten. It fails
	// with ErrNotFound when there is no such agent or its pending key is not
	// fingerprint (any more).
	PromoteFingerprint(ctx context.Context, name, fingerprint string) error

	// Routes returns every route, sorted by name.
	Routes(ctx context.Context) ([]Route, error)
	// Route returns the named route, or an error wrapping ErrNotFound.
	Route(ctx context.Context, name string) (Route, error)
	// AddRoute registers r in one step: either all of it is stored or none.
	// It fails with ErrExists if the name is taken, if another route has the
	// same Listen address unless both are PostgreSQL routes, or if r is the
	// Default and the address already has one; with ErrNotFound (saying `agent "name"`) if
	// r.Agent is not registered, and with ErrInvalid if r fails Validate. It
	// sets Protocol to "tcp" if empty and CreatedAt to now if zero.
	AddRoute(ctx context.Context, r Route) error
	// RemoveRoute removes the named route, or fails with ErrNotFound.
	RemoveRoute(ctx context.Context, name string) error

	// Close releases the store. Calling it again returns nil.
	Close() error
}

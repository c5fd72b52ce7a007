package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"
)

// This file holds the SQLite queries, one small function each. They take a
// querier so the same function serves a plain read on the pool and a step of
// a transaction. Missing rows come back as errors wrapping ErrNotFound with
// the name; other errors say which query failed.

// querier is what *sql.DB and *sql.Tx have in common.
type querier interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

// sqliteTimeLayout is how timestamps are stored: UTC, fixed width, so text
// order is time order. Microseconds match what PostgreSQL keeps.
const sqliteTimeLayout = "2006-01-02T15:04:05.000000Z"

func formatSQLiteTime(t time.Time) string {
	return t.UTC().Format(sqliteTimeLayout)
}

func parseSQLiteTime(s string) (time.Time, error) {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return time.Time{}, fmt.Errorf("stored time %q: %w", s, err)
	}
	return t.UTC(), nil
}

// rowScanner is what *sql.Row and *sql.Rows have in common.
type rowScanner interface {
	Scan(dest ...any) error
}

const agentColumns = `name, fingerprint, pending_fingerprint, disabled, created_at`

func scanAgent(row rowScanner) (Agent, error) {
	var a Agent
	var created string
	if err := row.Scan(&a.Name, &a.Fingerprint, &a.PendingFingerprint, &a.Disabled, &created); err != nil {
		return Agent{}, err
	}
	var err error
	a.CreatedAt, err = parseSQLiteTime(created)
	return a, err
}

func selectAgents(ctx context.Context, q querier) ([]Agent, error) {
	rows, err := q.QueryContext(ctx, `SELECT `+agentColumns+` FROM agents ORDER BY name`)
	if err != nil {
		return nil, fmt.Errorf("list agents: %w", err)
	}
	defer rows.Close()
	var agents []Agent
	for rows.Next() {
		a, err := scanAgent(rows)
		if err != nil {
			return nil, fmt.Errorf("list agents: %w", err)
		}
		agents = append(agents, a)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list agents: %w", err)
	}
	return agents, nil
}

func selectAgent(ctx context.Context, q querier, name string) (Agent, error) {
	a, err := scanAgent(q.QueryRowContext(ctx, `SELECT `+agentColumns+` FROM agents WHERE name = ?`, name))
	if errors.Is(err, sql.ErrNoRows) {
		return Agent{}, fmt.Errorf("agent %q: %w", name, ErrNotFound)
	}
	if err != nil {
		return Agent{}, fmt.Errorf("get agent %q: %w", name, err)
	}
	return a, nil
}

func agentID(ctx context.Context, q querier, name string) (int64, error) {
	var id int64
	err := q.QueryRowContext(ctx, `SELECT id FROM agents WHERE name = ?`, name).Scan(&id)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, fmt.Errorf("agent %q: %w", name, ErrNotFound)
	}
	if err != nil {
		return 0, fmt.Errorf("look up agent %q: %w", name, err)
	}
	return id, nil
}

func insertAgent(ctx context.Context, q querier, a Agent) error {
	_, err := q.ExecContext(ctx,
		`INSERT INTO agents (name, fingerprint, disabled, created_at) VALUES (?, ?, ?, ?)`,
		a.Name, a.Fingerprint, a.Disabled, formatSQLiteTime(a.CreatedAt))
	if err != nil {
		return fmt.Errorf("insert agent %q: %w", a.Name, err)
	}
	return nil
}

func updateAgentDisabled(ctx context.Context, q querier, name string, disabled bool) error {
	res, err := q.ExecContext(ctx, `UPDATE agents SET disabled = ? WHERE name = ?`, disabled, name)
	if err != nil {
		return fmt.Errorf("update agent %q: %w", name, err)
	}
	return requireOneRow(res, "agent", name)
}

func deleteAgent(ctx context.Context, q querier, id int64, name string) error {
	res, err := q.ExecContext(ctx, `DELETE FROM agents WHERE id = ?`, id)
	if err != nil {
		return fmt.Errorf("delete agent %q: %w", name, err)
	}
	return requireOneRow(res, "agent", name)
}

func routeNamesByAgent(ctx context.Context, q querier, agentID int64) ([]string, error) {
	rows, err := q.QueryContext(ctx, `SELECT name FROM routes WHERE agent_id = ? ORDER BY name`, agentID)
	if err != nil {
		return nil, fmt.Errorf("list routes of agent: %w", err)
	}
	defer rows.Close()
	var names []string
	for rows.Next() {
		var name string
		if err := rows.Scan(&name); err != nil {
			return nil, fmt.Errorf("list routes of agent: %w", err)
		}
		names = append(names, name)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list routes of agent: %w", err)
	}
	return names, nil
}

// A route's allowlist lives in route_allow, one row per entry; the route
// queries join it in, giving one row per entry (or one row with a NULL cidr
// for an empty list), ordered so each route's rows are adjacent and in
// position order.
const (
	routeSelect = `SELECT r.name, a.name, r.target, r.listen, r.protocol, r.is_default, r.max_sessions, r.created_at, w.cidr
FROM routes r
JOIN agents a ON a.id = r.agent_id
LEFT JOIN route_allow w ON w.route_id = r.id`
	routeOrder = ` ORDER BY r.name, w.position`
)

// collectRoutes folds the joined rows of routeSelect into routes.
func collectRoutes(rows *sql.Rows) ([]Route, error) {
	var routes []Route
	for rows.Next() {
		var r Route
		var created string
		var cidr sql.NullString
		if err := rows.Scan(&r.Name, &r.Agent, &r.Target, &r.Listen, &r.Protocol, &r.Default, &r.MaxSessions, &created, &cidr); err != nil {
			return nil, err
		}
		if n := len(routes); n == 0 || routes[n-1].Name != r.Name {
			var err error
			if r.CreatedAt, err = parseSQLiteTime(created); err != nil {
				return nil, err
			}
			routes = append(routes, r)
		}
		if cidr.Valid {
			last := &routes[len(routes)-1]
			last.Allow = append(last.Allow, cidr.String)
		}
	}
	return routes, rows.Err()
}

func selectRoutes(ctx context.Context, q querier) ([]Route, error) {
	rows, err := q.QueryContext(ctx, routeSelect+routeOrder)
	if err != nil {
		return nil, fmt.Errorf("list routes: %w", err)
	}
	defer rows.Close()
	routes, err := collectRoutes(rows)
	if err != nil {
		return nil, fmt.Errorf("list routes: %w", err)
	}
	return routes, nil
}

func selectRoute(ctx context.Context, q querier, name string) (Route, error) {
	rows, err := q.QueryContext(ctx, routeSelect+` WHERE r.name = ?`+routeOrder, name)
	if err != nil {
		return Route{}, fmt.Errorf("get route %q: %w", name, err)
	}
	defer rows.Close()
	routes, err := collectRoutes(rows)
	if err != nil {
		return Route{}, fmt.Errorf("get route %q: %w", name, err)
	}
	if len(routes) == 0 {
		return Route{}, fmt.Errorf("route %q: %w", name, ErrNotFound)
	}
	return routes[0], nil
}

func routeID(ctx context.Context, q querier, name string) (int64, error) {
	var id int64
	err := q.QueryRowContext(ctx, `SELECT id FROM routes WHERE name = ?`, name).Scan(&id)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, fmt.Errorf("route %q: %w", name, ErrNotFound)
	}
	if err != nil {
		return 0, fmt.Errorf("look up route %q: %w", name, err)
	}
	return id, nil
}

// listenShare is a route already on a listen address.
type listenShare struct {
	name, protocol string
	isDefault      bool
}

// routesByListen returns the routes listening on listen, sorted by name.
func routesByListen(ctx context.Context, q querier, listen string) ([]listenShare, error) {
	rows, err := q.QueryContext(ctx, `SELECT name, protocol, is_default FROM routes WHERE listen = ? ORDER BY name`, listen)
	if err != nil {
		return nil, fmt.Errorf("look up listen address %q: %w", listen, err)
	}
	defer rows.Close()
	var out []listenShare
	for rows.Next() {
		var l listenShare
		if err := rows.Scan(&l.name, &l.protocol, &l.isDefault); err != nil {
			return nil, fmt.Errorf("look up listen address %q: %w", listen, err)
		}
		out = append(out, l)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("look up listen address %q: %w", listen, err)
	}
	return out, nil
}

// insertRoute inserts r and its allowlist; run it in a transaction so that a
// failure part way leaves nothing.
func insertRoute(ctx context.Context, q querier, agentID int64, r Route) error {
	res, err := q.ExecContext(ctx,
		`INSERT INTO routes (name, agent_id, target, listen, protocol, is_default, max_sessions, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)`,
		r.Name, agentID, r.Target, r.Listen, r.Protocol, r.Default, r.MaxSessions, formatSQLiteTime(r.CreatedAt))
	if err != nil {
		return fmt.Errorf("insert route %q: %w", r.Name, err)
	}
	id, err := res.LastInsertId()
	if err != nil {
		return fmt.Errorf("insert route %q: %w", r.Name, err)
	}
	for i, cidr := range r.Allow {
		_, err := q.ExecContext(ctx, `INSERT INTO route_allow (route_id, position, cidr) VALUES (?, ?, ?)`, id, i, cidr)
		if err != nil {
			return fmt.Errorf("insert route %q: allow[%d]: %w", r.Name, i, err)
		}
	}
	return nil
}

func deleteRoute(ctx context.Context, q querier, name string) error {
	res, err := q.ExecContext(ctx, `DELETE FROM routes WHERE name = ?`, name)
	if err != nil {
		return fmt.Errorf("delete route %q: %w", name, err)
	}
	return requireOneRow(res, "route", name)
}

// requireOneRow turns "no row changed" into ErrNotFound for kind name.
func requireOneRow(res sql.Result, kind, name string) error {
	n, err := res.RowsAffected()
	if err != nil {
		return fmt.Errorf("%s %q: %w", kind, name, err)
	}
	if n == 0 {
		return fmt.Errorf("%s %q: %w", kind, name, ErrNotFound)
	}
	return nil
}

package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"
)

// This file holds the SQLite side of enrollment and key rotation: the
// Store methods and their queries.

// IssueEnrollToken implements Store. The agent's check, its creation and
// the token's insert share one IMMEDIATE transaction.
func (s *SQLite) IssueEnrollToken(ctx context.Context, t EnrollToken) (created bool, err error) {
	if t.CreatedAt.IsZero() {
		t.CreatedAt = time.Now()
	}
	if err := t.Validate(); err != nil {
		return false, err
	}
	err = s.inTx(ctx, fmt.Sprintf("issue enrollment token for agent %q", t.Agent), func(tx *sql.Tx) error {
		a, err := selectAgent(ctx, tx, t.Agent)
		switch {
		case errors.Is(err, ErrNotFound):
			if err := insertAgent(ctx, tx, Agent{Name: t.Agent, CreatedAt: t.CreatedAt}); err != nil {
				return err
			}
			created = true
		case err != nil:
			return err
		case a.Fingerprint != "":
			return fmt.Errorf("agent %q: %w and has a key; remove it first, or rotate its key", t.Agent, ErrExists)
		}
		id, err := agentID(ctx, tx, t.Agent)
		if err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `DELETE FROM enroll_tokens WHERE agent_id = ? AND used_at IS NULL`, id); err != nil {
			return fmt.Errorf("drop unused tokens of agent %q: %w", t.Agent, err)
		}
		_, err = tx.ExecContext(ctx,
			`INSERT INTO enroll_tokens (token_id, agent_id, secret_hash, created_at, expires_at) VALUES (?, ?, ?, ?, ?)`,
			t.ID, id, t.Hash, formatSQLiteTime(t.CreatedAt), formatSQLiteTime(t.ExpiresAt))
		if err != nil {
			if _, e := selectEnrollToken(ctx, tx, t.ID); e == nil {
				return fmt.Errorf("enrollment token %q: %w", t.ID, ErrExists)
			}
			return fmt.Errorf("insert enrollment token %q: %w", t.ID, err)
		}
		return nil
	})
	if err != nil {
		return false, err
	}
	return created, nil
}

// EnrollToken implements Store.
func (s *SQLite) EnrollToken(ctx context.Context, id string) (EnrollToken, error) {
	return selectEnrollToken(ctx, s.db, id)
}

// UseEnrollToken implements Store.
func (s *SQLite) UseEnrollToken(ctx context.Context, id string, match func(hash []byte) bool, fingerprint string, now time.Time) (string, error) {
	if fingerprint == "" {
		return "", fmt.Errorf("enrollment token %q: fingerprint is empty: %w", id, ErrInvalid)
	}
	var name string
	err := s.inTx(ctx, fmt.Sprintf("use enrollment token %q", id), func(tx *sql.Tx) error {
		t, err := selectEnrollToken(ctx, tx, id)
		if err != nil {
			return err
		}
		// The secret first: whoever does not hold it learns nothing about
		// the token, not even that it was used.
		if match == nil || !match(t.Hash) {
			return fmt.Errorf("enrollment token %q: %w", id, ErrNotFound)
		}
		if !t.UsedAt.IsZero() {
			return fmt.Errorf("enrollment token %q of agent %q was used at %s: %w", id, t.Agent, t.UsedAt.Format(time.RFC3339), ErrTokenUsed)
		}
		if !t.ExpiresAt.After(now) {
			return fmt.Errorf("enrollment token %q of agent %q expired at %s: %w", id, t.Agent, t.ExpiresAt.Format(time.RFC3339), ErrTokenExpired)
		}
		res, err := tx.ExecContext(ctx, `UPDATE agents SET fingerprint = ?, pending_fingerprint = '' WHERE name = ? AND fingerprint = ''`,
			fingerprint, t.Agent)
		if err != nil {
			return fmt.Errorf("enroll agent %q: %w", t.Agent, err)
		}
		if n, err := res.RowsAffected(); err != nil || n != 1 {
			return fmt.Errorf("enrollment token %q: agent %q has a key already: %w", id, t.Agent, ErrTokenUsed)
		}
		if _, err := tx.ExecContext(ctx, `UPDATE enroll_tokens SET used_at = ? WHERE token_id = ?`, formatSQLiteTime(now), id); err != nil {
			return fmt.Errorf("mark enrollment token %q used: %w", id, err)
		}
		name = t.Agent
		return nil
	})
	return name, err
}

// SetPendingFingerprint implements Store.
func (s *SQLite) SetPendingFingerprint(ctx context.Context, name, fingerprint string) error {
	if fingerprint == "" {
		return fmt.Errorf("agent %q: pending fingerprint is empty: %w", name, ErrInvalid)
	}
	return s.inTx(ctx, fmt.Sprintf("set pending key of agent %q", name), func(tx *sql.Tx) error {
		a, err := selectAgent(ctx, tx, name)
		if err != nil {
			return err
		}
		switch {
		case a.Fingerprint == "":
			return fmt.Errorf("agent %q waits for enrollment and has no key to replace: %w", name, ErrInvalid)
		case a.Fingerprint == fingerprint:
			return fmt.Errorf("agent %q: the new key is the current one: %w", name, ErrInvalid)
		}
		_, err = tx.ExecContext(ctx, `UPDATE agents SET pending_fingerprint = ? WHERE name = ?`, fingerprint, name)
		if err != nil {
			return fmt.Errorf("set pending key of agent %q: %w", name, err)
		}
		return nil
	})
}

// PromoteFingerprint implements Store.
func (s *SQLite) PromoteFingerprint(ctx context.Context, name, fingerprint string) error {
	if fingerprint == "" {
		return fmt.Errorf("agent %q: no pending key given: %w", name, ErrInvalid)
	}
	res, err := s.db.ExecContext(ctx,
		`UPDATE agents SET fingerprint = pending_fingerprint, pending_fingerprint = '' WHERE name = ? AND pending_fingerprint = ?`,
		name, fingerprint)
	if err != nil {
		return fmt.Errorf("promote pending key of agent %q: %w", name, err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return fmt.Errorf("promote pending key of agent %q: %w", name, err)
	}
	if n == 0 {
		return fmt.Errorf("agent %q with that pending key: %w", name, ErrNotFound)
	}
	return nil
}

func selectEnrollToken(ctx context.Context, q querier, id string) (EnrollToken, error) {
	var t EnrollToken
	var created, expires string
	var used sql.NullString
	err := q.QueryRowContext(ctx, `SELECT t.token_id, a.name, t.secret_hash, t.created_at, t.expires_at, t.used_at
FROM enroll_tokens t JOIN agents a ON a.id = t.agent_id WHERE t.token_id = ?`, id).
		Scan(&t.ID, &t.Agent, &t.Hash, &created, &expires, &used)
	if errors.Is(err, sql.ErrNoRows) {
		return EnrollToken{}, fmt.Errorf("enrollment token %q: %w", id, ErrNotFound)
	}
	if err != nil {
		return EnrollToken{}, fmt.Errorf("get enrollment token %q: %w", id, err)
	}
	if t.CreatedAt, err = parseSQLiteTime(created); err != nil {
		return EnrollToken{}, err
	}
	if t.ExpiresAt, err = parseSQLiteTime(expires); err != nil {
		return EnrollToken{}, err
	}
	if used.Valid {
		if t.UsedAt, err = parseSQLiteTime(used.String); err != nil {
			return EnrollToken{}, err
		}
	}
	return t, nil
}

package storetest

import (
	"bytes"
	"crypto/sha256"
	"fmt"
	"testing"
	"time"

	"github.com/tunnelrelay/tunnel/internal/store"
)

// Fingerprints of an agent's keys in the enrollment and rotation tests; the
// store treats them as opaque.
const (
	enrolledKey = "sha256:enrolled-key"
	nextKey     = "sha256:next-key"
)

// token returns an enrollment token for agent, whose secret is secret,
// valid for a day from now.
func token(id, agent, secret string) store.EnrollToken {
	h := sha256.Sum256([]byte(secret))
	now := time.Now()
	return store.EnrollToken{ID: id, Agent: agent, Hash: h[:], CreatedAt: now, ExpiresAt: now.Add(24 * time.Hour)}
}

// matches returns the match function of a presented secret.
func matches(secret string) func([]byte) bool {
	return func(hash []byte) bool {
		h := sha256.Sum256([]byte(secret))
		return bytes.Equal(h[:], hash)
	}
}

// issue stores t and fails the test on error.
func issue(t *testing.T, s store.Store, tok store.EnrollToken) bool {
	t.Helper()
	created, err := s.IssueEnrollToken(t.Context(), tok)
	if err != nil {
		t.Fatalf("IssueEnrollToken(%q): %v", tok.ID, err)
	}
	return created
}

// getAgent returns the named agent and fails the test if it is missing.
func getAgent(t *testing.T, s store.Store, name string) store.Agent {
	t.Helper()
	a, err := s.Agent(t.Context(), name)
	if err != nil {
		t.Fatalf("Agent(%q): %v", name, err)
	}
	return a
}

// checkKeys fails unless the agent's current and pending keys are these.
func checkKeys(t *testing.T, s store.Store, name, current, pending string) {
	t.Helper()
	a := getAgent(t, s, name)
	if a.Fingerprint != current || a.PendingFingerprint != pending {
		t.Errorf("agent %q keys = %q, pending %q; want %q, pending %q", name, a.Fingerprint, a.PendingFingerprint, current, pending)
	}
}

func testEnrollment(t *testing.T, o opener) {
	t.Run("IssueRegistersWaitingAgent", func(t *testing.T) {
		s := newStore(t, o)
		tok := token("t1", "acme", "secret")
		before := time.Now()
		if !issue(t, s, tok) {
			t.Error("IssueEnrollToken did not report the agent as created")
		}
		checkKeys(t, s, "acme", "", "")
		checkRecent(t, "agent CreatedAt", getAgent(t, s, "acme").CreatedAt, before, time.Now())
		got, err := s.EnrollToken(t.Context(), "t1")
		if err != nil {
			t.Fatalf("EnrollToken: %v", err)
		}
		if got.ID != "t1" || got.Agent != "acme" || !bytes.Equal(got.Hash, tok.Hash) || !got.UsedAt.IsZero() {
			t.Errorf("EnrollToken = %+v, want %+v", got, tok)
		}
		checkTime(t, "token CreatedAt", got.CreatedAt, tok.CreatedAt)
		checkTime(t, "token ExpiresAt", got.ExpiresAt, tok.ExpiresAt)
		// A waiting agent can be named by routes before it enrolls.
		addRoute(t, s, route("dw", "acme", "127.0.0.1:15432"))
	})

	t.Run("ReissueReplacesUnusedToken", func(t *testing.T) {
		s := newStore(t, o)
		issue(t, s, token("t1", "acme", "first"))
		if issue(t, s, token("t2", "acme", "second")) {
			t.Error("a second token created the agent again")
		}
		_, err := s.EnrollToken(t.Context(), "t1")
		checkErr(t, err, store.ErrNotFound, `"t1"`)
		_, err = s.UseEnrollToken(t.Context(), "t1", matches("first"), enrolledKey, time.Now())
		checkErr(t, err, store.ErrNotFound)
		if name, err := s.UseEnrollToken(t.Context(), "t2", matches("second"), enrolledKey, time.Now()); err != nil || name != "acme" {
			t.Fatalf("UseEnrollToken(t2) = %q, %v", name, err)
		}
	})

	t.Run("IssueForAgentWithKey", func(t *testing.T) {
		s := newStore(t, o)
		addAgent(t, s, "acme")
		_, err := s.IssueEnrollToken(t.Context(), token("t1", "acme", "secret"))
		checkErr(t, err, store.ErrExists, `"acme"`)
		_, err = s.EnrollToken(t.Context(), "t1")
		checkErr(t, err, store.ErrNotFound)
		checkKeys(t, s, "acme", fingerprint, "")
	})

	t.Run("IssueDuplicateID", func(t *testing.T) {
		s := newStore(t, o)
		issue(t, s, token("t1", "acme", "secret"))
		_, err := s.IssueEnrollToken(t.Context(), token("t1", "other", "secret"))
		checkErr(t, err, store.ErrExists, `"t1"`)
		// Nothing of the failed call is left: not even the agent.
		checkAgentNames(t, s, "acme")
	})

	t.Run("IssueInvalid", func(t *testing.T) {
		good := token("t1", "acme", "secret")
		tests := []struct {
			name string
			edit func(*store.EnrollToken)
		}{
			{"EmptyID", func(t *store.EnrollToken) { t.ID = "" }},
			{"EmptyAgent", func(t *store.EnrollToken) { t.Agent = "" }},
			{"ControlInAgent", func(t *store.EnrollToken) { t.Agent = "ac\nme" }},
			{"ShortHash", func(t *store.EnrollToken) { t.Hash = t.Hash[:16] }},
			{"NoExpiry", func(t *store.EnrollToken) { t.ExpiresAt = time.Time{} }},
			{"ExpiresBeforeCreated", func(t *store.EnrollToken) { t.ExpiresAt = t.CreatedAt.Add(-time.Second) }},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				s := newStore(t, o)
				tok := good
				tok.Hash = bytes.Clone(good.Hash)
				tt.edit(&tok)
				_, err := s.IssueEnrollToken(t.Context(), tok)
				checkErr(t, err, store.ErrInvalid)
				checkAgentNames(t, s)
			})
		}
	})

	t.Run("Use", func(t *testing.T) {
		s := newStore(t, o)
		issue(t, s, token("t1", "acme", "secret"))
		before := time.Now()
		name, err := s.UseEnrollToken(t.Context(), "t1", matches("secret"), enrolledKey, before)
		if err != nil || name != "acme" {
			t.Fatalf("UseEnrollToken = %q, %v; want acme", name, err)
		}
		checkKeys(t, s, "acme", enrolledKey, "")
		got, err := s.EnrollToken(t.Context(), "t1")
		if err != nil {
			t.Fatalf("EnrollToken: %v", err)
		}
		checkTime(t, "UsedAt", got.UsedAt, before)
	})

	t.Run("UseRefused", func(t *testing.T) {
		tests := []struct {
			name    string
			id      string
			secret  string
			at      time.Duration // after now
			prepare func(t *testing.T, s store.Store)
			want    error
		}{
			{name: "UnknownID", id: "nope", secret: "secret", want: store.ErrNotFound},
			{name: "WrongSecret", id: "t1", secret: "guess", want: store.ErrNotFound},
			{name: "Expired", id: "t1", secret: "secret", at: 25 * time.Hour, want: store.ErrTokenExpired},
			{name: "AtExpiry", id: "t1", secret: "secret", at: 24*time.Hour + timePrecision, want: store.ErrTokenExpired},
			{name: "Used", id: "t1", secret: "secret", want: store.ErrTokenUsed,
				prepare: func(t *testing.T, s store.Store) {
					if _, err := s.UseEnrollToken(t.Context(), "t1", matches("secret"), enrolledKey, time.Now()); err != nil {
						t.Fatal(err)
					}
				}},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				s := newStore(t, o)
				issue(t, s, token("t1", "acme", "secret"))
				wantKey := ""
				if tt.prepare != nil {
					tt.prepare(t, s)
					wantKey = enrolledKey
				}
				_, err := s.UseEnrollToken(t.Context(), tt.id, matches(tt.secret), "sha256:intruder", time.Now().Add(tt.at))
				checkErr(t, err, tt.want)
				checkKeys(t, s, "acme", wantKey, "")
				if tt.prepare == nil {
					got, err := s.EnrollToken(t.Context(), "t1")
					if err != nil {
						t.Fatal(err)
					}
					if !got.UsedAt.IsZero() {
						t.Error("a refused use marked the token used")
					}
				}
			})
		}
		t.Run("EmptyFingerprint", func(t *testing.T) {
			s := newStore(t, o)
			issue(t, s, token("t1", "acme", "secret"))
			_, err := s.UseEnrollToken(t.Context(), "t1", matches("secret"), "", time.Now())
			checkErr(t, err, store.ErrInvalid)
			checkKeys(t, s, "acme", "", "")
		})
	})

	t.Run("UseConcurrently", func(t *testing.T) {
		s := newStore(t, o)
		issue(t, s, token("t1", "acme", "secret"))
		errs := runWriters(func(i int) error {
			_, err := s.UseEnrollToken(t.Context(), "t1", matches("secret"), fmt.Sprintf("sha256:key-%02d", i), time.Now())
			return err
		})
		checkOneWinner(t, errs, store.ErrTokenUsed)
		for i, err := range errs {
			if err == nil {
				checkKeys(t, s, "acme", fmt.Sprintf("sha256:key-%02d", i), "")
			}
		}
	})

	t.Run("RemoveAgentDropsTokens", func(t *testing.T) {
		s := newStore(t, o)
		issue(t, s, token("t1", "acme", "secret"))
		if err := s.RemoveAgent(t.Context(), "acme"); err != nil {
			t.Fatalf("RemoveAgent: %v", err)
		}
		_, err := s.EnrollToken(t.Context(), "t1")
		checkErr(t, err, store.ErrNotFound)
		if !issue(t, s, token("t2", "acme", "secret")) {
			t.Error("the agent was not created again")
		}
	})

	t.Run("PendingKey", func(t *testing.T) {
		s := newStore(t, o)
		addAgent(t, s, "acme")
		addAgent(t, s, "other")
		if err := s.SetPendingFingerprint(t.Context(), "acme", "sha256:first-try"); err != nil {
			t.Fatalf("SetPendingFingerprint: %v", err)
		}
		if err := s.SetPendingFingerprint(t.Context(), "acme", nextKey); err != nil {
			t.Fatalf("SetPendingFingerprint again: %v", err)
		}
		checkKeys(t, s, "acme", fingerprint, nextKey)
		checkErr(t, s.PromoteFingerprint(t.Context(), "acme", "sha256:first-try"), store.ErrNotFound, `"acme"`)
		checkErr(t, s.PromoteFingerprint(t.Context(), "other", nextKey), store.ErrNotFound, `"other"`)
		checkKeys(t, s, "acme", fingerprint, nextKey)
		if err := s.PromoteFingerprint(t.Context(), "acme", nextKey); err != nil {
			t.Fatalf("PromoteFingerprint: %v", err)
		}
		checkKeys(t, s, "acme", nextKey, "")
		checkKeys(t, s, "other", fingerprint, "")
		checkErr(t, s.PromoteFingerprint(t.Context(), "acme", nextKey), store.ErrNotFound)
	})

	t.Run("PendingKeyRefused", func(t *testing.T) {
		s := newStore(t, o)
		addAgent(t, s, "acme")
		issue(t, s, token("t1", "waiting", "secret"))
		checkErr(t, s.SetPendingFingerprint(t.Context(), "acme", ""), store.ErrInvalid)
		checkErr(t, s.SetPendingFingerprint(t.Context(), "acme", fingerprint), store.ErrInvalid, "current")
		checkErr(t, s.SetPendingFingerprint(t.Context(), "waiting", nextKey), store.ErrInvalid, "enrollment")
		checkErr(t, s.SetPendingFingerprint(t.Context(), "ghost", nextKey), store.ErrNotFound, `"ghost"`)
		checkErr(t, s.PromoteFingerprint(t.Context(), "acme", ""), store.ErrInvalid)
		checkKeys(t, s, "acme", fingerprint, "")
		checkKeys(t, s, "waiting", "", "")
	})
}

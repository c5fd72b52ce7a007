// Package storetest is the conformance suite every store.Store backend must
// pass. A backend's own test calls Run with a function that opens a new,
// empty store; the suite checks every method, every documented error and
// behaviour under concurrent use, so two backends cannot drift apart.
//
// It is for tests only. Backend-specific behaviour (files, pragmas, schema
// versions) is tested beside the backend.
package storetest

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/tunnelrelay/tunnel/internal/store"
)

// opener returns a new, empty store for one test.
type opener func(t *testing.T) store.Store

// Run runs the conformance suite against the stores open returns. Each
// subtest calls open for a new, empty store. open may register its own
// cleanup; Run also closes the store when the subtest ends, which Close
// allows.
func Run(t *testing.T, open func(t *testing.T) store.Store) {
	t.Helper()
	o := opener(open)
	t.Run("Agents", func(t *testing.T) { testAgents(t, o) })
	t.Run("Routes", func(t *testing.T) { testRoutes(t, o) })
	t.Run("Concurrency", func(t *testing.T) { testConcurrency(t, o) })
	t.Run("Lifecycle", func(t *testing.T) { testLifecycle(t, o) })
	t.Run("Enrollment", func(t *testing.T) { testEnrollment(t, o) })
}

// timePrecision is the coarsest timestamp precision a backend may keep.
const timePrecision = time.Second

// fingerprint is a well-formed fingerprint; the store treats it as opaque.
const fingerprint = "sha256:8d969eef6ecad3c29a3a629280e686cf0c3f5d5a86aff3ca12020c923adc6c92"

// newStore opens a store through o and closes it when the test ends.
func newStore(t *testing.T, o opener) store.Store {
	t.Helper()
	s := o(t)
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return s
}

// addAgent registers an enabled agent called name.
func addAgent(t *testing.T, s store.Store, name string) {
	t.Helper()
	if err := s.AddAgent(t.Context(), store.Agent{Name: name, Fingerprint: fingerprint}); err != nil {
		t.Fatalf("AddAgent(%q): %v", name, err)
	}
}

// addRoute registers r.
func addRoute(t *testing.T, s store.Store, r store.Route) {
	t.Helper()
	if err := s.AddRoute(t.Context(), r); err != nil {
		t.Fatalf("AddRoute(%q): %v", r.Name, err)
	}
}

// route returns a valid route called name to target "warehouse" of agent.
func route(name, agent, listen string) store.Route {
	return store.Route{Name: name, Agent: agent, Target: "warehouse", Listen: listen}
}

// pgRoute returns a PostgreSQL route of agent "acme".
func pgRoute(name, listen string, isDefault bool) store.Route {
	return store.Route{Name: name, Agent: "acme", Target: "warehouse", Listen: listen,
		Protocol: store.ProtocolPostgres, Default: isDefault}
}

// checkErr fails unless err wraps target and its message contains each of
// parts (the names the caller needs to see).
func checkErr(t *testing.T, err, target error, parts ...string) {
	t.Helper()
	if !errors.Is(err, target) {
		t.Fatalf("error = %v, want one wrapping %q", err, target)
	}
	for _, p := range parts {
		if !strings.Contains(err.Error(), p) {
			t.Errorf("error %q does not mention %s", err, p)
		}
	}
}

// checkTime fails unless got is in UTC and within timePrecision of want.
func checkTime(t *testing.T, what string, got, want time.Time) {
	t.Helper()
	if got.Location() != time.UTC {
		t.Errorf("%s location = %v, want UTC", what, got.Location())
	}
	if d := got.Sub(want); d <= -timePrecision || d >= timePrecision {
		t.Errorf("%s = %v, want %v (±%v)", what, got, want, timePrecision)
	}
}

// checkRecent fails unless got is in UTC and between before and after,
// allowing for the backend's precision.
func checkRecent(t *testing.T, what string, got, before, after time.Time) {
	t.Helper()
	if got.Location() != time.UTC {
		t.Errorf("%s location = %v, want UTC", what, got.Location())
	}
	if got.Before(before.Add(-timePrecision)) || got.After(after) {
		t.Errorf("%s = %v, want between %v and %v", what, got, before, after)
	}
}

// canceled returns a context that is already canceled.
func canceled(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	return ctx
}

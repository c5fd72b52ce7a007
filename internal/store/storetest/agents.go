package storetest

import (
	"slices"
	"testing"
	"time"

	"github.com/tunnelrelay/tunnel/internal/store"
)

func testAgents(t *testing.T, o opener) {
	t.Run("EmptyStore", func(t *testing.T) {
		s := newStore(t, o)
		agents, err := s.Agents(t.Context())
		if err != nil {
			t.Fatalf("Agents: %v", err)
		}
		if len(agents) != 0 {
			t.Errorf("Agents = %v, want none", agents)
		}
	})

	t.Run("AddAndGet", func(t *testing.T) {
		s := newStore(t, o)
		created := time.Date(2024, 5, 6, 7, 8, 9, 123456789, time.FixedZone("CEST", 2*60*60))
		want := store.Agent{Name: "acme-bastion", Fingerprint: fingerprint, Disabled: true, CreatedAt: created}
		if err := s.AddAgent(t.Context(), want); err != nil {
			t.Fatalf("AddAgent: %v", err)
		}
		got, err := s.Agent(t.Context(), want.Name)
		if err != nil {
			t.Fatalf("Agent: %v", err)
		}
		checkAgent(t, got, want)
	})

	t.Run("CreatedAtDefaultsToNow", func(t *testing.T) {
		s := newStore(t, o)
		before := time.Now()
		addAgent(t, s, "acme")
		after := time.Now()
		got, err := s.Agent(t.Context(), "acme")
		if err != nil {
			t.Fatalf("Agent: %v", err)
		}
		checkRecent(t, "CreatedAt", got.CreatedAt, before, after)
		if got.Disabled {
			t.Error("new agent is disabled")
		}
	})

	t.Run("AddExisting", func(t *testing.T) {
		s := newStore(t, o)
		addAgent(t, s, "acme")
		err := s.AddAgent(t.Context(), store.Agent{Name: "acme", Fingerprint: "sha256:other"})
		checkErr(t, err, store.ErrExists, `"acme"`)
		got, err := s.Agent(t.Context(), "acme")
		if err != nil {
			t.Fatalf("Agent: %v", err)
		}
		if got.Fingerprint != fingerprint {
			t.Errorf("fingerprint = %q after a refused AddAgent, want the original %q", got.Fingerprint, fingerprint)
		}
	})

	t.Run("AddInvalid", func(t *testing.T) {
		tests := []struct {
			name  string
			agent store.Agent
		}{
			{"EmptyName", store.Agent{Fingerprint: fingerprint}},
			{"SpaceInName", store.Agent{Name: " acme", Fingerprint: fingerprint}},
			{"ControlInName", store.Agent{Name: "ac\nme", Fingerprint: fingerprint}},
			{"EmptyFingerprint", store.Agent{Name: "acme"}},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				s := newStore(t, o)
				checkErr(t, s.AddAgent(t.Context(), tt.agent), store.ErrInvalid)
				checkAgentNames(t, s)
			})
		}
	})

	t.Run("NamesAreCaseSensitive", func(t *testing.T) {
		s := newStore(t, o)
		addAgent(t, s, "acme")
		addAgent(t, s, "Acme")
		_, err := s.Agent(t.Context(), "ACME")
		checkErr(t, err, store.ErrNotFound, `"ACME"`)
		checkAgentNames(t, s, "Acme", "acme")
	})

	t.Run("GetMissing", func(t *testing.T) {
		s := newStore(t, o)
		addAgent(t, s, "acme")
		_, err := s.Agent(t.Context(), "ghost")
		checkErr(t, err, store.ErrNotFound, `agent "ghost"`)
	})

	t.Run("SortedByName", func(t *testing.T) {
		s := newStore(t, o)
		names := []string{"m", "b-2", "Z", "b", "a", "b-10"}
		for _, n := range names {
			addAgent(t, s, n)
		}
		checkAgentNames(t, s, slices.Sorted(slices.Values(names))...)
	})

	t.Run("SetDisabled", func(t *testing.T) {
		s := newStore(t, o)
		addAgent(t, s, "acme")
		addAgent(t, s, "other")
		for _, disabled := range []bool{true, true, false, false, true} {
			if err := s.SetAgentDisabled(t.Context(), "acme", disabled); err != nil {
				t.Fatalf("SetAgentDisabled(%v): %v", disabled, err)
			}
			got, err := s.Agent(t.Context(), "acme")
			if err != nil {
				t.Fatalf("Agent: %v", err)
			}
			if got.Disabled != disabled {
				t.Fatalf("Disabled = %v after SetAgentDisabled(%v)", got.Disabled, disabled)
			}
		}
		other, err := s.Agent(t.Context(), "other")
		if err != nil {
			t.Fatalf("Agent: %v", err)
		}
		if other.Disabled {
			t.Error("SetAgentDisabled disabled another agent")
		}
	})

	t.Run("SetDisabledMissing", func(t *testing.T) {
		s := newStore(t, o)
		addAgent(t, s, "acme")
		checkErr(t, s.SetAgentDisabled(t.Context(), "Acme", true), store.ErrNotFound, `agent "Acme"`)
	})

	t.Run("Remove", func(t *testing.T) {
		s := newStore(t, o)
		addAgent(t, s, "acme")
		addAgent(t, s, "other")
		if err := s.RemoveAgent(t.Context(), "acme"); err != nil {
			t.Fatalf("RemoveAgent: %v", err)
		}
		_, err := s.Agent(t.Context(), "acme")
		checkErr(t, err, store.ErrNotFound)
		checkAgentNames(t, s, "other")
		checkErr(t, s.RemoveAgent(t.Context(), "acme"), store.ErrNotFound, `agent "acme"`)
		// The name is free again.
		addAgent(t, s, "acme")
	})

	t.Run("RemoveInUse", func(t *testing.T) {
		s := newStore(t, o)
		addAgent(t, s, "acme")
		addAgent(t, s, "other")
		addRoute(t, s, route("warehouse-b", "acme", "127.0.0.1:15432"))
		addRoute(t, s, route("warehouse-a", "acme", "127.0.0.1:15433"))
		addRoute(t, s, route("unrelated", "other", "127.0.0.1:15434"))

		err := s.RemoveAgent(t.Context(), "acme")
		checkErr(t, err, store.ErrInUse, `agent "acme"`, `"warehouse-a"`, `"warehouse-b"`)
		if _, err := s.Agent(t.Context(), "acme"); err != nil {
			t.Fatalf("agent gone after a refused RemoveAgent: %v", err)
		}
		checkRouteNames(t, s, "unrelated", "warehouse-a", "warehouse-b")

		for _, r := range []string{"warehouse-a", "warehouse-b"} {
			if err := s.RemoveRoute(t.Context(), r); err != nil {
				t.Fatalf("RemoveRoute(%q): %v", r, err)
			}
		}
		if err := s.RemoveAgent(t.Context(), "acme"); err != nil {
			t.Fatalf("RemoveAgent after removing its routes: %v", err)
		}
		checkAgentNames(t, s, "other")
	})
}

// checkAgent fails unless got matches want, CreatedAt within timePrecision.
func checkAgent(t *testing.T, got, want store.Agent) {
	t.Helper()
	if got.Name != want.Name || got.Fingerprint != want.Fingerprint || got.Disabled != want.Disabled {
		t.Errorf("agent = %+v, want %+v", got, want)
	}
	checkTime(t, "agent "+want.Name+" CreatedAt", got.CreatedAt, want.CreatedAt)
}

// checkAgentNames fails unless Agents returns exactly names, in that order.
func checkAgentNames(t *testing.T, s store.Store, names ...string) {
	t.Helper()
	agents, err := s.Agents(t.Context())
	if err != nil {
		t.Fatalf("Agents: %v", err)
	}
	var got []string
	for _, a := range agents {
		got = append(got, a.Name)
	}
	if !slices.Equal(got, names) {
		t.Errorf("Agents = %q, want %q", got, names)
	}
}

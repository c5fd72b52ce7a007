package storetest

import (
	"context"
	"testing"

	"github.com/tunnelrelay/tunnel/internal/store"
)

func testLifecycle(t *testing.T, o opener) {
	t.Run("CanceledContext", func(t *testing.T) {
		s := newStore(t, o)
		addAgent(t, s, "acme")
		addRoute(t, s, route("warehouse", "acme", ":15432"))
		tests := []struct {
			name string
			call func(ctx context.Context) error
		}{
			{"Agents", func(ctx context.Context) error { _, err := s.Agents(ctx); return err }},
			{"Agent", func(ctx context.Context) error { _, err := s.Agent(ctx, "acme"); return err }},
			{"AddAgent", func(ctx context.Context) error {
				return s.AddAgent(ctx, store.Agent{Name: "new", Fingerprint: fingerprint})
			}},
			{"SetAgentDisabled", func(ctx context.Context) error { return s.SetAgentDisabled(ctx, "acme", true) }},
			{"RemoveAgent", func(ctx context.Context) error { return s.RemoveAgent(ctx, "acme") }},
			{"Routes", func(ctx context.Context) error { _, err := s.Routes(ctx); return err }},
			{"Route", func(ctx context.Context) error { _, err := s.Route(ctx, "warehouse"); return err }},
			{"AddRoute", func(ctx context.Context) error { return s.AddRoute(ctx, route("new", "acme", ":15433")) }},
			{"RemoveRoute", func(ctx context.Context) error { return s.RemoveRoute(ctx, "warehouse") }},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				checkErr(t, tt.call(canceled(t)), context.Canceled)
			})
		}
		// None of the canceled calls changed anything.
		checkAgentNames(t, s, "acme")
		checkRouteNames(t, s, "warehouse")
		a, err := s.Agent(t.Context(), "acme")
		if err != nil {
			t.Fatalf("Agent: %v", err)
		}
		if a.Disabled {
			t.Error("a canceled SetAgentDisabled took effect")
		}
	})

	t.Run("CloseTwice", func(t *testing.T) {
		s := o(t)
		if err := s.Close(); err != nil {
			t.Fatalf("Close: %v", err)
		}
		if err := s.Close(); err != nil {
			t.Errorf("second Close: %v", err)
		}
	})

	t.Run("UseAfterClose", func(t *testing.T) {
		s := o(t)
		if err := s.Close(); err != nil {
			t.Fatalf("Close: %v", err)
		}
		if _, err := s.Agents(t.Context()); err == nil {
			t.Error("Agents after Close succeeded, want an error")
		}
	})
}

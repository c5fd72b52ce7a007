package main

import (
	"slices"
	"testing"

	"github.com/tunnelrelay/tunnel/internal/config"
)

// TestRestartNeeded: a reload names each setting it cannot apply, and no
// other.
func TestRestartNeeded(t *testing.T) {
	cur := config.DefaultAgent()
	for _, tc := range []struct {
		key    string
		change func(*config.Agent)
	}{
		{"server.address", func(c *config.Agent) { c.Server.Address = "other.example.com:7443" }},
		{"agent.max_sessions", func(c *config.Agent) { c.Agent.MaxSessions = 5 }},
		{"agent.metrics_listen", func(c *config.Agent) { c.Agent.MetricsListen = "127.0.0.1:9102" }},
		{"", func(c *config.Agent) { c.Agent.DrainTimeout.Duration *= 2 }}, // applied by the reload
		{"", func(c *config.Agent) {
			c.Targets = append(c.Targets, config.Target{Name: "db", Address: "10.0.0.5:5432"})
		}},
	} {
		next := cur
		next.Targets = slices.Clone(cur.Targets)
		tc.change(&next)
		got := restartNeeded(&cur, &next)
		if want := []string{tc.key}; tc.key == "" && len(got) != 0 || tc.key != "" && !slices.Equal(got, want) {
			t.Errorf("%s: restartNeeded = %q", tc.key, got)
		}
	}
}

package main

import (
	"slices"
	"testing"

	"github.com/tunnelrelay/tunnel/internal/config"
)

func TestServerRestartNeeded(t *testing.T) {
	cur := config.DefaultServer()
	for _, tc := range []struct {
		key    string
		change func(*config.Server)
	}{
		{"server.listen", func(c *config.Server) { c.Server.Listen = ":8443" }},
		{"server.database", func(c *config.Server) { c.Server.Database = "other.db" }},
		{"admin.listen", func(c *config.Server) { c.Admin.Listen = "127.0.0.1:9999" }},
		{"admin.token_file", func(c *config.Server) { c.Admin.TokenFile = "other.token" }},
		{"postgres.domain", func(c *config.Server) { c.Postgres.Domain = "db.example.com" }},
		{"limits.heartbeat_timeout", func(c *config.Server) { c.Limits.HeartbeatTimeout.Duration *= 2 }},
		{"limits.max_header_size", func(c *config.Server) { c.Limits.MaxHeaderSize = 8192 }},
		// Applied by the reload.
		{"", func(c *config.Server) { c.Server.Cert = "renewed.crt" }},
		{"", func(c *config.Server) { c.Server.CA = "new-ca.crt" }},
		{"", func(c *config.Server) { c.Limits.MaxSessionsPerAgent = 5 }},
		{"", func(c *config.Server) { c.Limits.OpenTimeout.Duration *= 2 }},
		{"", func(c *config.Server) { c.Limits.DrainTimeout.Duration *= 2 }},
	} {
		next := cur
		tc.change(&next)
		got := serverRestartNeeded(&cur, &next)
		if want := []string{tc.key}; tc.key == "" && len(got) != 0 || tc.key != "" && !slices.Equal(got, want) {
			t.Errorf("%s: serverRestartNeeded = %q", tc.key, got)
		}
	}
}

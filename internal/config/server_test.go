package config

import (
	"os"
	"path/filepath"
	"reflect"
	"testing"
	"time"
)

func TestParseServerErrors(t *testing.T) {
	t.Parallel()
	withLimits := func(lines string) string { return validServer + "\n[limits]\n" + lines + "\n" }
	withAdmin := func(listen string) string {
		return edit(validServer, "[admin]\n", "[admin]\nlisten = \""+listen+"\"\n")
	}
	const notExposed = "the admin API is never exposed beyond loopback"
	tests := []struct {
		name string
		doc  string
		env  map[string]string
		want []string
		kind error
	}{
		{name: "valid", doc: validServer},
		{
			name: "empty file reports every missing key at once",
			doc:  "",
			want: []string{
				"tunnel-server.toml: server.public_address: missing",
				"tunnel-server.toml: server.cert: missing",
				"tunnel-server.toml: server.key: missing",
				"tunnel-server.toml: server.ca: missing",
				"tunnel-server.toml: admin.token_file: missing",
			},
			kind: ErrInvalid,
		},
		{
			name: "unknown key names file, line and key",
			doc:  withLimits("max_sesions_per_agent = 5"),
			want: []string{`tunnel-server.toml:{max_sesions}: unknown key "limits.max_sesions_per_agent" (did you mean "max_sessions_per_agent"?)`},
			kind: ErrUnknownKey,
		},
		{
			name: "syntax error",
			doc:  withLimits("open_timeout = 15s"),
			want: []string{`tunnel-server.toml:{open_timeout}:`, "invalid TOML"},
			kind: ErrSyntax,
		},
		{
			name: "listen without port",
			doc:  edit(validServer, "[server]\n", "[server]\nlisten = \"7443\"\n"),
			want: []string{`tunnel-server.toml:{listen}: server.listen "7443": missing port`},
		},
		{
			name: "listen on a free port",
			doc:  edit(validServer, "[server]\n", "[server]\nlisten = \"127.0.0.1:0\"\n"),
		},
		{
			name: "public address port out of range",
			doc:  edit(validServer, `"tunnel.example.com:7443"`, `"tunnel.example.com:70000"`),
			want: []string{`server.public_address "tunnel.example.com:70000": invalid port`},
		},
		{
			name: "public address without host",
			doc:  edit(validServer, `"tunnel.example.com:7443"`, `":7443"`),
			want: []string{`server.public_address ":7443": missing host`},
		},
		{name: "admin on 127.0.0.1", doc: withAdmin("127.0.0.1:7444")},
		{name: "admin on 127.0.0.2", doc: withAdmin("127.0.0.2:7444")},
		{name: "admin on ::1", doc: withAdmin("[::1]:7444")},
		{name: "admin on a unix socket", doc: withAdmin("unix:/run/tunnel/admin.sock")},
		{name: "admin on a relative unix socket", doc: withAdmin("unix:admin.sock")},
		{
			name: "admin on all interfaces",
			doc:  withAdmin("0.0.0.0:7444"),
			want: []string{`tunnel-server.toml:{0.0.0.0}: admin.listen "0.0.0.0:7444": not a loopback address; ` + notExposed},
			kind: ErrInvalid,
		},
		{name: "admin with empty host", doc: withAdmin(":7444"), want: []string{`admin.listen ":7444"`, notExposed}},
		{name: "admin on IPv6 any", doc: withAdmin("[::]:7444"), want: []string{notExposed}},
		{name: "admin on a private address", doc: withAdmin("10.0.0.1:7444"), want: []string{notExposed}},
		{name: "admin on a host name", doc: withAdmin("localhost:7444"), want: []string{notExposed}},
		{name: "admin without port", doc: withAdmin("127.0.0.1"), want: []string{notExposed}},
		{name: "admin on an empty unix path", doc: withAdmin("unix:"), want: []string{`admin.listen "unix:": missing socket path`}},
		{
			name: "heartbeat timeout below interval",
			doc:  withLimits("heartbeat_timeout = \"3s\""),
			want: []string{`tunnel-server.toml:{heartbeat_timeout}: limits.heartbeat_timeout (3s) must be greater than limits.heartbeat_interval (5s)`},
			kind: ErrInvalid,
		},
		{
			name: "heartbeat timeout equal to interval",
			doc:  withLimits("heartbeat_interval = \"10s\"\nheartbeat_timeout = \"10s\""),
			want: []string{`limits.heartbeat_timeout (10s) must be greater than limits.heartbeat_interval (10s)`},
		},
		{
			name: "heartbeat interval above the default timeout points at the interval",
			doc:  withLimits("heartbeat_interval = \"20s\""),
			want: []string{`tunnel-server.toml:{heartbeat_interval}: limits.heartbeat_timeout (15s) must be greater than limits.heartbeat_interval (20s)`},
		},
		{name: "heartbeat both raised", doc: withLimits("heartbeat_interval = \"20s\"\nheartbeat_timeout = \"1m\"")},
		{
			name: "header size too small",
			doc:  withLimits("max_header_size = 100"),
			want: []string{`tunnel-server.toml:{max_header_size}: limits.max_header_size (100): must be from 2048 to 65535 bytes (0 means the default, 4096)`},
		},
		{name: "header size too large", doc: withLimits("max_header_size = 65537"), want: []string{`limits.max_header_size (65537)`}},
		{name: "header size at the bounds", doc: withLimits("max_header_size = 2048")},
		{name: "header size at the upper bound", doc: withLimits("max_header_size = 65535")},
		{
			name: "negative sessions",
			doc:  withLimits("max_sessions_per_agent = -5"),
			want: []string{`limits.max_sessions_per_agent (-5): must not be negative`},
		},
		{
			name: "negative duration",
			doc:  withLimits("half_close_timeout = \"-1s\""),
			want: []string{`limits.half_close_timeout (-1s): must not be negative (0 means the default, 30s)`},
		},
		{
			name: "bad duration",
			doc:  withLimits("open_timeout = \"fifteen\""),
			want: []string{`tunnel-server.toml:{open_timeout}: limits.open_timeout: invalid duration "fifteen"`},
		},
		{
			name: "duration of the wrong type",
			doc:  withLimits("open_timeout = 15"),
			want: []string{`limits.open_timeout: want a duration string like "10s", got an integer`},
		},
		{
			name: "env fixes a missing key",
			doc:  edit(validServer, `token_file = "admin.token"`, ""),
			env:  map[string]string{"TUNNEL_SERVER_ADMIN_TOKEN_FILE": "/secrets/admin.token"},
		},
		{
			name: "env admin listen is checked and named",
			doc:  validServer,
			env:  map[string]string{"TUNNEL_SERVER_ADMIN_LISTEN": "0.0.0.0:7444"},
			want: []string{`TUNNEL_SERVER_ADMIN_LISTEN: admin.listen "0.0.0.0:7444": not a loopback address; ` + notExposed},
		},
		{
			name: "bad env duration names the variable",
			doc:  validServer,
			env:  map[string]string{"TUNNEL_SERVER_LIMITS_OPEN_TIMEOUT": "15"},
			want: []string{`TUNNEL_SERVER_LIMITS_OPEN_TIMEOUT: limits.open_timeout: invalid duration "15"`},
		},
		{
			name: "bad env integer names the variable",
			doc:  validServer,
			env:  map[string]string{"TUNNEL_SERVER_LIMITS_MAX_HEADER_SIZE": "4k"},
			want: []string{`TUNNEL_SERVER_LIMITS_MAX_HEADER_SIZE: limits.max_header_size "4k": not an integer`},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c, err := ParseServer(ServerFile, []byte(tt.doc), envMap(tt.env))
			var kinds []error
			if tt.kind != nil {
				kinds = append(kinds, tt.kind)
			}
			checkErr(t, err, expand(t, tt.doc, tt.want), kinds...)
			if err == nil {
				if verr := c.Validate(); verr != nil {
					t.Errorf("loaded config does not validate: %v", verr)
				}
			}
		})
	}
}

func TestParseServerValues(t *testing.T) {
	t.Parallel()
	dir := "/srv/tunnel"

	t.Run("defaults and resolved paths", func(t *testing.T) {
		t.Parallel()
		doc := edit(validServer, `cert = "server.crt"`, `cert = "/etc/ssl/server.crt"`)
		doc = edit(doc, `key = "server.key"`, `key = "tls/server.key"`)
		c, err := ParseServer(filepath.Join(dir, ServerFile), []byte(doc), nil)
		if err != nil {
			t.Fatal(err)
		}
		want := Server{
			Server: ServerSection{
				Listen:        ":7443",
				PublicAddress: "tunnel.example.com:7443",
				Cert:          "/etc/ssl/server.crt",
				Key:           "/srv/tunnel/tls/server.key",
				CA:            "/srv/tunnel/ca.crt",
				Database:      "/srv/tunnel/tunnel.db",
			},
			Admin: AdminSection{Listen: "127.0.0.1:7444", TokenFile: "/srv/tunnel/admin.token"},
			Limits: Limits{
				HandshakeTimeout:    Duration{10 * time.Second},
				OpenTimeout:         Duration{15 * time.Second},
				MaxSessionsPerAgent: 10000,
				MaxHeaderSize:       4096,
				HeartbeatInterval:   Duration{5 * time.Second},
				HeartbeatTimeout:    Duration{15 * time.Second},
				HalfCloseTimeout:    Duration{30 * time.Second},
				DrainTimeout:        Duration{30 * time.Second},
			},
			Path: filepath.Join(dir, ServerFile),
		}
		if !reflect.DeepEqual(*c, want) {
			t.Errorf("got  %+v\nwant %+v", *c, want)
		}
		if n, a := c.Admin.Network(); n != "tcp" || a != "127.0.0.1:7444" {
			t.Errorf("Network() = %s %s", n, a)
		}
	})

	t.Run("unix socket resolved", func(t *testing.T) {
		t.Parallel()
		doc := edit(validServer, "[admin]\n", "[admin]\nlisten = \"unix:run/admin.sock\"\n")
		c, err := ParseServer(filepath.Join(dir, ServerFile), []byte(doc), nil)
		if err != nil {
			t.Fatal(err)
		}
		if n, a := c.Admin.Network(); n != "unix" || a != "/srv/tunnel/run/admin.sock" {
			t.Errorf("Network() = %s %s", n, a)
		}
	})

	t.Run("env overrides", func(t *testing.T) {
		t.Parallel()
		env := map[string]string{
			"TUNNEL_SERVER_SERVER_LISTEN":                 "127.0.0.1:9443",
			"TUNNEL_SERVER_SERVER_DATABASE":               "/var/lib/tunnel/reg.db",
			"TUNNEL_SERVER_ADMIN_LISTEN":                  "[::1]:9444",
			"TUNNEL_SERVER_LIMITS_OPEN_TIMEOUT":           "1m",
			"TUNNEL_SERVER_LIMITS_MAX_SESSIONS_PER_AGENT": "20",
			"TUNNEL_SERVER_SERVER_CA":                     "pki/ca.crt", // relative to the file's directory
		}
		c, err := ParseServer(filepath.Join(dir, ServerFile), []byte(validServer), envMap(env))
		if err != nil {
			t.Fatal(err)
		}
		if c.Server.Listen != "127.0.0.1:9443" || c.Server.Database != "/var/lib/tunnel/reg.db" ||
			c.Admin.Listen != "[::1]:9444" || c.Limits.OpenTimeout.Duration != time.Minute ||
			c.Limits.MaxSessionsPerAgent != 20 || c.Server.CA != "/srv/tunnel/pki/ca.crt" {
			t.Errorf("got %+v", c)
		}
	})
}

func TestLoadServer(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	path := filepath.Join(dir, ServerFile)
	if err := os.WriteFile(path, []byte(validServer), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := LoadServer(path)
	if err != nil {
		t.Fatal(err)
	}
	if c.Path != path || c.Server.Cert != filepath.Join(dir, "server.crt") || c.Admin.TokenFile != filepath.Join(dir, "admin.token") {
		t.Errorf("got %+v", c)
	}
}

func TestLoadErrors(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	big := filepath.Join(dir, "big.toml")
	if err := os.WriteFile(big, make([]byte, maxFileSize+1), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		path string
		want string
	}{
		{"missing file", filepath.Join(dir, "nope.toml"), "no such file or directory"},
		{"directory", dir, "is a directory"},
		{"too large", big, "larger than"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := LoadAgent(tt.path)
			checkErr(t, err, []string{tt.want})
			_, err = LoadServer(tt.path)
			checkErr(t, err, []string{tt.want})
		})
	}
}

func TestServerValidateDefaults(t *testing.T) {
	t.Parallel()
	c := DefaultServer()
	c.Server.PublicAddress, c.Server.Cert, c.Server.Key, c.Server.CA, c.Admin.TokenFile = "h:1", "c", "k", "ca", "t"
	if err := c.Validate(); err != nil {
		t.Errorf("defaults do not validate: %v", err)
	}
	zero := Server{Server: ServerSection{PublicAddress: "h:1", Cert: "c", Key: "k", CA: "ca"}, Admin: AdminSection{TokenFile: "t"}}
	if err := zero.Validate(); err != nil {
		t.Errorf("zero optional fields do not validate: %v", err)
	}
	if n, a := (AdminSection{}).Network(); n != "tcp" || a != DefaultAdminListen {
		t.Errorf("zero Network() = %s %s", n, a)
	}
}

package config

import (
	"fmt"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// edit returns validAgent with old replaced by new; old must occur.
func edit(doc, old, new string) string {
	if !strings.Contains(doc, old) {
		panic(fmt.Sprintf("%q not in the document", old))
	}
	return strings.Replace(doc, old, new, 1)
}

var placeholder = regexp.MustCompile(`\{([^}]+?)(-[0-9]+)?\}`)

// expand replaces each {TEXT} in want with the line of doc where TEXT
// first occurs, and {TEXT-N} with N lines before that, so cases need not
// count lines.
func expand(t *testing.T, doc string, want []string) []string {
	t.Helper()
	out := make([]string, len(want))
	for i, w := range want {
		out[i] = placeholder.ReplaceAllStringFunc(w, func(m string) string {
			sub := placeholder.FindStringSubmatch(m)
			at := strings.Index(doc, sub[1])
			if at < 0 {
				t.Fatalf("%q not in the document", sub[1])
			}
			line := 1 + strings.Count(doc[:at], "\n")
			if sub[2] != "" {
				n, _ := strconv.Atoi(sub[2][1:])
				line -= n
			}
			return strconv.Itoa(line)
		})
	}
	return out
}

func TestParseAgentErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		doc  string
		env  map[string]string
		want []string // each must appear; {TEXT} is the line of TEXT in doc
		kind error
	}{
		{
			name: "valid",
			doc:  validAgent,
		},
		{
			name: "unknown key in a target names file, line and full key",
			doc:  edit(validAgent, `address = "10.0.0.5`, `adress = "10.0.0.5`),
			want: []string{`tunnel-agent.toml:{adress}: unknown key "targets[1].adress" (did you mean "address"?)`},
			kind: ErrUnknownKey,
		},
		{
			name: "unknown keys are all reported",
			doc:  edit(edit(validAgent, "[agent]\n", "[agent]\nnmae = \"x\"\n"), "[server]\n", "[server]\nport = 7443\n"),
			want: []string{
				`tunnel-agent.toml:{port}: unknown key "server.port"`,
				`tunnel-agent.toml:{nmae}: unknown key "agent.nmae" (did you mean "name"?)`,
			},
			kind: ErrUnknownKey,
		},
		{
			name: "unknown table is reported once",
			doc:  validAgent + "\n[routes]\nfoo = 1\n[routes.bar]\nx = 2\n",
			want: []string{`tunnel-agent.toml:{[routes]}: unknown table "routes"`},
			kind: ErrUnknownKey,
		},
		{
			name: "keys are case sensitive",
			doc:  edit(validAgent, `name = "acme-bastion"`, `Name = "acme-bastion"`),
			want: []string{`tunnel-agent.toml:{Name}: unknown key "agent.Name" (did you mean "name"?)`},
			kind: ErrUnknownKey,
		},
		{
			name: "syntax error names line and column",
			doc:  edit(validAgent, `name = "acme-bastion"`, `name = "acme-bastion`),
			want: []string{`tunnel-agent.toml:{name = "acme-bastion}:21: invalid TOML: basic strings cannot have new lines`},
			kind: ErrSyntax,
		},
		{
			name: "duplicate key is a syntax error",
			doc:  edit(validAgent, "[agent]\n", "[agent]\nname = \"x\"\n"),
			want: []string{`tunnel-agent.toml:`, `invalid TOML: key name is already defined`},
			kind: ErrSyntax,
		},
		{
			name: "empty file reports every missing key at once",
			doc:  "",
			want: []string{
				"tunnel-agent.toml: server.address: missing",
				"tunnel-agent.toml: agent.name: missing",
				"tunnel-agent.toml: agent.key: missing",
			},
			kind: ErrInvalid,
		},
		{
			name: "missing agent name",
			doc:  edit(validAgent, `name = "acme-bastion"`, ``),
			want: []string{"tunnel-agent.toml: agent.name: missing"},
			kind: ErrInvalid,
		},
		{
			name: "empty agent name",
			doc:  edit(validAgent, `name = "acme-bastion"`, `name = ""`),
			want: []string{"tunnel-agent.toml:{name = \"\"}: agent.name: missing"},
		},
		{
			name: "missing agent key",
			doc:  edit(validAgent, "key = \"\"\"\n"+testKeyPEM+`"""`, ``),
			want: []string{"tunnel-agent.toml: agent.key: missing"},
		},
		{
			name: "agent key not PEM, value not shown",
			doc:  edit(validAgent, "key = \"\"\"\n"+testKeyPEM+`"""`, `key = "`+testKeyBody+`"`),
			want: []string{"tunnel-agent.toml:{key = }: agent.key: not a PEM private key"},
		},
		{
			name: "agent key of the wrong type",
			doc:  edit(validAgent, "key = \"\"\"\n"+testKeyPEM+`"""`, `key = 12`),
			want: []string{"tunnel-agent.toml:{key = }: agent.key: want a string, got an integer"},
		},
		{
			name: "missing server address",
			doc:  edit(validAgent, `address = "tunnel.example.com:7443"`, ``),
			want: []string{"tunnel-agent.toml: server.address: missing"},
		},
		{
			name: "server address port out of range",
			doc:  edit(validAgent, `address = "tunnel.example.com:7443"`, `address = "x:99999"`),
			want: []string{`tunnel-agent.toml:{x:99999}: server.address "x:99999": invalid port`},
			kind: ErrInvalid,
		},
		{
			name: "server address without port",
			doc:  edit(validAgent, `address = "tunnel.example.com:7443"`, `address = "tunnel.example.com"`),
			want: []string{`server.address "tunnel.example.com": missing port`},
		},
		{
			name: "CA that is not PEM",
			doc:  edit(validAgent, testCAPEM, "not a certificate\n"),
			want: []string{`tunnel-agent.toml:{ca = }: server.ca: no PEM certificate found`},
		},
		{
			name: "CA that does not parse",
			doc:  edit(validAgent, testCAPEM, "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"),
			want: []string{`server.ca: certificate 1: x509:`},
		},
		{
			name: "transport unknown",
			doc:  edit(validAgent, "[agent]", "transport = \"udp\"\n\n[agent]"),
			want: []string{`tunnel-agent.toml:{transport}: server.transport "udp": unknown transport (use "auto", "tls" or "quic")`},
			kind: ErrInvalid,
		},
		{
			name: "transport quic",
			doc:  edit(validAgent, "[agent]", "transport = \"quic\"\n\n[agent]"),
		},
		{
			name: "transport auto",
			doc:  edit(validAgent, "[agent]", "transport = \"auto\"\n\n[agent]"),
		},
		{
			name: "transport tls",
			doc:  edit(validAgent, "[agent]", "transport = \"tls\"\n\n[agent]"),
		},
		{
			name: "invalid agent name",
			doc:  edit(validAgent, `name = "acme-bastion"`, `name = "acme bastion"`),
			want: []string{`agent.name "acme bastion": invalid name`},
		},
		{
			name: "agent name too long",
			doc:  edit(validAgent, `name = "acme-bastion"`, `name = "`+strings.Repeat("a", 64)+`"`),
			want: []string{`invalid name: longer than 63 characters`},
		},
		{
			name: "bad duration names the value",
			doc:  edit(validAgent, "\n\n[[targets]]", "\ndial_timeout = \"10x\"\n\n[[targets]]"),
			want: []string{`tunnel-agent.toml:{dial_timeout}: agent.dial_timeout: invalid duration "10x"`},
			kind: ErrInvalid,
		},
		{
			name: "duration as a bare number",
			doc:  edit(validAgent, "\n\n[[targets]]", "\nhandshake_timeout = 10\n\n[[targets]]"),
			want: []string{`tunnel-agent.toml:{handshake_timeout}: agent.handshake_timeout: want a duration string like "10s", got an integer`},
		},
		{
			name: "negative duration",
			doc:  edit(validAgent, "\n\n[[targets]]", "\ndial_timeout = \"-1s\"\n\n[[targets]]"),
			want: []string{`agent.dial_timeout (-1s): must not be negative`},
		},
		{
			name: "negative half-close timeout",
			doc:  edit(validAgent, "\n\n[[targets]]", "\nhalf_close_timeout = \"-5s\"\n\n[[targets]]"),
			want: []string{`agent.half_close_timeout (-5s): must not be negative`},
		},
		{
			name: "header size out of bounds",
			doc:  edit(validAgent, "\n\n[[targets]]", "\nmax_header_size = 100\n\n[[targets]]"),
			want: []string{`agent.max_header_size (100): must be from 2048 to 65535 bytes`},
		},
		{
			name: "max sessions of the wrong type",
			doc:  edit(validAgent, "\n\n[[targets]]", "\nmax_sessions = \"many\"\n\n[[targets]]"),
			want: []string{`tunnel-agent.toml:{max_sessions}: agent.max_sessions: want an integer, got a string`},
		},
		{
			name: "negative max sessions",
			doc:  edit(validAgent, "\n\n[[targets]]", "\nmax_sessions = -1\n\n[[targets]]"),
			want: []string{`tunnel-agent.toml:{max_sessions}: agent.max_sessions (-1): must not be negative (0 means the default, 10000)`},
		},
		{
			name: "metrics listen without host",
			doc:  edit(validAgent, "\n\n[[targets]]", "\nmetrics_listen = \":9102\"\n\n[[targets]]"),
			want: []string{`tunnel-agent.toml:{metrics_listen}: agent.metrics_listen ":9102": missing host (want host:port)`},
			kind: ErrInvalid,
		},
		{
			name: "metrics listen without port",
			doc:  edit(validAgent, "\n\n[[targets]]", "\nmetrics_listen = \"127.0.0.1\"\n\n[[targets]]"),
			want: []string{`agent.metrics_listen "127.0.0.1": missing port (want host:port)`},
		},
		{
			name: "metrics listen on loopback",
			doc:  edit(validAgent, "\n\n[[targets]]", "\nmetrics_listen = \"127.0.0.1:9102\"\n\n[[targets]]"),
		},
		{
			name: "target address without port",
			doc:  edit(validAgent, `"10.0.0.5:5432"`, `"db"`),
			want: []string{`tunnel-agent.toml:{"db"}: targets[1].address "db": missing port`},
		},
		{
			name: "target address without host",
			doc:  edit(validAgent, `"10.0.0.5:5432"`, `":5432"`),
			want: []string{`targets[1].address ":5432": missing host`},
		},
		{
			name: "target address with a named port",
			doc:  edit(validAgent, `"10.0.0.5:5432"`, `"db:postgresql"`),
			want: []string{`targets[1].address "db:postgresql": invalid port`},
		},
		{
			name: "target address with port 0",
			doc:  edit(validAgent, `"10.0.0.5:5432"`, `"db:0"`),
			want: []string{`targets[1].address "db:0": invalid port`},
		},
		{
			name: "target IPv6 address without brackets",
			doc:  edit(validAgent, `"10.0.0.5:5432"`, `"fd00::5:5432"`),
			want: []string{`targets[1].address "fd00::5:5432": invalid address (write an IPv6 address in brackets`},
		},
		{
			name: "target IPv6 address",
			doc:  edit(validAgent, `"10.0.0.5:5432"`, `"[fd00::5]:5432"`),
		},
		{
			name: "target without address points at its block",
			doc:  validAgent + "\n[[targets]]\nname = \"lake\"\n",
			want: []string{`tunnel-agent.toml:{name = "lake"-1}: targets[2].address: missing`},
		},
		{
			name: "target without name",
			doc:  validAgent + "\n[[targets]]\naddress = \"10.0.0.6:5432\"\n",
			want: []string{`targets[2].name: missing`},
		},
		{
			name: "invalid target name",
			doc:  edit(validAgent, `name = "warehouse"`, `name = "_warehouse"`),
			want: []string{`targets[1].name "_warehouse": invalid name: must start with a letter or digit`},
		},
		{
			name: "duplicate target",
			doc:  validAgent + "\n[[targets]]\nname = \"lake\"\naddress = \"10.0.0.6:5432\"\n\n[[targets]]\nname = \"warehouse\"\naddress = \"10.0.0.7:5432\"\n",
			want: []string{`tunnel-agent.toml:{10.0.0.7-1}: targets[3].name "warehouse": duplicate (also targets[1])`},
		},
		{
			name: "no targets is fine",
			doc:  validAgent[:strings.Index(validAgent, "[[targets]]")],
		},
		{
			name: "targets as an inline array",
			doc: `targets = [{ name = "a", address = "h:1" }, { name = "b", address = "h:2" }]` + "\n" +
				validAgent[:strings.Index(validAgent, "[[targets]]")],
		},
		{
			name: "inline array of targets is checked too",
			doc: `targets = [{ name = "a", adress = "h:1" }, "b"]` + "\n" +
				validAgent[:strings.Index(validAgent, "[[targets]]")],
			want: []string{
				`tunnel-agent.toml:1: unknown key "targets[1].adress"`,
				`tunnel-agent.toml:1: targets[2]: want a table, got a string`,
			},
		},
		{
			name: "single-bracket targets table",
			doc:  edit(validAgent, "[[targets]]", "[targets]"),
			want: []string{`tunnel-agent.toml:{[targets]}: targets is a list: write [[targets]] (two brackets) for each entry, not [targets]`},
			kind: ErrInvalid,
		},
		{
			name: "section of the wrong type",
			doc:  "agent = 5\n" + validAgent[strings.Index(validAgent, "[[targets]]"):],
			want: []string{`tunnel-agent.toml:1: agent: want a table, got an integer`},
		},
		{
			name: "target TLS modes",
			doc: validAgent + "proxy_protocol = true\ntls = \"require\"\n" +
				"\n[[targets]]\nname = \"b\"\naddress = \"h:2\"\ntls = \"verify-ca\"\ntls_ca = \"\"\"\n" + testCAPEM + "\"\"\"\n" +
				"\n[[targets]]\nname = \"c\"\naddress = \"h:3\"\ntls = \"verify-full\"\n" +
				"\n[[targets]]\nname = \"d\"\naddress = \"h:4\"\ntls = \"verify-full\"\ntls_server_name = \"db.internal\"\ntls_ca = \"\"\"\n" + testCAPEM + "\"\"\"\n" +
				"\n[[targets]]\nname = \"e\"\naddress = \"h:5\"\ntls = \"disable\"\nproxy_protocol = false\n",
		},
		{
			name: "target TLS mode unknown",
			doc:  validAgent + "tls = \"verfy-full\"\n",
			want: []string{`tunnel-agent.toml:{verfy}: targets[1].tls "verfy-full": unknown mode (use "disable", "require", "verify-ca" or "verify-full")`},
			kind: ErrInvalid,
		},
		{
			name: "target TLS mode is case sensitive",
			doc:  validAgent + "tls = \"Require\"\n",
			want: []string{`targets[1].tls "Require": unknown mode`},
		},
		{
			name: "target tls_ca without TLS has no effect",
			doc:  validAgent + "tls_ca = \"\"\"\n" + testCAPEM + "\"\"\"\n",
			want: []string{`tunnel-agent.toml:{tls_ca}: targets[1].tls_ca: has no effect with tls = "disable" (set tls = "verify-ca" or "verify-full" to check the database's certificate against it)`},
		},
		{
			name: "target tls_ca with require has no effect",
			doc:  validAgent + "tls = \"require\"\ntls_ca = \"\"\"\n" + testCAPEM + "\"\"\"\n",
			want: []string{`targets[1].tls_ca: has no effect with tls = "require"`},
		},
		{
			name: "target tls_server_name without TLS has no effect",
			doc:  validAgent + "tls = \"disable\"\ntls_server_name = \"db.internal\"\n",
			want: []string{`tunnel-agent.toml:{tls_server_name}: targets[1].tls_server_name "db.internal": has no effect with tls = "disable" (only "verify-full" checks the name)`},
		},
		{
			name: "target tls_server_name with verify-ca has no effect",
			doc:  validAgent + "tls = \"verify-ca\"\ntls_server_name = \"db.internal\"\ntls_ca = \"\"\"\n" + testCAPEM + "\"\"\"\n",
			want: []string{`targets[1].tls_server_name "db.internal": has no effect with tls = "verify-ca" (only "verify-full" checks the name)`},
		},
		{
			name: "target verify-ca without tls_ca",
			doc:  validAgent + "tls = \"verify-ca\"\n",
			want: []string{`tunnel-agent.toml:{name = "warehouse"-1}: targets[1].tls_ca: missing: tls = "verify-ca" checks`},
		},
		{
			name: "target tls_ca that is not PEM",
			doc:  validAgent + "tls = \"verify-full\"\ntls_ca = \"not a certificate\"\n",
			want: []string{`tunnel-agent.toml:{tls_ca}: targets[1].tls_ca: no PEM certificate found`},
		},
		{
			name: "target tls_ca that does not parse",
			doc:  validAgent + "tls = \"verify-ca\"\ntls_ca = \"\"\"\n-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n\"\"\"\n",
			want: []string{`targets[1].tls_ca: certificate 1: x509:`},
		},
		{
			name: "target tls_server_name with a port",
			doc:  validAgent + "tls = \"verify-full\"\ntls_server_name = \"db.internal:5432\"\n",
			want: []string{`targets[1].tls_server_name "db.internal:5432": invalid name (want a host name or IP address, without a port)`},
		},
		{
			name: "target tls_server_name as an IPv6 address",
			doc:  validAgent + "tls = \"verify-full\"\ntls_server_name = \"fd00::5\"\n",
		},
		{
			name: "target proxy_protocol of the wrong type",
			doc:  validAgent + "proxy_protocol = \"yes\"\n",
			want: []string{`tunnel-agent.toml:{proxy_protocol}: targets[1].proxy_protocol: want true or false, got a string`},
		},
		{
			name: "target tls keys are reported per target",
			doc:  validAgent + "\n[[targets]]\nname = \"lake\"\naddress = \"10.0.0.6:5432\"\ntls = \"verify\"\n",
			want: []string{`tunnel-agent.toml:{"verify"}: targets[2].tls "verify": unknown mode`},
		},
		{
			name: "env overrides a key",
			doc:  edit(validAgent, `name = "acme-bastion"`, ``),
			env:  map[string]string{"TUNNEL_AGENT_AGENT_NAME": "from-env"},
		},
		{
			name: "env supplies the key",
			doc:  edit(validAgent, "key = \"\"\"\n"+testKeyPEM+`"""`, ``),
			env:  map[string]string{"TUNNEL_AGENT_AGENT_KEY": testKeyPEM},
		},
		{
			name: "bad env integer names the variable",
			doc:  validAgent,
			env:  map[string]string{"TUNNEL_AGENT_AGENT_MAX_SESSIONS": "ten"},
			want: []string{`TUNNEL_AGENT_AGENT_MAX_SESSIONS: agent.max_sessions "ten": not an integer`},
			kind: ErrInvalid,
		},
		{
			name: "bad env duration names the variable",
			doc:  validAgent,
			env:  map[string]string{"TUNNEL_AGENT_AGENT_DIAL_TIMEOUT": "soon"},
			want: []string{`TUNNEL_AGENT_AGENT_DIAL_TIMEOUT: agent.dial_timeout: invalid duration "soon"`},
		},
		{
			name: "invalid env value is blamed on the variable, not the file",
			doc:  validAgent,
			env:  map[string]string{"TUNNEL_AGENT_SERVER_ADDRESS": "x"},
			want: []string{`TUNNEL_AGENT_SERVER_ADDRESS: server.address "x": missing port`},
		},
		{
			name: "bad env key never shows the value",
			doc:  validAgent,
			env:  map[string]string{"TUNNEL_AGENT_AGENT_KEY": testKeyBody},
			want: []string{`TUNNEL_AGENT_AGENT_KEY: agent.key: not a PEM private key`},
		},
		{
			name: "env transport unknown",
			doc:  validAgent,
			env:  map[string]string{"TUNNEL_AGENT_SERVER_TRANSPORT": "tcp"},
			want: []string{`TUNNEL_AGENT_SERVER_TRANSPORT: server.transport "tcp": unknown transport (use "auto", "tls" or "quic")`},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c, err := ParseAgent(AgentFile, []byte(tt.doc), envMap(tt.env))
			var kinds []error
			if tt.kind != nil {
				kinds = append(kinds, tt.kind)
			}
			checkErr(t, err, expand(t, tt.doc, tt.want), kinds...)
			if err == nil {
				if c == nil {
					t.Fatal("nil config without an error")
				}
				if verr := c.Validate(); verr != nil {
					t.Errorf("loaded config does not validate: %v", verr)
				}
			} else if c != nil {
				t.Error("config returned with an error")
			}
		})
	}
}

func TestParseAgentValues(t *testing.T) {
	t.Parallel()
	doc := validAgent + "\n[[targets]]\nname = \"lake\"\naddress = \"[fd00::6]:9000\"\n"

	t.Run("defaults", func(t *testing.T) {
		t.Parallel()
		c, err := ParseAgent("dir/"+AgentFile, []byte(doc), nil)
		if err != nil {
			t.Fatal(err)
		}
		want := Agent{
			Server: AgentServer{
				Address:    "tunnel.example.com:7443",
				CA:         testCAPEM,
				ServerName: "tunnel.example.com",
				Transport:  "auto",
			},
			Agent: AgentSelf{
				Name:             "acme-bastion",
				Key:              Secret(testKeyPEM),
				MaxSessions:      10000,
				DialTimeout:      Duration{10 * time.Second},
				HandshakeTimeout: Duration{10 * time.Second},
				HalfCloseTimeout: Duration{30 * time.Second},
				DrainTimeout:     Duration{30 * time.Second},
				MaxHeaderSize:    4096,
			},
			Targets: []Target{
				{Name: "warehouse", Address: "10.0.0.5:5432", TLS: "disable"},
				{Name: "lake", Address: "[fd00::6]:9000", TLS: "disable"},
			},
			Path: "dir/" + AgentFile,
		}
		if !reflect.DeepEqual(*c, want) {
			t.Errorf("got  %+v\nwant %+v", *c, want)
		}
		if c.Agent.Key.Reveal() != testKeyPEM {
			t.Error("the key does not round-trip")
		}
		if tg, ok := c.Target("lake"); !ok || tg.Address != "[fd00::6]:9000" {
			t.Errorf("Target(lake) = %v, %v", tg, ok)
		}
		if _, ok := c.Target("nope"); ok {
			t.Error("Target(nope) found")
		}
	})

	t.Run("file values", func(t *testing.T) {
		t.Parallel()
		d := edit(doc, "[agent]\n", "server_name = \"tunnel.internal\"\ntransport = \"tls\"\n\n[agent]\n"+
			"max_sessions = 50\ndial_timeout = \"2s\"\nhandshake_timeout = \"1m30s\"\n")
		c, err := ParseAgent(AgentFile, []byte(d), nil)
		if err != nil {
			t.Fatal(err)
		}
		if c.Server.ServerName != "tunnel.internal" || c.Agent.MaxSessions != 50 ||
			c.Agent.DialTimeout.Duration != 2*time.Second || c.Agent.HandshakeTimeout.Duration != 90*time.Second {
			t.Errorf("got %+v", c)
		}
	})

	t.Run("target options", func(t *testing.T) {
		t.Parallel()
		d := doc + "proxy_protocol = true\ntls = \"verify-full\"\ntls_ca = \"\"\"\n" + testCAPEM + "\"\"\"\n" +
			"\n[[targets]]\nname = \"named\"\naddress = \"10.0.0.7:5432\"\ntls = \"verify-full\"\ntls_server_name = \"db.internal\"\n"
		c, err := ParseAgent(AgentFile, []byte(d), nil)
		if err != nil {
			t.Fatal(err)
		}
		want := []Target{
			{Name: "warehouse", Address: "10.0.0.5:5432", TLS: "disable"},
			// The server name defaults to the host of the address, for
			// verify-full, the only mode that checks it.
			{Name: "lake", Address: "[fd00::6]:9000", ProxyProtocol: true, TLS: "verify-full", TLSCA: testCAPEM, TLSServerName: "fd00::6"},
			{Name: "named", Address: "10.0.0.7:5432", TLS: "verify-full", TLSServerName: "db.internal"},
		}
		if !reflect.DeepEqual(c.Targets, want) {
			t.Errorf("got  %+v\nwant %+v", c.Targets, want)
		}
	})

	t.Run("env overrides", func(t *testing.T) {
		t.Parallel()
		env := map[string]string{
			"TUNNEL_AGENT_SERVER_ADDRESS":          "other.example.com:443",
			"TUNNEL_AGENT_SERVER_SERVER_NAME":      "name.example.com",
			"TUNNEL_AGENT_SERVER_TRANSPORT":        "tls",
			"TUNNEL_AGENT_AGENT_NAME":              "env-agent",
			"TUNNEL_AGENT_AGENT_MAX_SESSIONS":      "7",
			"TUNNEL_AGENT_AGENT_DIAL_TIMEOUT":      "3s",
			"TUNNEL_AGENT_AGENT_HANDSHAKE_TIMEOUT": "4s",
			"TUNNEL_AGENT_SERVER_CA":               "", // empty is unset: the file's CA stays
		}
		c, err := ParseAgent(AgentFile, []byte(doc), envMap(env))
		if err != nil {
			t.Fatal(err)
		}
		got := fmt.Sprintf("%s %s %s %d %v %v %v", c.Server.Address, c.Server.ServerName, c.Agent.Name,
			c.Agent.MaxSessions, c.Agent.DialTimeout, c.Agent.HandshakeTimeout, c.Server.CA == testCAPEM)
		want := "other.example.com:443 name.example.com env-agent 7 3s 4s true"
		if got != want {
			t.Errorf("got  %s\nwant %s", got, want)
		}
	})

	t.Run("server name defaults to the host of the env address", func(t *testing.T) {
		t.Parallel()
		env := map[string]string{"TUNNEL_AGENT_SERVER_ADDRESS": "[2001:db8::1]:7443"}
		c, err := ParseAgent(AgentFile, []byte(doc), envMap(env))
		if err != nil {
			t.Fatal(err)
		}
		if c.Server.ServerName != "2001:db8::1" {
			t.Errorf("server name %q", c.Server.ServerName)
		}
	})
}

func TestAgentValidate(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		cfg  Agent
		want []string
	}{
		{
			name: "zero optional fields are valid",
			cfg: Agent{
				Server: AgentServer{Address: "h:1"},
				Agent:  AgentSelf{Name: "a", Key: Secret(testKeyPEM)},
			},
		},
		{
			name: "defaults are valid",
			cfg: func() Agent {
				c := DefaultAgent()
				c.Server.Address, c.Agent.Name, c.Agent.Key = "h:1", "a", Secret(testKeyPEM)
				return c
			}(),
		},
		{
			name: "no file prefix without a file",
			cfg:  Agent{},
			want: []string{"server.address: missing\nagent.name: missing\nagent.key: missing"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			checkErr(t, tt.cfg.Validate(), tt.want, nil...)
		})
	}
}

func TestDefaultAgent(t *testing.T) {
	t.Parallel()
	c := DefaultAgent()
	if c.Server.Transport != "auto" || c.Agent.MaxSessions != 10000 ||
		c.Agent.DialTimeout.Duration != 10*time.Second || c.Agent.HandshakeTimeout.Duration != 10*time.Second {
		t.Errorf("DefaultAgent() = %+v", c)
	}
}

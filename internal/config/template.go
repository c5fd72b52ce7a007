package config

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"strings"
	"text/template"
	"time"
)

// AgentTemplate is what `tunnel-server agent add` puts in a new agent
// config. Formatting it (fmt, JSON, slog) never shows KeyPEM.
type AgentTemplate struct {
	// Agent is the agent's name. Required.
	Agent string
	// ServerAddress is the host:port the agent dials: the server's
	// public_address. Required.
	ServerAddress string
	// CAPEM is the PEM of the CA the agent pins. Empty means the system
	// roots.
	CAPEM string
	// KeyPEM is the agent's private key, PEM. Required. Secret.
	KeyPEM string
	// Created is when the agent was added, noted in a comment; the zero
	// time leaves the date out.
	Created time.Time
	// WrittenBy names the command that wrote the file, in that comment;
	// empty means "tunnel-server agent add".
	WrittenBy string
}

// agentTemplateView is an AgentTemplate with its key redacted, for
// formatting.
type agentTemplateView struct {
	Agent, ServerAddress, CAPEM string
	KeyPEM                      Secret
	Created                     time.Time
	WrittenBy                   string
}

func (t AgentTemplate) redacted() agentTemplateView {
	return agentTemplateView{t.Agent, t.ServerAddress, t.CAPEM, Secret(t.KeyPEM), t.Created, t.WrittenBy}
}

// Format formats t for every fmt verb with KeyPEM redacted.
func (t AgentTemplate) Format(f fmt.State, verb rune) {
	fmt.Fprintf(f, fmt.FormatString(f, verb), t.redacted())
}

// MarshalJSON encodes t with KeyPEM redacted.
func (t AgentTemplate) MarshalJSON() ([]byte, error) { return json.Marshal(t.redacted()) }

// LogValue logs t with KeyPEM redacted.
func (t AgentTemplate) LogValue() slog.Value {
	return slog.GroupValue(
		slog.String("agent", t.Agent),
		slog.String("server_address", t.ServerAddress),
		slog.Bool("ca", t.CAPEM != ""),
		slog.Any("key", Secret(t.KeyPEM)),
		slog.Time("created", t.Created),
	)
}

// RenderAgent returns a commented, ready-to-run agent config for t, with
// no targets: the user adds them. The result loads with ParseAgent.
func RenderAgent(t AgentTemplate) ([]byte, error) {
	var errs []*Error
	check := func(field, shown, reason string) {
		if reason != "" {
			errs = append(errs, invalid(field, shown, reason))
		}
	}
	check("agent name", quoteNonEmpty(t.Agent), checkName(t.Agent))
	check("server address", quoteNonEmpty(t.ServerAddress), checkAddress(t.ServerAddress, dialAddr))
	if t.CAPEM != "" {
		check("CA", "", checkCertificatesPEM(t.CAPEM))
	}
	check("agent key", "", checkPrivateKeyPEM(t.KeyPEM))
	if err := joinErrors(errs); err != nil {
		return nil, fmt.Errorf("render agent config: %w", err)
	}
	if t.WrittenBy == "" {
		t.WrittenBy = "tunnel-server agent add"
	}
	data := struct {
		AgentTemplate
		Defaults  Agent
		TargetTLS string
	}{t, DefaultAgent(), TargetTLSDisable}
	return render(agentTemplate, data, func(b []byte) error {
		_, err := ParseAgent(AgentFile, b, nil)
		return err
	})
}

// WriteAgentFile writes RenderAgent(t) to a new file at path with mode
// 0600. It refuses to overwrite an existing file.
func WriteAgentFile(path string, t AgentTemplate) error {
	data, err := RenderAgent(t)
	if err != nil {
		return err
	}
	return writeNew(path, data)
}

// ServerTemplate is what `tunnel-server init` puts in a new server
// config. The certificate, key, CA and admin token files get their
// standard names next to the config.
type ServerTemplate struct {
	// Listen is where agents connect. Empty means DefaultListen.
	Listen string
	// PublicAddress is the host:port agents reach the server at. Required.
	PublicAddress string
	// AdminListen is where the admin API listens. Empty means
	// DefaultAdminListen.
	AdminListen string
	// Database is the registry database's path, relative to the config's
	// directory unless absolute. Empty means DefaultDatabase.
	Database string
}

// File names `tunnel-server init` writes next to the server config.
const (
	ServerCertFile = "server.crt"
	ServerKeyFile  = "server.key"
	CAFile         = "ca.crt"
	TokenFile      = "admin.token"
)

// RenderServer returns a commented server config for t, with the [limits]
// section present but commented out at its defaults. The result loads with
// ParseServer.
func RenderServer(t ServerTemplate) ([]byte, error) {
	setDefault(&t.Listen, DefaultListen)
	setDefault(&t.AdminListen, DefaultAdminListen)
	setDefault(&t.Database, DefaultDatabase)
	data := struct {
		ServerTemplate
		Cert, Key, CA, TokenFile string
		Limits                   Limits
		MinHeader, MaxHeader     int
	}{t, ServerCertFile, ServerKeyFile, CAFile, TokenFile, DefaultServer().Limits,
		MinHeaderSizeLimit, MaxHeaderSizeLimit}
	return render(serverTemplate, data, func(b []byte) error {
		_, err := ParseServer(ServerFile, b, nil)
		return err
	})
}

// WriteServerFile writes RenderServer(t) to a new file at path with mode
// 0600. It refuses to overwrite an existing file.
func WriteServerFile(path string, t ServerTemplate) error {
	data, err := RenderServer(t)
	if err != nil {
		return err
	}
	return writeNew(path, data)
}

// render executes tmpl and checks that the result loads.
func render(tmpl *template.Template, data any, load func([]byte) error) ([]byte, error) {
	var b bytes.Buffer
	if err := tmpl.Execute(&b, data); err != nil {
		return nil, fmt.Errorf("render %s: %w", tmpl.Name(), err)
	}
	if err := load(b.Bytes()); err != nil {
		return nil, fmt.Errorf("render %s: the result does not load: %w", tmpl.Name(), err)
	}
	return b.Bytes(), nil
}

// writeNew creates path with mode 0600 and writes data to it, refusing to
// replace an existing file. A partly written file is removed.
func writeNew(path string, data []byte) error {
	f, err := CreateFile(path)
	if err != nil {
		return err
	}
	return f.Write(data)
}

// NewFile is a config file created empty, mode 0600, for contents known
// only later: `tunnel-agent enroll` makes sure it can write its file before
// it spends its one-time token. Write or Remove it.
type NewFile struct {
	f    *os.File
	path string
}

// CreateFile creates path, empty, with mode 0600, refusing to replace an
// existing file.
func CreateFile(path string) (*NewFile, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, fs.ErrExist) {
		return nil, fmt.Errorf("write %s: refusing to overwrite an existing file (remove it or write elsewhere): %w", path, fs.ErrExist)
	}
	if err != nil {
		return nil, fmt.Errorf("write config: %w", err)
	}
	// The umask may have cleared bits; make the mode exactly 0600.
	if err := f.Chmod(0o600); err != nil {
		f.Close()
		os.Remove(path)
		return nil, fmt.Errorf("write config: %w", err)
	}
	return &NewFile{f: f, path: path}, nil
}

// Write writes data to the file, syncs and closes it. On failure the file
// is removed.
func (n *NewFile) Write(data []byte) (err error) {
	defer func() {
		if cerr := n.f.Close(); err == nil && cerr != nil {
			err = fmt.Errorf("write config: %w", cerr)
		}
		if err != nil {
			os.Remove(n.path)
		}
	}()
	if _, err := n.f.Write(data); err != nil {
		return fmt.Errorf("write config: %w", err)
	}
	if err := n.f.Sync(); err != nil {
		return fmt.Errorf("write config: %w", err)
	}
	return nil
}

// Remove closes and removes the file.
func (n *NewFile) Remove() {
	n.f.Close()
	os.Remove(n.path)
}

// tomlString quotes s as a TOML basic string.
func tomlString(s string) string { return `"` + tomlEscape(s, false) + `"` }

// tomlMultiline writes s as a TOML multi-line basic string that decodes to
// exactly s; the newline after the opening quotes is not part of it.
func tomlMultiline(s string) string { return "\"\"\"\n" + tomlEscape(s, true) + `"""` }

// tomlEscape escapes s for a TOML basic string; newlines stay literal when
// multiline is set.
func tomlEscape(s string, multiline bool) string {
	var b strings.Builder
	for _, r := range s {
		switch {
		case r == '\\':
			b.WriteString(`\\`)
		case r == '"':
			b.WriteString(`\"`)
		case r == '\n' && multiline:
			b.WriteByte('\n')
		case r == '\n':
			b.WriteString(`\n`)
		case r == '\t':
			b.WriteString(`\t`)
		case r == '\r':
			b.WriteString(`\r`)
		case r < 0x20 || r == 0x7f:
			fmt.Fprintf(&b, `\u%04X`, r)
		default:
			b.WriteRune(r)
		}
	}
	return b.String()
}

var funcs = template.FuncMap{"toml": tomlString, "multiline": tomlMultiline}

var agentTemplate = template.Must(template.New(AgentFile).Funcs(funcs).Parse(`# tunnel-agent configuration for agent {{toml .Agent}}.
{{- if not .Created.IsZero}}
# Written by ` + "`{{.WrittenBy}}`" + ` on {{.Created.UTC.Format "2006-01-02 15:04:05 UTC"}}.
{{- end}}
#
# This file holds the agent's private key: keep it readable by the agent's
# user only (mode 0600) and never share it. The server keeps no copy of it.
#
# Keys of [server] and [agent] can be overridden from the environment as
# TUNNEL_AGENT_<SECTION>_<KEY>, e.g. TUNNEL_AGENT_SERVER_ADDRESS.
# Check this file with ` + "`tunnel-agent check`" + `, then start ` + "`tunnel-agent run`" + `.

[server]
# The tunnel server this agent dials out to. No inbound port is opened here.
address = {{toml .ServerAddress}}
{{- if .CAPEM}}
# The CA the server's certificate must chain to; nothing else is trusted.
ca = {{multiline .CAPEM}}
{{- else}}
# No CA pinned: the server's certificate must chain to the system roots.
# ca = """-----BEGIN CERTIFICATE-----..."""
{{- end}}
# "auto" tries QUIC (UDP, same port) and falls back to TLS over TCP when UDP
# is blocked, trying QUIC again later; "tls" or "quic" use only that one.
# transport = {{toml .Defaults.Server.Transport}}
# An HTTP proxy to reach the server through, with CONNECT (over TLS only: QUIC
# cannot pass one). Without this key HTTPS_PROXY and NO_PROXY apply; "direct"
# ignores them.
# proxy = "http://user:password@proxy.example.com:3128"

[agent]
name = {{toml .Agent}}
# The agent's credential. Secret.
key = {{multiline .KeyPEM}}
# The defaults; uncomment a line to change it.
# Sessions served at once:
# max_sessions = {{.Defaults.Agent.MaxSessions}}
# Bound on dialing a target:
# dial_timeout = {{toml .Defaults.Agent.DialTimeout.String}}
# Bound on connecting and authenticating to the server:
# handshake_timeout = {{toml .Defaults.Agent.HandshakeTimeout.String}}
# How long a session may stay half-closed:
# half_close_timeout = {{toml .Defaults.Agent.HalfCloseTimeout.String}}
# How long a stopping agent lets sessions in flight finish:
# drain_timeout = {{toml .Defaults.Agent.DrainTimeout.String}}
# Largest tunnel protocol message read, in bytes:
# max_header_size = {{.Defaults.Agent.MaxHeaderSize}}
# Prometheus metrics at http://ADDRESS/metrics, off by default. Anyone who
# can reach ADDRESS can read them: use loopback or a private interface.
# metrics_listen = "127.0.0.1:9102"

# Targets are the only addresses this agent will ever dial. A route on the
# server names a target of this agent, never an address: the agent dials
# nothing that is not listed here, so with no [[targets]] block it dials
# nothing at all. Add one block per database, for example:
#
# [[targets]]
# name = "warehouse"         # what routes refer to
# address = "10.0.0.5:5432"  # host:port dialed for that name
#
# Optional keys of a target:
# Send a PROXY protocol v2 header first, carrying the client's address, to a
# target (or a proxy in front of it) that expects one (default false):
# proxy_protocol = true
# PostgreSQL only, TLS from this agent to the database: {{toml .TargetTLS}} (the
# default), "require" (encrypt, check nothing), "verify-ca" (the certificate
# chains to tls_ca) or "verify-full" (and carries tls_server_name):
# tls = "verify-full"
# The CA the database's certificate must chain to; required for "verify-ca",
# and "verify-full" without it uses the system roots:
# tls_ca = """-----BEGIN CERTIFICATE-----..."""
# The name "verify-full" checks; the default is the host of address:
# tls_server_name = "db.internal"
`))

var serverTemplate = template.Must(template.New(ServerFile).Funcs(funcs).Parse(`# tunnel-server configuration, written by ` + "`tunnel-server init`" + `.
# Relative paths are relative to the directory of this file.
# Keys can be overridden from the environment as
# TUNNEL_SERVER_<SECTION>_<KEY>, e.g. TUNNEL_SERVER_ADMIN_LISTEN.

[server]
# Where agents connect: TLS 1.3 on this TCP port, QUIC on the same UDP port.
listen = {{toml .Listen}}
# The address agents reach this server at; ` + "`agent add`" + ` writes it into
# agent configs.
public_address = {{toml .PublicAddress}}
# The server's certificate and key, and the CA whose certificate agents pin.
cert = {{toml .Cert}}
key = {{toml .Key}}
ca = {{toml .CA}}
# The registry of agents and routes.
database = {{toml .Database}}

[admin]
# The management API of the agent, route and status commands. It listens
# only on loopback (127.0.0.1:7444, [::1]:7444) or a unix socket
# (unix:/run/tunnel-server/admin.sock), never beyond.
listen = {{toml .AdminListen}}
# The admin credential. Secret: keep it readable by the server's user only.
token_file = {{toml .TokenFile}}

[postgres]
# PostgreSQL routes (route add --protocol postgres) end the client's TLS here,
# with the server's certificate unless cert and key name another, typically
# one for *.domain. With domain set, a client connecting over TLS to
# ROUTE.domain reaches route ROUTE, so many routes can share one port.
# domain = "db.example.com"
# cert = "postgres.crt"
# key = "postgres.key"

[limits]
# The defaults; uncomment a line to change it.
# Bound on an agent's TLS handshake and authentication:
# handshake_timeout = {{toml .Limits.HandshakeTimeout.String}}
# How long a client connection waits for the agent to reach the target:
# open_timeout = {{toml .Limits.OpenTimeout.String}}
# Live sessions through one agent:
# max_sessions_per_agent = {{.Limits.MaxSessionsPerAgent}}
# Largest stream header or control message, in bytes ({{.MinHeader}} to {{.MaxHeader}}):
# max_header_size = {{.Limits.MaxHeaderSize}}
# How often the server pings each agent:
# heartbeat_interval = {{toml .Limits.HeartbeatInterval.String}}
# A tunnel silent this long is dead; more than heartbeat_interval:
# heartbeat_timeout = {{toml .Limits.HeartbeatTimeout.String}}
# How long a session may stay half-closed:
# half_close_timeout = {{toml .Limits.HalfCloseTimeout.String}}
# How long a stopping server lets sessions in flight finish:
# drain_timeout = {{toml .Limits.DrainTimeout.String}}
`))

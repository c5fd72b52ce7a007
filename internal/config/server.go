package config

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// ServerFile is the server config's file name, searched for by FindServer.
const ServerFile = "tunnel-server.toml"

// Defaults and bounds of the server config, applied to keys left at zero.
// The handshake timeout default is DefaultHandshakeTimeout, as for the
// agent.
const (
	DefaultListen              = ":7443"
	DefaultDatabase            = "tunnel.db"
	DefaultAdminListen         = "127.0.0.1:7444"
	DefaultOpenTimeout         = 15 * time.Second
	DefaultMaxSessionsPerAgent = 10000
	DefaultMaxHeaderSize       = 4096
	MinHeaderSizeLimit         = 2048  // smallest allowed limits.max_header_size: a Reply with its reason fits
	MaxHeaderSizeLimit         = 65535 // largest allowed limits.max_header_size: the framing's own limit
	DefaultHeartbeatInterval   = 5 * time.Second
	DefaultHeartbeatTimeout    = 15 * time.Second
	DefaultHalfCloseTimeout    = 30 * time.Second
	DefaultDrainTimeout        = 30 * time.Second
)

// unixPrefix marks an admin listen address that is a unix socket path.
const unixPrefix = "unix:"

// Server is the server's config, tunnel-server.toml. The zero value of
// every optional field means its default; ApplyDefaults fills them in.
//
// Relative file paths are relative to the config file's directory:
// ParseServer and LoadServer resolve them (ResolvePaths), so after loading
// every path field is absolute.
type Server struct {
	// Server is where agents connect and the files the server runs on.
	Server ServerSection `toml:"server"`
	// Admin is the management API used by the agent, route and status
	// commands.
	Admin AdminSection `toml:"admin"`
	// Postgres configures the PostgreSQL routes' front door.
	Postgres PostgresSection `toml:"postgres"`
	// Limits bounds time and resources per agent and session.
	Limits Limits `toml:"limits"`
	// Path is the file the config was loaded from (absolute after
	// LoadServer, the name given to ParseServer otherwise).
	Path string `toml:"-"`
}

// ServerSection is the [server] section of the server config.
type ServerSection struct {
	// Listen is the host:port agents connect to, over TCP (TLS) and UDP
	// (QUIC) alike. Empty means DefaultListen; an empty host means all
	// interfaces, port 0 a port free for both.
	Listen string `toml:"listen"`
	// PublicAddress is the host:port agents reach the server at, written
	// into agent configs by `agent add`. Required.
	PublicAddress string `toml:"public_address"`
	// Cert is the path of the server's TLS certificate (PEM). Required.
	Cert string `toml:"cert"`
	// Key is the path of the server certificate's private key (PEM); the
	// path, not the key. Required.
	Key string `toml:"key"`
	// CA is the path of the CA certificate (PEM) agents pin; `agent add`
	// copies it into agent configs. Required.
	CA string `toml:"ca"`
	// Database is the path of the registry database. Empty means
	// DefaultDatabase.
	Database string `toml:"database"`
}

// AdminSection is the [admin] section of the server config.
type AdminSection struct {
	// Listen is where the admin API listens: a loopback IP address with a
	// port (127.0.0.0/8 or ::1), or "unix:" followed by a socket path. The
	// admin API is never exposed beyond loopback. Empty means
	// DefaultAdminListen.
	Listen string `toml:"listen"`
	// TokenFile is the path of the file holding the admin credential.
	// Required.
	TokenFile string `toml:"token_file"`
}

// PostgresSection is the [postgres] section of the server config: how
// PostgreSQL clients connect to postgres routes.
type PostgresSection struct {
	// Domain is the DNS domain under which a client's TLS server name
	// picks its route: ROUTE.Domain reaches route ROUTE on a shared port.
	// Empty means server names pick no route.
	Domain string `toml:"domain"`
	// Cert is the path of the certificate (PEM, with its chain) that
	// PostgreSQL clients asking for TLS get, typically for *.Domain. Empty
	// means the server's own certificate, server.cert.
	Cert string `toml:"cert"`
	// Key is the path of Cert's private key. Set exactly when Cert is.
	Key string `toml:"key"`
}

// Limits is the [limits] section of the server config.
type Limits struct {
	// HandshakeTimeout bounds an agent's TLS handshake and authentication.
	// Zero means DefaultHandshakeTimeout.
	HandshakeTimeout Duration `toml:"handshake_timeout"`
	// OpenTimeout bounds how long a client connection waits for the agent
	// to reach the target. Zero means DefaultOpenTimeout.
	OpenTimeout Duration `toml:"open_timeout"`
	// MaxSessionsPerAgent bounds the live sessions through one agent. Zero
	// means DefaultMaxSessionsPerAgent.
	MaxSessionsPerAgent int `toml:"max_sessions_per_agent"`
	// MaxHeaderSize bounds a stream header or control message, in bytes,
	// from MinHeaderSizeLimit to MaxHeaderSizeLimit. Zero means
	// DefaultMaxHeaderSize.
	MaxHeaderSize int `toml:"max_header_size"`
	// HeartbeatInterval is how often the server pings each agent; the
	// server tells agents this value. Zero means DefaultHeartbeatInterval.
	HeartbeatInterval Duration `toml:"heartbeat_interval"`
	// HeartbeatTimeout is how long a connection on which nothing at all
	// has arrived lives before it is declared dead and its sessions closed,
	// on both sides (the server tells agents this value); greater than
	// HeartbeatInterval. Zero means DefaultHeartbeatTimeout.
	HeartbeatTimeout Duration `toml:"heartbeat_timeout"`
	// HalfCloseTimeout bounds how long a session may stay half-closed.
	// Zero means DefaultHalfCloseTimeout.
	HalfCloseTimeout Duration `toml:"half_close_timeout"`
	// DrainTimeout is how long a stopping server lets sessions in flight
	// finish before it closes them. Zero means DefaultDrainTimeout.
	DrainTimeout Duration `toml:"drain_timeout"`
}

// DefaultServer returns a server config with every default filled in and
// no required field set.
func DefaultServer() Server {
	var c Server
	c.ApplyDefaults()
	return c
}

// ApplyDefaults sets every optional field left at zero to its default.
func (c *Server) ApplyDefaults() {
	setDefault(&c.Server.Listen, DefaultListen)
	setDefault(&c.Server.Database, DefaultDatabase)
	setDefault(&c.Admin.Listen, DefaultAdminListen)
	l := &c.Limits
	setDefault(&l.HandshakeTimeout.Duration, DefaultHandshakeTimeout)
	setDefault(&l.OpenTimeout.Duration, DefaultOpenTimeout)
	setDefault(&l.MaxSessionsPerAgent, DefaultMaxSessionsPerAgent)
	setDefault(&l.MaxHeaderSize, DefaultMaxHeaderSize)
	setDefault(&l.HeartbeatInterval.Duration, DefaultHeartbeatInterval)
	setDefault(&l.HeartbeatTimeout.Duration, DefaultHeartbeatTimeout)
	setDefault(&l.HalfCloseTimeout.Duration, DefaultHalfCloseTimeout)
	setDefault(&l.DrainTimeout.Duration, DefaultDrainTimeout)
}

func setDefault[T comparable](v *T, def T) {
	var zero T
	if *v == zero {
		*v = def
	}
}

// ResolvePaths makes every relative file path in the config (cert, key,
// ca, database, token_file and a unix admin socket) relative to dir, which
// should be absolute: the directory of the config file.
func (c *Server) ResolvePaths(dir string) {
	for _, p := range []*string{&c.Server.Cert, &c.Server.Key, &c.Server.CA, &c.Server.Database, &c.Admin.TokenFile,
		&c.Postgres.Cert, &c.Postgres.Key} {
		*p = resolve(dir, *p)
	}
	if path, ok := strings.CutPrefix(c.Admin.Listen, unixPrefix); ok && path != "" {
		c.Admin.Listen = unixPrefix + resolve(dir, path)
	}
}

func resolve(dir, path string) string {
	if path == "" || filepath.IsAbs(path) {
		return path
	}
	return filepath.Join(dir, path)
}

// Network returns the network and address to listen on or dial for the
// admin API: ("unix", path) or ("tcp", host:port).
func (a AdminSection) Network() (network, address string) {
	listen := a.Listen
	if listen == "" {
		listen = DefaultAdminListen
	}
	if path, ok := strings.CutPrefix(listen, unixPrefix); ok {
		return "unix", path
	}
	return "tcp", listen
}

// Validate reports every problem with the config at once, joined; each is
// an *Error naming its key. Zero optional fields are valid (they mean the
// default).
func (c *Server) Validate() error { return joinErrors(c.validate()) }

func (c *Server) validate() []*Error {
	var errs []*Error
	check := func(key, shown, reason string) {
		if reason != "" {
			errs = append(errs, invalid(key, shown, reason))
		}
	}
	eff := *c
	eff.ApplyDefaults()
	s, a, l := &eff.Server, &eff.Admin, &eff.Limits

	check("server.listen", quote(s.Listen), checkAddress(s.Listen, listenAddr))
	check("server.public_address", quoteNonEmpty(s.PublicAddress), checkAddress(s.PublicAddress, dialAddr))
	check("server.cert", "", missing(s.Cert))
	check("server.key", "", missing(s.Key))
	check("server.ca", "", missing(s.CA))
	check("admin.listen", quote(a.Listen), checkAdminListen(a.Listen))
	check("admin.token_file", "", missing(a.TokenFile))
	pg := &eff.Postgres
	check("postgres.domain", quote(pg.Domain), checkDomain(pg.Domain))
	if (pg.Cert == "") != (pg.Key == "") {
		key, other := "postgres.key", "postgres.cert"
		if pg.Cert == "" {
			key, other = other, key
		}
		check(key, "", "missing: "+other+" is set, and the two go together")
	}

	duration := func(key string, v Duration, def time.Duration) {
		check(key, fmt.Sprintf("(%v)", v), negative(v.Duration < 0, def))
	}
	duration("limits.handshake_timeout", l.HandshakeTimeout, DefaultHandshakeTimeout)
	duration("limits.open_timeout", l.OpenTimeout, DefaultOpenTimeout)
	check("limits.max_sessions_per_agent", fmt.Sprintf("(%d)", l.MaxSessionsPerAgent),
		negative(l.MaxSessionsPerAgent < 0, DefaultMaxSessionsPerAgent))
	if n := l.MaxHeaderSize; n < MinHeaderSizeLimit || n > MaxHeaderSizeLimit {
		check("limits.max_header_size", fmt.Sprintf("(%d)", n), fmt.Sprintf(
			"must be from %d to %d bytes (0 means the default, %d)", MinHeaderSizeLimit, MaxHeaderSizeLimit, DefaultMaxHeaderSize))
	}
	duration("limits.heartbeat_interval", l.HeartbeatInterval, DefaultHeartbeatInterval)
	duration("limits.heartbeat_timeout", l.HeartbeatTimeout, DefaultHeartbeatTimeout)
	duration("limits.half_close_timeout", l.HalfCloseTimeout, DefaultHalfCloseTimeout)
	duration("limits.drain_timeout", l.DrainTimeout, DefaultDrainTimeout)
	if l.HeartbeatInterval.Duration > 0 && l.HeartbeatTimeout.Duration <= l.HeartbeatInterval.Duration {
		e := sentence("limits.heartbeat_timeout", ErrInvalid, fmt.Sprintf(
			"limits.heartbeat_timeout (%v) must be greater than limits.heartbeat_interval (%v)",
			l.HeartbeatTimeout, l.HeartbeatInterval))
		// When only the interval was set, point at its line.
		e.related = []string{"limits.heartbeat_interval"}
		errs = append(errs, e)
	}
	return errs
}

// checkDomain returns why domain cannot be a DNS domain for route names, or
// "".
func checkDomain(domain string) string {
	if domain == "" {
		return ""
	}
	d := strings.TrimSuffix(domain, ".")
	if strings.HasPrefix(d, ".") || strings.HasPrefix(d, "*") || strings.Contains(d, "..") || d == "" {
		return `must be a DNS domain such as "db.example.com" (no leading dot or "*.")`
	}
	for _, r := range d {
		if !(r == '.' || r == '-' || r >= '0' && r <= '9' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z') {
			return fmt.Sprintf("%q is not allowed in a DNS domain", r)
		}
	}
	return ""
}

// missing returns "missing" for an empty required value, or "".
func missing(s string) string {
	if s == "" {
		return "missing"
	}
	return ""
}

// LoadServer reads the server config at path, decodes it strictly, applies
// TUNNEL_SERVER_* environment overrides and defaults, validates it and
// resolves its relative paths against the file's directory.
func LoadServer(path string) (*Server, error) {
	data, abs, err := readFile(path)
	if err != nil {
		return nil, err
	}
	c, err := ParseServer(path, data, os.Getenv)
	if err != nil {
		return nil, err
	}
	c.Path = abs
	return c, nil
}

// ParseServer is LoadServer on data already read; name is the file name
// used in messages and stored in Path, and relative paths are resolved
// against its directory (made absolute from the working directory). env
// looks up environment variables; nil means no overrides.
func ParseServer(name string, data []byte, env func(string) string) (*Server, error) {
	var c Server
	idx, err := decode(name, data, &c)
	if err != nil {
		return nil, err
	}
	c.Path = name
	from, errs := applyEnv(&c, serverEnvPrefix, env)
	c.ApplyDefaults()
	errs = append(errs, c.validate()...)
	if len(errs) > 0 {
		return nil, locate(errs, name, idx, from)
	}
	c.ResolvePaths(absPath(filepath.Dir(name)))
	return &c, nil
}

package config

import (
	"fmt"
	"os"
	"time"
)

// AgentFile is the agent config's file name, searched for by FindAgent.
const AgentFile = "tunnel-agent.toml"

// Defaults of the agent config, applied to keys left at zero.
const (
	DefaultTransport        = TransportAuto
	DefaultMaxSessions      = 10000
	DefaultDialTimeout      = 10 * time.Second
	DefaultHandshakeTimeout = 10 * time.Second
)

// TLS modes of a target (the [[targets]] tls key), as libpq's sslmode
// values of the same names. They apply to PostgreSQL targets only: the
// agent asks for TLS with PostgreSQL's SSLRequest.
const (
	// TargetTLSDisable sends plain TCP. The default.
	TargetTLSDisable = "disable"
	// TargetTLSRequire encrypts without checking the database's
	// certificate.
	TargetTLSRequire = "require"
	// TargetTLSVerifyCA checks that the certificate chains to tls_ca,
	// whatever name it carries.
	TargetTLSVerifyCA = "verify-ca"
	// TargetTLSVerifyFull checks the chain and that the certificate
	// carries tls_server_name.
	TargetTLSVerifyFull = "verify-full"
)

// Transports the agent can use (the [server] transport key).
const (
	// TransportTLS is TLS 1.3 over TCP with yamux.
	TransportTLS = "tls"
	// TransportQUIC is QUIC over UDP, to the same port number.
	TransportQUIC = "quic"
	// TransportAuto tries QUIC first and falls back to TLS when UDP is
	// blocked or QUIC fails, trying QUIC again later.
	TransportAuto = "auto"
)

// Agent is the agent's config, tunnel-agent.toml. The zero value of every
// optional field means its default; ApplyDefaults fills them in.
type Agent struct {
	// Server says where and how the agent connects.
	Server AgentServer `toml:"server"`
	// Agent identifies this agent to the server.
	Agent AgentSelf `toml:"agent"`
	// Targets are the only addresses this agent ever dials, by name. None
	// is allowed: such an agent connects but serves no route.
	Targets []Target `toml:"targets"`
	// Path is the file the config was loaded from (absolute after
	// LoadAgent, the name given to ParseAgent otherwise).
	Path string `toml:"-"`
	// ServerProxy is how the agent reaches the server, from Server.Proxy
	// and the environment; set by ParseAgent (see AgentServer.ResolveProxy).
	ServerProxy Proxy `toml:"-"`
}

// AgentServer is the [server] section of the agent config.
type AgentServer struct {
	// Address is the server's host:port. Required.
	Address string `toml:"address"`
	// CA is the PEM of the CA certificate(s) the server's certificate must
	// chain to. Empty means the system roots.
	CA string `toml:"ca"`
	// ServerName is the name checked against the server's certificate.
	// Empty means the host of Address.
	ServerName string `toml:"server_name"`
	// Transport is how the agent connects: "tls", "quic" or "auto". Empty
	// means "auto".
	Transport string `toml:"transport"`
	// Proxy is the HTTP proxy the agent reaches the server through, with
	// CONNECT: "http://[user:password@]host:port" or "https://...". Empty
	// means as HTTPS_PROXY and NO_PROXY say; ProxyDirect means no proxy,
	// whatever they say. QUIC cannot pass a proxy: with one, "auto" uses
	// TLS only and "quic" is an error.
	Proxy ProxyURL `toml:"proxy"`
}

// AgentSelf is the [agent] section of the agent config.
type AgentSelf struct {
	// Name is the agent's name as registered on the server. Required; 1-63
	// letters, digits, '.', '_' or '-', starting with a letter or digit.
	Name string `toml:"name"`
	// Key is the agent's private key (PEM), its credential. Required.
	Key Secret `toml:"key"`
	// MaxSessions bounds the sessions the agent serves at once. Zero means
	// DefaultMaxSessions.
	MaxSessions int `toml:"max_sessions"`
	// DialTimeout bounds dialing a target. Zero means DefaultDialTimeout.
	DialTimeout Duration `toml:"dial_timeout"`
	// HandshakeTimeout bounds connecting and authenticating to the server,
	// and reading a session's header. Zero means DefaultHandshakeTimeout.
	HandshakeTimeout Duration `toml:"handshake_timeout"`
	// HalfCloseTimeout bounds how long a session may stay half-closed.
	// Zero means DefaultHalfCloseTimeout.
	HalfCloseTimeout Duration `toml:"half_close_timeout"`
	// DrainTimeout is how long a stopping agent lets sessions in flight
	// finish before it closes them. Zero means DefaultDrainTimeout.
	DrainTimeout Duration `toml:"drain_timeout"`
	// MaxHeaderSize bounds every tunnel protocol message the agent reads,
	// in bytes, from MinHeaderSizeLimit to MaxHeaderSizeLimit. Zero means
	// DefaultMaxHeaderSize.
	MaxHeaderSize int `toml:"max_header_size"`
	// MetricsListen is the host:port where the agent serves Prometheus
	// metrics at /metrics, without authentication: bind it to loopback or
	// a private interface. Empty means no metrics endpoint.
	MetricsListen string `toml:"metrics_listen"`
}

// Target is one [[targets]] entry: a name routes refer to and the only
// address the agent dials for it.
type Target struct {
	// Name is what routes on the server refer to. Required, unique, same
	// rule as the agent name.
	Name string `toml:"name"`
	// Address is host:port with a numeric port. Required.
	Address string `toml:"address"`
	// ProxyProtocol makes the agent send a PROXY protocol v2 header first
	// on every connection to the target, carrying the original client's
	// address, for a target (or a proxy in front of it) that expects one.
	ProxyProtocol bool `toml:"proxy_protocol"`
	// TLS is how the agent encrypts to a PostgreSQL target: "disable",
	// "require", "verify-ca" or "verify-full". Empty means "disable".
	TLS string `toml:"tls"`
	// TLSCA is the PEM of the CA certificate(s) the database's certificate
	// must chain to. Required with "verify-ca"; with "verify-full", empty
	// means the system roots. Only for those two modes.
	TLSCA string `toml:"tls_ca"`
	// TLSServerName is the name "verify-full" checks the database's
	// certificate for, and the only mode it is for. Empty means the host of
	// Address.
	TLSServerName string `toml:"tls_server_name"`
}

// DefaultAgent returns an agent config with every default filled in and no
// required field set.
func DefaultAgent() Agent {
	var c Agent
	c.ApplyDefaults()
	return c
}

// ApplyDefaults sets every optional field left at zero to its default.
func (c *Agent) ApplyDefaults() {
	s, a := &c.Server, &c.Agent
	if s.Transport == "" {
		s.Transport = DefaultTransport
	}
	if s.ServerName == "" {
		s.ServerName = hostOf(s.Address)
	}
	if a.MaxSessions == 0 {
		a.MaxSessions = DefaultMaxSessions
	}
	if a.DialTimeout.Duration == 0 {
		a.DialTimeout.Duration = DefaultDialTimeout
	}
	if a.HandshakeTimeout.Duration == 0 {
		a.HandshakeTimeout.Duration = DefaultHandshakeTimeout
	}
	if a.HalfCloseTimeout.Duration == 0 {
		a.HalfCloseTimeout.Duration = DefaultHalfCloseTimeout
	}
	if a.DrainTimeout.Duration == 0 {
		a.DrainTimeout.Duration = DefaultDrainTimeout
	}
	if a.MaxHeaderSize == 0 {
		a.MaxHeaderSize = DefaultMaxHeaderSize
	}
	for i := range c.Targets {
		t := &c.Targets[i]
		if t.TLS == "" {
			t.TLS = TargetTLSDisable
		}
		if t.TLS == TargetTLSVerifyFull && t.TLSServerName == "" {
			t.TLSServerName = hostOf(t.Address)
		}
	}
}

// Target returns the target called name, or false.
func (c *Agent) Target(name string) (Target, bool) {
	for _, t := range c.Targets {
		if t.Name == name {
			return t, true
		}
	}
	return Target{}, false
}

// Validate reports every problem with the config at once, joined; each is
// an *Error naming its key. Zero optional fields are valid (they mean the
// default). The key's value never appears in the error.
func (c *Agent) Validate() error { return joinErrors(c.validate()) }

func (c *Agent) validate() []*Error {
	var errs []*Error
	check := func(key, shown, reason string) {
		if reason != "" {
			errs = append(errs, invalid(key, shown, reason))
		}
	}
	s, a := &c.Server, &c.Agent

	check("server.address", quoteNonEmpty(s.Address), checkAddress(s.Address, dialAddr))
	if s.CA != "" {
		check("server.ca", "", checkCertificatesPEM(s.CA))
	}
	switch s.Transport {
	case "", TransportTLS, TransportQUIC, TransportAuto:
	default:
		check("server.transport", quote(s.Transport), fmt.Sprintf("unknown transport (use %q, %q or %q)",
			TransportAuto, TransportTLS, TransportQUIC))
	}
	errs = append(errs, validateProxy(s)...)

	check("agent.name", quoteNonEmpty(a.Name), checkName(a.Name))
	check("agent.key", "", checkPrivateKeyPEM(a.Key.Reveal()))
	check("agent.max_sessions", fmt.Sprintf("(%d)", a.MaxSessions), negative(a.MaxSessions < 0, DefaultMaxSessions))
	check("agent.dial_timeout", fmt.Sprintf("(%v)", a.DialTimeout), negative(a.DialTimeout.Duration < 0, DefaultDialTimeout))
	check("agent.handshake_timeout", fmt.Sprintf("(%v)", a.HandshakeTimeout),
		negative(a.HandshakeTimeout.Duration < 0, DefaultHandshakeTimeout))
	check("agent.half_close_timeout", fmt.Sprintf("(%v)", a.HalfCloseTimeout),
		negative(a.HalfCloseTimeout.Duration < 0, DefaultHalfCloseTimeout))
	check("agent.drain_timeout", fmt.Sprintf("(%v)", a.DrainTimeout),
		negative(a.DrainTimeout.Duration < 0, DefaultDrainTimeout))
	if n := a.MaxHeaderSize; n != 0 && (n < MinHeaderSizeLimit || n > MaxHeaderSizeLimit) {
		check("agent.max_header_size", fmt.Sprintf("(%d)", n), fmt.Sprintf(
			"must be from %d to %d bytes (0 means the default, %d)", MinHeaderSizeLimit, MaxHeaderSizeLimit, DefaultMaxHeaderSize))
	}
	if a.MetricsListen != "" {
		// A host is required: the endpoint has no authentication, so
		// listening on every interface must be asked for by name (0.0.0.0).
		check("agent.metrics_listen", quote(a.MetricsListen), checkAddress(a.MetricsListen, dialAddr))
	}

	first := map[string]int{}
	for i, t := range c.Targets {
		n := i + 1 // as the user counts [[targets]] blocks
		key := fmt.Sprintf("targets[%d]", n)
		if reason := checkName(t.Name); reason != "" {
			check(key+".name", quoteNonEmpty(t.Name), reason)
		} else if prev, dup := first[t.Name]; dup {
			check(key+".name", quote(t.Name), fmt.Sprintf("duplicate (also targets[%d])", prev))
		} else {
			first[t.Name] = n
		}
		check(key+".address", quoteNonEmpty(t.Address), checkAddress(t.Address, dialAddr))
		errs = append(errs, validateTargetTLS(key, &t)...)
	}
	return errs
}

// validateTargetTLS checks the tls keys of the target at key: a known mode,
// and tls_ca and tls_server_name only where the mode uses them, so that a
// key that would silently do nothing is an error.
func validateTargetTLS(key string, t *Target) []*Error {
	var errs []*Error
	check := func(k, shown, reason string) {
		if reason != "" {
			errs = append(errs, invalid(key+"."+k, shown, reason))
		}
	}
	mode := t.TLS
	if mode == "" {
		mode = TargetTLSDisable
	}
	noEffect := func(why string) string {
		return fmt.Sprintf("has no effect with tls = %q (%s)", mode, why)
	}
	switch mode {
	case TargetTLSDisable, TargetTLSRequire:
		if t.TLSCA != "" {
			check("tls_ca", "", noEffect(`set tls = "verify-ca" or "verify-full" to check the database's certificate against it`))
		}
	case TargetTLSVerifyCA:
		if t.TLSCA == "" {
			check("tls_ca", "", `missing: tls = "verify-ca" checks the database's certificate against it `+
				`(give the PEM of the CA that signed it)`)
		}
	case TargetTLSVerifyFull:
	default:
		check("tls", quote(t.TLS), fmt.Sprintf("unknown mode (use %q, %q, %q or %q)",
			TargetTLSDisable, TargetTLSRequire, TargetTLSVerifyCA, TargetTLSVerifyFull))
		return errs
	}
	if t.TLSCA != "" && (mode == TargetTLSVerifyCA || mode == TargetTLSVerifyFull) {
		check("tls_ca", "", checkCertificatesPEM(t.TLSCA))
	}
	if n := t.TLSServerName; n != "" {
		if mode != TargetTLSVerifyFull {
			check("tls_server_name", quote(n), noEffect(`only "verify-full" checks the name`))
		} else {
			check("tls_server_name", quote(n), checkServerName(n))
		}
	}
	return errs
}

// negative returns the reason a negative limit is refused, or "".
func negative[T any](isNegative bool, def T) string {
	if !isNegative {
		return ""
	}
	return fmt.Sprintf("must not be negative (0 means the default, %v)", def)
}

// quoteNonEmpty quotes s for a message, or returns "" for an empty s (whose
// problem is "missing").
func quoteNonEmpty(s string) string {
	if s == "" {
		return ""
	}
	return quote(s)
}

// LoadAgent reads the agent config at path, decodes it strictly, applies
// TUNNEL_AGENT_* environment overrides and defaults, and validates it.
// Every problem is reported at once, each naming the file, line and key.
func LoadAgent(path string) (*Agent, error) {
	data, abs, err := readFile(path)
	if err != nil {
		return nil, err
	}
	c, err := ParseAgent(path, data, os.Getenv)
	if err != nil {
		return nil, err
	}
	c.Path = abs
	return c, nil
}

// ParseAgent is LoadAgent on data already read; name is the file name
// used in messages and stored in Path. env looks up environment variables
// (os.Getenv, or a map's lookup in tests); nil means no overrides.
func ParseAgent(name string, data []byte, env func(string) string) (*Agent, error) {
	var c Agent
	idx, err := decode(name, data, &c)
	if err != nil {
		return nil, err
	}
	c.Path = name
	from, errs := applyEnv(&c, agentEnvPrefix, env)
	c.ApplyDefaults()
	errs = append(errs, c.validate()...)
	if len(errs) == 0 {
		var err *Error
		if c.ServerProxy, err = c.Server.resolveProxy(env); err != nil {
			errs = append(errs, err)
		}
	}
	if len(errs) > 0 {
		return nil, locate(errs, name, idx, from)
	}
	return &c, nil
}

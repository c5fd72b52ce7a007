package config

import (
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"strings"

	"golang.org/x/net/http/httpproxy"
)

// ProxyDirect, as [server] proxy, makes the agent dial the server directly
// whatever HTTPS_PROXY says.
const ProxyDirect = "direct"

// ProxyFromKey is Proxy.From for a proxy set by [server] proxy (in the file
// or with TUNNEL_AGENT_SERVER_PROXY).
const ProxyFromKey = "server.proxy"

// The variables the agent takes its proxy from when [server] proxy is
// empty, each lower case first, as curl and Go's net/http read them. The
// tunnel is TLS, so HTTP_PROXY does not apply.
var (
	httpsProxyVars = []string{"https_proxy", "HTTPS_PROXY"}
	noProxyVars    = []string{"no_proxy", "NO_PROXY"}
)

// ProxyURL is the [server] proxy key: "http://[user:password@]host:port",
// "https://..." or ProxyDirect. It may hold a password, so every way of
// formatting or encoding it (fmt verbs, String, JSON, TOML, slog) shows the
// password as "xxxxx"; only Reveal returns the value.
type ProxyURL string

// Reveal returns the value, password included. Call it only where the
// value is used, never to build a message.
func (p ProxyURL) Reveal() string { return string(p) }

// String returns the value with its password redacted.
func (p ProxyURL) String() string { return redactProxyURL(string(p)) }

// GoString is String, so %#v does not print the password.
func (p ProxyURL) GoString() string { return p.String() }

// Format writes String for every verb, including %q, %x and %#v, which
// would otherwise bypass it.
func (p ProxyURL) Format(f fmt.State, _ rune) { _, _ = io.WriteString(f, p.String()) }

// MarshalText returns String; a pointer receiver, as for Secret, is what
// go-toml honours on a string type.
func (p *ProxyURL) MarshalText() ([]byte, error) { return []byte(p.String()), nil }

// MarshalJSON returns String as a JSON string.
func (p ProxyURL) MarshalJSON() ([]byte, error) { return json.Marshal(p.String()) }

// LogValue returns String for log/slog.
func (p ProxyURL) LogValue() slog.Value { return slog.StringValue(p.String()) }

// redactProxyURL returns s with the password of its user info replaced by
// "xxxxx". A value without "://" but with "@" (user:password@host:port,
// which url takes for a scheme and opaque text) or one that does not parse
// is redacted whole when it may hold user info.
func redactProxyURL(s string) string {
	if !strings.Contains(s, "://") {
		if strings.Contains(s, "@") {
			return redacted
		}
		return s
	}
	u, err := url.Parse(s)
	if err != nil {
		if strings.Contains(s, "@") {
			return redacted
		}
		return s
	}
	return u.Redacted()
}

// Proxy is how the agent reaches the server, as [server] proxy and the
// environment decide (ParseAgent sets Agent.ServerProxy). Formatting it
// shows no password.
type Proxy struct {
	// URL is the HTTP proxy (scheme http or https, with any
	// user:password), or nil when the agent dials the server directly.
	URL *url.URL
	// From says where URL came from: ProxyFromKey, or the environment
	// variable (HTTPS_PROXY or https_proxy). Empty when direct.
	From string
}

// String returns ProxyDirect, or the proxy's URL with its password
// redacted.
func (p Proxy) String() string {
	if p.URL == nil {
		return ProxyDirect
	}
	return p.URL.Redacted()
}

// Format writes String for every verb.
func (p Proxy) Format(f fmt.State, _ rune) { _, _ = io.WriteString(f, p.String()) }

// MarshalJSON returns String as a JSON string.
func (p Proxy) MarshalJSON() ([]byte, error) { return json.Marshal(p.String()) }

// LogValue returns String for log/slog.
func (p Proxy) LogValue() slog.Value { return slog.StringValue(p.String()) }

// ResolveProxy decides how the agent reaches the server at s.Address:
// through the proxy of s.Proxy; directly when it is ProxyDirect; and when
// it is empty, as HTTPS_PROXY and NO_PROXY (or their lower-case forms) in
// env say, with NO_PROXY's rules as Go's net/http applies them (which
// never proxy localhost or a loopback address). env nil means an empty
// environment. The error is an *Error naming the key or variable; it
// never shows a password.
func (s *AgentServer) ResolveProxy(env func(string) string) (Proxy, error) {
	p, err := s.resolveProxy(env)
	if err != nil {
		return Proxy{}, err
	}
	return p, nil
}

func (s *AgentServer) resolveProxy(env func(string) string) (Proxy, *Error) {
	switch p := s.Proxy.Reveal(); p {
	case ProxyDirect:
		return Proxy{}, nil
	case "":
	default:
		u, reason := parseProxyURL(p, false)
		if reason != "" {
			return Proxy{}, invalid(ProxyFromKey, shownProxyURL(p), reason)
		}
		return Proxy{URL: u, From: ProxyFromKey}, nil
	}
	if env == nil {
		return Proxy{}, nil
	}
	name, raw := lookupAny(env, httpsProxyVars)
	if raw == "" {
		return Proxy{}, nil
	}
	envErr := func(msg string) *Error {
		e := sentence(ProxyFromKey, ErrInvalid, msg+fmt.Sprintf(
			`. To ignore %s, set [server] proxy = %q`, name, ProxyDirect))
		e.Env = name
		return e
	}
	u, reason := parseProxyURL(raw, true)
	if reason != "" {
		shown := shownProxyURL(raw)
		if shown != "" {
			shown = " " + shown
		}
		return Proxy{}, envErr(fmt.Sprintf("proxy%s for the agent's connection to the server: %s", shown, reason))
	}
	_, noProxy := lookupAny(env, noProxyVars)
	decide := (&httpproxy.Config{HTTPSProxy: u.String(), NoProxy: noProxy}).ProxyFunc()
	if via, err := decide(&url.URL{Scheme: "https", Host: s.Address}); err != nil || via == nil {
		return Proxy{}, nil // NO_PROXY, or a loopback server
	}
	if s.Transport == TransportQUIC {
		return Proxy{}, envErr(fmt.Sprintf(`server.transport %q cannot pass the HTTP proxy %s names: use transport %q or %q`,
			s.Transport, name, TransportTLS, TransportAuto))
	}
	return Proxy{URL: u, From: name}, nil
}

// lookupAny returns the first of names set to a non-empty value in env.
func lookupAny(env func(string) string, names []string) (name, value string) {
	for _, n := range names {
		if v := env(n); v != "" {
			return n, v
		}
	}
	return "", ""
}

// parseProxyURL parses s, a proxy URL, and returns why it is not usable,
// or "". bare allows "host:port" for "http://host:port", as the proxy
// variables do by custom. No reason quotes s: it may hold a password.
func parseProxyURL(s string, bare bool) (*url.URL, string) {
	const want = "want http://[user:password@]host:port or https://..."
	if !strings.Contains(s, "://") {
		if !bare {
			return nil, fmt.Sprintf("not a proxy URL (%s, or %q)", want, ProxyDirect)
		}
		s = "http://" + s
	}
	u, err := url.Parse(s)
	switch {
	case err != nil:
		// url's errors quote the whole value, password included.
		return nil, "not a valid URL (" + want + ")"
	case u.Scheme != "http" && u.Scheme != "https":
		return nil, fmt.Sprintf("unsupported scheme %q (the agent speaks HTTP CONNECT to an http or https proxy)", u.Scheme)
	case u.Opaque != "" || u.Hostname() == "":
		return nil, "missing host (" + want + ")"
	case u.Port() != "" && !validPort(u.Port(), 1):
		return nil, "invalid port (want a number from 1 to 65535)"
	case u.Path != "" && u.Path != "/" || u.RawQuery != "" || u.Fragment != "":
		return nil, "a proxy URL has no path, query or fragment (" + want + ")"
	}
	u.Path = ""
	return u, ""
}

// shownProxyURL is how a proxy URL appears in a message: quoted, with the
// password redacted; empty when only a redaction of the whole would do.
func shownProxyURL(s string) string {
	shown := redactProxyURL(s)
	if shown == redacted {
		return ""
	}
	return quote(shown)
}

// validateProxy checks server.proxy, and that the transport can pass it.
// The environment's proxy is checked by ResolveProxy.
func validateProxy(s *AgentServer) []*Error {
	p := s.Proxy.Reveal()
	if p == "" || p == ProxyDirect {
		return nil
	}
	if _, reason := parseProxyURL(p, false); reason != "" {
		return []*Error{invalid(ProxyFromKey, shownProxyURL(p), reason)}
	}
	if s.Transport == TransportQUIC {
		e := invalid("server.transport", quote(s.Transport), fmt.Sprintf(
			"QUIC cannot pass the HTTP proxy server.proxy sets: use transport %q or %q (which then uses TLS only), or remove server.proxy",
			TransportTLS, TransportAuto))
		e.related = []string{ProxyFromKey}
		return []*Error{e}
	}
	return nil
}

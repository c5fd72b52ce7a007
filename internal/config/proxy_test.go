package config

import (
	"strings"
	"testing"
)

// proxyPassword must never show in a message or a rendering.
const proxyPassword = "pr0xy-s3cret"

// TestResolveProxy: [server] proxy wins; without it HTTPS_PROXY applies
// unless NO_PROXY excludes the server; "direct" ignores the environment.
func TestResolveProxy(t *testing.T) {
	t.Parallel()
	const server = "tunnel.example.com:7443"
	tests := []struct {
		name    string
		address string // default server
		key     string
		env     map[string]string
		// want is the proxy's redacted URL, "direct" for none.
		want, from string
	}{
		{name: "nothing set", want: "direct"},
		{name: "key", key: "http://proxy.corp:3128", want: "http://proxy.corp:3128", from: "server.proxy"},
		{name: "key with credentials", key: "http://alice:" + proxyPassword + "@proxy.corp:3128",
			want: "http://alice:xxxxx@proxy.corp:3128", from: "server.proxy"},
		{name: "https key, trailing slash", key: "https://proxy.corp/", want: "https://proxy.corp", from: "server.proxy"},
		{name: "key wins over the environment", key: "http://a.corp:1",
			env: map[string]string{"HTTPS_PROXY": "http://b.corp:2"}, want: "http://a.corp:1", from: "server.proxy"},
		{name: "key ignores NO_PROXY", key: "http://a.corp:1",
			env: map[string]string{"NO_PROXY": "tunnel.example.com"}, want: "http://a.corp:1", from: "server.proxy"},
		{name: "direct ignores the environment", key: "direct",
			env: map[string]string{"HTTPS_PROXY": "http://b.corp:2"}, want: "direct"},
		{name: "HTTPS_PROXY", env: map[string]string{"HTTPS_PROXY": "http://u:" + proxyPassword + "@b.corp:2"},
			want: "http://u:xxxxx@b.corp:2", from: "HTTPS_PROXY"},
		{name: "https_proxy before HTTPS_PROXY",
			env:  map[string]string{"HTTPS_PROXY": "http://upper:1", "https_proxy": "http://lower:2"},
			want: "http://lower:2", from: "https_proxy"},
		{name: "bare host:port means http", env: map[string]string{"HTTPS_PROXY": "b.corp:3128"},
			want: "http://b.corp:3128", from: "HTTPS_PROXY"},
		{name: "HTTP_PROXY does not apply", env: map[string]string{"HTTP_PROXY": "http://b.corp:2"}, want: "direct"},
		{name: "NO_PROXY names the server",
			env:  map[string]string{"HTTPS_PROXY": "http://b.corp:2", "NO_PROXY": "localhost,tunnel.example.com"},
			want: "direct"},
		{name: "NO_PROXY names its domain",
			env:  map[string]string{"HTTPS_PROXY": "http://b.corp:2", "no_proxy": ".example.com"},
			want: "direct"},
		{name: "NO_PROXY names another host",
			env:  map[string]string{"HTTPS_PROXY": "http://b.corp:2", "NO_PROXY": "example.com.evil,db.internal"},
			want: "http://b.corp:2", from: "HTTPS_PROXY"},
		{name: "NO_PROXY star", env: map[string]string{"HTTPS_PROXY": "http://b.corp:2", "NO_PROXY": "*"}, want: "direct"},
		{name: "NO_PROXY CIDR", address: "10.1.2.3:7443",
			env: map[string]string{"HTTPS_PROXY": "http://b.corp:2", "NO_PROXY": "10.0.0.0/8"}, want: "direct"},
		{name: "a loopback server is never proxied from the environment", address: "127.0.0.1:7443",
			env: map[string]string{"HTTPS_PROXY": "http://b.corp:2"}, want: "direct"},
		{name: "but is through the key", address: "127.0.0.1:7443", key: "http://b.corp:2",
			want: "http://b.corp:2", from: "server.proxy"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s := AgentServer{Address: tt.address, Proxy: ProxyURL(tt.key), Transport: TransportAuto}
			if s.Address == "" {
				s.Address = server
			}
			p, err := s.ResolveProxy(envMap(tt.env))
			if err != nil {
				t.Fatal(err)
			}
			if p.String() != tt.want || p.From != tt.from {
				t.Errorf("got %s from %q, want %s from %q", p, p.From, tt.want, tt.from)
			}
			if p.URL != nil && strings.Contains(tt.key+tt.env["HTTPS_PROXY"], proxyPassword) {
				if pw, _ := p.URL.User.Password(); pw != proxyPassword {
					t.Errorf("password %q lost", pw)
				}
			}
		})
	}
}

// TestParseAgentProxyErrors: a bad proxy, from the file or the
// environment, is an error naming the key or variable without showing the
// password; QUIC with a proxy is an error naming both keys.
func TestParseAgentProxyErrors(t *testing.T) {
	t.Parallel()
	withProxy := func(lines string) string {
		return edit(validAgent, "[agent]\n", lines+"\n[agent]\n")
	}
	tests := []struct {
		name string
		doc  string
		env  map[string]string
		want []string // {TEXT} is the line of TEXT in doc
	}{
		{
			name: "socks key",
			doc:  withProxy(`proxy = "socks5://u:` + proxyPassword + `@h:1080"`),
			want: []string{`tunnel-agent.toml:{proxy =}: server.proxy "socks5://u:xxxxx@h:1080": unsupported scheme "socks5"`},
		},
		{
			name: "key without scheme",
			doc:  withProxy(`proxy = "u:` + proxyPassword + `@h:3128"`),
			want: []string{`tunnel-agent.toml:{proxy =}: server.proxy: not a proxy URL (want http://[user:password@]host:port or https://..., or "direct")`},
		},
		{
			name: "key with a path",
			doc:  withProxy(`proxy = "http://h:3128/proxy.pac"`),
			want: []string{`server.proxy "http://h:3128/proxy.pac": a proxy URL has no path, query or fragment`},
		},
		{
			name: "key with a bad port",
			doc:  withProxy(`proxy = "http://h:0"`),
			want: []string{`server.proxy "http://h:0": invalid port`},
		},
		{
			name: "key that does not parse",
			doc:  withProxy(`proxy = "http://u:` + proxyPassword + `@h:x y"`),
			want: []string{`server.proxy: not a valid URL`},
		},
		{
			name: "quic with the key names both keys",
			doc:  withProxy("transport = \"quic\"\nproxy = \"http://h:3128\""),
			want: []string{`tunnel-agent.toml:{transport =}: server.transport "quic": QUIC cannot pass the HTTP proxy server.proxy sets: ` +
				`use transport "tls" or "auto" (which then uses TLS only), or remove server.proxy`},
		},
		{
			name: "key from its variable",
			doc:  validAgent,
			env:  map[string]string{"TUNNEL_AGENT_SERVER_PROXY": "ftp://h:21"},
			want: []string{`TUNNEL_AGENT_SERVER_PROXY: server.proxy "ftp://h:21": unsupported scheme "ftp"`},
		},
		{
			name: "socks HTTPS_PROXY",
			doc:  validAgent,
			env:  map[string]string{"HTTPS_PROXY": "socks5://u:" + proxyPassword + "@h:1080"},
			want: []string{`HTTPS_PROXY: proxy "socks5://u:xxxxx@h:1080" for the agent's connection to the server: unsupported scheme "socks5"`,
				`. To ignore HTTPS_PROXY, set [server] proxy = "direct"`},
		},
		{
			name: "quic with HTTPS_PROXY names both",
			doc:  withProxy(`transport = "quic"`),
			env:  map[string]string{"https_proxy": "http://h:3128"},
			want: []string{`https_proxy: server.transport "quic" cannot pass the HTTP proxy https_proxy names: use transport "tls" or "auto". ` +
				`To ignore https_proxy, set [server] proxy = "direct"`},
		},
		{
			name: "quic with HTTPS_PROXY, server in NO_PROXY",
			doc:  withProxy(`transport = "quic"`),
			env:  map[string]string{"HTTPS_PROXY": "http://h:3128", "NO_PROXY": "example.com"},
		},
		{
			name: "quic with direct",
			doc:  withProxy("transport = \"quic\"\nproxy = \"direct\""),
			env:  map[string]string{"HTTPS_PROXY": "http://h:3128"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := ParseAgent(AgentFile, []byte(tt.doc), envMap(tt.env))
			checkErr(t, err, expand(t, tt.doc, tt.want))
			if err != nil && strings.Contains(err.Error(), proxyPassword) {
				t.Errorf("error shows the password:\n%v", err)
			}
		})
	}
}

// TestProxyNeverShown: the proxy's password shows in no rendering of the
// config, its key or the resolved proxy.
func TestProxyNeverShown(t *testing.T) {
	t.Parallel()
	doc := edit(validAgent, "[agent]\n", `proxy = "http://alice:`+proxyPassword+`@proxy.corp:3128"`+"\n\n[agent]\n")
	c, err := ParseAgent(AgentFile, []byte(doc), nil)
	if err != nil {
		t.Fatal(err)
	}
	if c.ServerProxy.URL == nil || c.Server.Proxy.Reveal() != "http://alice:"+proxyPassword+"@proxy.corp:3128" {
		t.Fatalf("proxy %v, key %v", c.ServerProxy, c.Server.Proxy)
	}
	for name, v := range map[string]any{
		"key":            c.Server.Proxy,
		"server section": c.Server,
		"resolved":       c.ServerProxy,
		"agent config":   *c,
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			for how, s := range renderings(t, v) {
				if strings.Contains(s, proxyPassword) {
					t.Errorf("%s shows the password:\n%s", how, s)
				}
			}
		})
	}
	if got := c.Server.Proxy.String(); got != "http://alice:xxxxx@proxy.corp:3128" {
		t.Errorf("String() = %q", got)
	}
	// Without a scheme, url.Parse takes "alice" for one and the rest for
	// opaque text, which its Redacted leaves alone.
	bare := ProxyURL("alice:" + proxyPassword + "@proxy.corp:3128")
	for how, s := range renderings(t, bare) {
		if strings.Contains(s, proxyPassword) {
			t.Errorf("a proxy URL without a scheme: %s shows the password:\n%s", how, s)
		}
	}
}

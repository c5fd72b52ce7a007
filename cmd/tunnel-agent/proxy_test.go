package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tunnelrelay/tunnel/internal/testutil/connectproxy"
	"github.com/tunnelrelay/tunnel/internal/testutil/samples"
)

// TestCheckThroughProxy: `tunnel-agent check` reaches the server through
// the proxy of [server] proxy, or of HTTPS_PROXY, says so, and shows the
// proxy's answer when it fails, never its password. (A whole working
// check through a proxy runs in internal/e2e.)
func TestCheckThroughProxy(t *testing.T) {
	p := connectproxy.New(t, connectproxy.Options{User: "alice", Password: "pw-s3cret",
		Hosts: map[string]string{"tunnel.test": "127.0.0.1"}})
	b := samples.Read(t, packagingDir, samples.AgentFile)
	base := string(b[:bytes.Index(b, []byte("\n[[targets]]"))+1])
	// Nothing listens on port 1: the proxy answers 502.
	base = strings.Replace(base, `address = "tunnel.example.com:7443"`, `address = "tunnel.test:1"`, 1)
	base = strings.Replace(base, `server_name = "tunnel.example.com"`, `server_name = "tunnel.test"`, 1)

	for _, tc := range []struct {
		name, proxyLine, env, from string
	}{
		{"key", `proxy = "` + p.URL().String() + `"`, "", "server.proxy"},
		{"HTTPS_PROXY", "", p.URL().String(), "HTTPS_PROXY"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("HTTPS_PROXY", tc.env)
			t.Setenv("https_proxy", "")
			doc := strings.Replace(base, `proxy = "direct"`, tc.proxyLine, 1)
			path := filepath.Join(t.TempDir(), "tunnel-agent.toml")
			if err := os.WriteFile(path, []byte(doc), 0o600); err != nil {
				t.Fatal(err)
			}
			before := len(p.Targets())
			ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
			defer cancel()
			root := newRootCmd()
			var out bytes.Buffer
			root.SetOut(&out)
			root.SetErr(&out)
			root.SetArgs([]string{"check", "--config", path})
			if err := root.ExecuteContext(ctx); err == nil {
				t.Fatalf("check passed:\n%s", out.String())
			}
			redacted := regexp.QuoteMeta("http://alice:xxxxx@" + p.Addr())
			for _, want := range []string{
				`(?m)^proxy\s+used\s+the server is reached through HTTP proxy ` + redacted + ` \(from ` + tc.from + `\)$`,
				`(?m)^server\s+FAILED\s+tunnel.test:1 through HTTP proxy ` + redacted + `: .*refused CONNECT to tunnel.test:1: answered "HTTP/1.1 502 Bad Gateway"`,
			} {
				if !regexp.MustCompile(want).MatchString(out.String()) {
					t.Errorf("check output does not match %s:\n%s", want, out.String())
				}
			}
			if strings.Contains(out.String(), "pw-s3cret") {
				t.Errorf("check output shows the proxy's password:\n%s", out.String())
			}
			// Transport auto went to the proxy once, over TLS, and
			// nowhere else.
			if got := p.Targets()[before:]; !slices.Equal(got, []string{"tunnel.test:1"}) {
				t.Errorf("the proxy was asked for %q", got)
			}
		})
	}
}

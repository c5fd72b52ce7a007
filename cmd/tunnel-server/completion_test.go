package main

import (
	"bytes"
	"context"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/tunnelrelay/tunnel/internal/admin"
	"github.com/tunnelrelay/tunnel/internal/cli"
	"github.com/tunnelrelay/tunnel/internal/logging"
)

// registry is an admin.API with a fixed set of agents and routes; the
// methods the completions do not use panic through the nil embedded API.
type registry struct {
	admin.API
	agents []admin.Agent
	routes []admin.Route
}

func (r *registry) Agents(context.Context) ([]admin.Agent, error) { return r.agents, nil }
func (r *registry) Routes(context.Context) ([]admin.Route, error) { return r.routes, nil }

// serverConfig writes a server config whose admin endpoint is adminAddr,
// with the admin token token, and returns its path.
func serverConfig(t *testing.T, adminAddr, token string) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "admin.token"), []byte(token+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := `[server]
public_address = "tunnel.example.com:7443"
cert = "server.crt"
key = "server.key"
ca = "ca.crt"

[admin]
listen = "` + adminAddr + `"
token_file = "admin.token"
`
	path := filepath.Join(dir, "tunnel-server.toml")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// complete runs the shell's completion request for args and returns the
// offered values (descriptions cut) and the directive line.
func complete(t *testing.T, args ...string) (values []string, directive string) {
	t.Helper()
	root := newRootCmd()
	var out, errOut bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&errOut)
	code := cli.Run(t.Context(), root, append([]string{"__complete"}, args...), &errOut)
	// cobra always notes the directive on stderr, which the shell scripts
	// discard; anything more would be an error of ours.
	stderr := strings.TrimPrefix(errOut.String(), "Completion ended with directive: ShellCompDirectiveNoFileComp\n")
	if code != cli.ExitOK || stderr != "" {
		t.Fatalf("__complete %q: exit %d, stderr %q", args, code, errOut.String())
	}
	for _, line := range strings.Split(strings.TrimSpace(out.String()), "\n") {
		if strings.HasPrefix(line, ":") {
			directive = line
			continue
		}
		values = append(values, strings.SplitN(line, "\t", 2)[0])
	}
	return values, directive
}

// TestCompletions: names come from the running server, filtered by what
// the command can act on; fixed flag values are offered as they are.
func TestCompletions(t *testing.T) {
	reg := &registry{
		agents: []admin.Agent{
			{Name: "acme", Online: true, Targets: []string{"warehouse", "reporting"}},
			{Name: "beta", Disabled: true},
		},
		routes: []admin.Route{{Name: "acme-dw", Agent: "acme", Target: "warehouse", Listen: "127.0.0.1:15432"}},
	}
	const token = "test-admin-token"
	srv := httptest.NewServer(admin.Handler(reg, token, logging.Discard()))
	t.Cleanup(srv.Close)
	cfg := serverConfig(t, srv.Listener.Addr().String(), token)

	tests := []struct {
		name string
		args []string
		want []string
	}{
		{"agent remove", []string{"agent", "remove", ""}, []string{"acme", "beta"}},
		{"agent disable", []string{"agent", "disable", ""}, []string{"acme"}},
		{"agent enable", []string{"agent", "enable", ""}, []string{"beta"}},
		{"agent remove, second argument", []string{"agent", "remove", "acme", ""}, nil},
		{"route remove", []string{"route", "remove", ""}, []string{"acme-dw"}},
		{"route add --agent", []string{"route", "add", "new", "--agent", ""}, []string{"acme", "beta"}},
		{"route add --target", []string{"route", "add", "new", "--agent", "acme", "--target", ""}, []string{"warehouse", "reporting"}},
		{"route add --protocol", []string{"route", "add", "new", "--protocol", ""}, []string{"tcp", "postgres", "mysql"}},
		{"--log", []string{"status", "--log", ""}, []string{"trace", "debug", "info", "warn", "error"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, directive := complete(t, append([]string{"--config", cfg}, tt.args...)...)
			if !slices.Equal(got, tt.want) {
				t.Errorf("offered %q, want %q", got, tt.want)
			}
			if directive != ":4" { // ShellCompDirectiveNoFileComp
				t.Errorf("directive %s, want :4 (no file names)", directive)
			}
		})
	}
}

// TestCompletionsWithoutServer: with no server to ask, or no config at
// all, a name completes to nothing, quietly, instead of to file names.
func TestCompletionsWithoutServer(t *testing.T) {
	// A listener closed at once: a loopback port nothing answers on.
	srv := httptest.NewServer(nil)
	addr := srv.Listener.Addr().String()
	srv.Close()
	cases := map[string][]string{
		"server down": {"--config", serverConfig(t, addr, "x"), "agent", "remove", ""},
		"no config":   {"--config", filepath.Join(t.TempDir(), "missing.toml"), "route", "remove", ""},
	}
	for name, args := range cases {
		t.Run(name, func(t *testing.T) {
			got, directive := complete(t, args...)
			if len(got) != 0 || directive != ":4" {
				t.Errorf("offered %q with directive %s, want nothing and :4", got, directive)
			}
		})
	}
}

package config

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/pelletier/go-toml/v2"
)

// created is the fixed time in the golden files.
var created = time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)

func testTemplate() AgentTemplate {
	return AgentTemplate{
		Agent:         "acme-bastion",
		ServerAddress: "tunnel.example.com:7443",
		CAPEM:         testCAPEM,
		KeyPEM:        testKeyPEM,
		Created:       created,
	}
}

func TestRenderGolden(t *testing.T) {
	t.Parallel()
	noCA := testTemplate()
	noCA.CAPEM, noCA.Created = "", time.Time{}
	tests := []struct {
		name   string
		golden string
		render func() ([]byte, error)
	}{
		{"agent", "tunnel-agent.golden.toml", func() ([]byte, error) { return RenderAgent(testTemplate()) }},
		{"agent without CA or date", "tunnel-agent-noca.golden.toml", func() ([]byte, error) { return RenderAgent(noCA) }},
		{"server", "tunnel-server.golden.toml", func() ([]byte, error) {
			return RenderServer(ServerTemplate{PublicAddress: "tunnel.example.com:7443"})
		}},
		{"server with addresses", "tunnel-server-custom.golden.toml", func() ([]byte, error) {
			return RenderServer(ServerTemplate{Listen: "0.0.0.0:8443", PublicAddress: "[2001:db8::1]:8443", AdminListen: "unix:/run/tunnel-server/admin.sock",
				Database: "/var/lib/tunnel-server/tunnel.db"})
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			b, err := tt.render()
			if err != nil {
				t.Fatal(err)
			}
			golden(t, tt.golden, b)
		})
	}
}

// TestRenderAgentTargetExample: the commented [[targets]] example, with
// its key lines uncommented (a real CA in place of the elided one), loads
// and sets what it says.
func TestRenderAgentTargetExample(t *testing.T) {
	t.Parallel()
	b, err := RenderAgent(testTemplate())
	if err != nil {
		t.Fatal(err)
	}
	doc := string(b)
	at := strings.Index(doc, "# [[targets]]")
	if at < 0 {
		t.Fatal("no commented [[targets]] example")
	}
	key := regexp.MustCompile(`^# (\[\[targets\]\]|[a-z_]+ = .*)$`)
	var out strings.Builder
	out.WriteString(doc[:at])
	for line := range strings.Lines(doc[at:]) {
		line = strings.TrimSuffix(line, "\n")
		switch m := key.FindStringSubmatch(line); {
		case m == nil:
		case strings.HasPrefix(m[1], "tls_ca = "):
			out.WriteString("tls_ca = " + tomlMultiline(testCAPEM) + "\n")
		default:
			out.WriteString(m[1] + "\n")
		}
	}
	c, err := ParseAgent(AgentFile, []byte(out.String()), nil)
	if err != nil {
		t.Fatalf("%v\n%s", err, out.String())
	}
	want := Target{Name: "warehouse", Address: "10.0.0.5:5432", ProxyProtocol: true, TLS: "verify-full",
		TLSCA: testCAPEM, TLSServerName: "db.internal"}
	if len(c.Targets) != 1 || c.Targets[0] != want {
		t.Fatalf("targets %+v, want %+v", c.Targets, want)
	}
}

func TestRenderAgentErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		edit func(*AgentTemplate)
		want []string
	}{
		{"missing name", func(a *AgentTemplate) { a.Agent = "" }, []string{"render agent config: agent name: missing"}},
		{"bad name", func(a *AgentTemplate) { a.Agent = "a b" }, []string{`agent name "a b": invalid name`}},
		{"bad address", func(a *AgentTemplate) { a.ServerAddress = "example.com" }, []string{`server address "example.com": missing port`}},
		{"missing key", func(a *AgentTemplate) { a.KeyPEM = "" }, []string{"agent key: missing"}},
		{"key not PEM", func(a *AgentTemplate) { a.KeyPEM = testKeyBody }, []string{"agent key: not a PEM private key"}},
		{"bad CA", func(a *AgentTemplate) { a.CAPEM = "junk" }, []string{"CA: no PEM certificate found"}},
		{"all at once", func(a *AgentTemplate) { *a = AgentTemplate{} }, []string{"agent name: missing\nserver address: missing\nagent key: missing"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			a := testTemplate()
			tt.edit(&a)
			_, err := RenderAgent(a)
			checkErr(t, err, tt.want, ErrInvalid)
		})
	}
}

func TestRenderServerErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		t    ServerTemplate
		want string
	}{
		{"missing public address", ServerTemplate{}, "server.public_address: missing"},
		{"admin not loopback", ServerTemplate{PublicAddress: "h:1", AdminListen: "0.0.0.0:7444"}, "never exposed beyond loopback"},
		{"bad listen", ServerTemplate{PublicAddress: "h:1", Listen: "7443"}, `server.listen "7443": missing port`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := RenderServer(tt.t)
			checkErr(t, err, []string{"render tunnel-server.toml: the result does not load", tt.want}, ErrInvalid)
		})
	}
}

func TestWriteAgentFile(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), AgentFile)
	if err := WriteAgentFile(path, testTemplate()); err != nil {
		t.Fatal(err)
	}
	checkMode(t, path)

	// It refuses to overwrite, and leaves the file alone.
	other := testTemplate()
	other.Agent = "other"
	err := WriteAgentFile(path, other)
	checkErr(t, err, []string{"refusing to overwrite", path})
	if !errors.Is(err, fs.ErrExist) {
		t.Errorf("not fs.ErrExist: %v", err)
	}

	// The user adds a target; the agent loads it.
	f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteString("\n[[targets]]\nname = \"warehouse\"\naddress = \"10.0.0.5:5432\"\n"); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	c, err := LoadAgent(path)
	if err != nil {
		t.Fatal(err)
	}
	if c.Agent.Name != "acme-bastion" || c.Agent.Key.Reveal() != testKeyPEM || c.Server.CA != testCAPEM ||
		c.Server.Address != "tunnel.example.com:7443" || len(c.Targets) != 1 || c.Targets[0].Name != "warehouse" || c.Path != path {
		t.Errorf("loaded %+v", c)
	}
}

func TestWriteServerFile(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	path := filepath.Join(dir, ServerFile)
	if err := WriteServerFile(path, ServerTemplate{PublicAddress: "localhost:7443"}); err != nil {
		t.Fatal(err)
	}
	checkMode(t, path)
	err := WriteServerFile(path, ServerTemplate{PublicAddress: "localhost:7443"})
	checkErr(t, err, []string{"refusing to overwrite"})
	if !errors.Is(err, fs.ErrExist) {
		t.Errorf("not fs.ErrExist: %v", err)
	}

	c, err := LoadServer(path)
	if err != nil {
		t.Fatal(err)
	}
	want := DefaultServer()
	want.Server.PublicAddress = "localhost:7443"
	want.Server.Cert, want.Server.Key, want.Server.CA = "server.crt", "server.key", "ca.crt"
	want.Admin.TokenFile = "admin.token"
	want.ResolvePaths(dir)
	want.Path = path
	if *c != want {
		t.Errorf("got  %+v\nwant %+v", *c, want)
	}
}

func TestWriteFailures(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	// A bad template writes nothing.
	path := filepath.Join(dir, "bad.toml")
	if err := WriteAgentFile(path, AgentTemplate{}); err == nil {
		t.Fatal("no error")
	}
	if _, err := os.Stat(path); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("a file was left behind: %v", err)
	}
	// A missing directory is reported.
	err := WriteServerFile(filepath.Join(dir, "nope", ServerFile), ServerTemplate{PublicAddress: "h:1"})
	checkErr(t, err, []string{"no such file or directory"})
}

func checkMode(t *testing.T, path string) {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("mode %v, want 0600", fi.Mode().Perm())
	}
}

// TestTOMLStrings checks that values the templates quote decode to exactly
// themselves.
func TestTOMLStrings(t *testing.T) {
	t.Parallel()
	for _, s := range []string{
		"", "plain", `quo"te`, `back\slash`, `"""`, "tab\there", "cr\r\nlf\n", "ctl\x00\x1f\x7f", "ünïcødé ✓",
		"-----BEGIN PRIVATE KEY-----\nabc+/=\n-----END PRIVATE KEY-----\n",
	} {
		t.Run(strings.ReplaceAll(s, "/", "_"), func(t *testing.T) {
			t.Parallel()
			for _, doc := range []string{"v = " + tomlString(s) + "\n", "v = " + tomlMultiline(s) + "\n"} {
				var got struct{ V string }
				if err := toml.Unmarshal([]byte(doc), &got); err != nil {
					t.Fatalf("%q: %v", doc, err)
				}
				if got.V != s {
					t.Errorf("%q decodes to %q", doc, got.V)
				}
			}
		})
	}
}

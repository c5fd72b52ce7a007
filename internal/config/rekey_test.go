package config

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tunnelrelay/tunnel/pkg/auth"
)

// newKeyPEM returns the PEM of a new agent key.
func newKeyPEM(t *testing.T) string {
	t.Helper()
	k, err := auth.NewAgentKey()
	if err != nil {
		t.Fatal(err)
	}
	return string(k.PEM())
}

// checkOnlyKeyChanged fails unless out is in with the key's value (from
// in's start to in's end) replaced, and loads with key newKey.
func checkOnlyKeyChanged(t *testing.T, in, out []byte, oldValue, newKey string) {
	t.Helper()
	i := bytes.Index(in, []byte(oldValue))
	if i < 0 {
		t.Fatalf("the test's old value is not in its input")
	}
	prefix, suffix := in[:i], in[i+len(oldValue):]
	if !bytes.HasPrefix(out, prefix) || !bytes.HasSuffix(out, suffix) {
		t.Fatalf("bytes around the key changed:\n--- in\n%s\n--- out\n%s", in, out)
	}
	cfg, err := ParseAgent("out.toml", out, nil)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Agent.Key.Reveal() != newKey {
		t.Error("the file does not hold the new key")
	}
}

func TestReplaceAgentKey(t *testing.T) {
	newKey := newKeyPEM(t)
	rendered, err := RenderAgent(AgentTemplate{Agent: "acme", ServerAddress: "tunnel.example.com:7443", CAPEM: testCAPEM, KeyPEM: testKeyPEM})
	if err != nil {
		t.Fatal(err)
	}
	// What a user adds: targets, comments, odd spacing.
	edited := append(bytes.Clone(rendered), "\n# our databases\n[[targets]]\nname = \"warehouse\"   # the big one\naddress = \"10.0.0.5:5432\"\n"...)
	escaped := strings.ReplaceAll(strings.TrimSuffix(testKeyPEM, "\n"), "\n", `\n`)

	tests := []struct {
		name     string
		in       string
		oldValue string // the bytes that must be replaced, quotes included
	}{
		{"as written by agent add, with targets", string(edited), tomlMultiline(testKeyPEM)},
		{"one-line string", strings.Replace(validAgent, tomlMultiline(testKeyPEM), `"`+escaped+`"`, 1), `"` + escaped + `"`},
		{"literal multi-line string", strings.Replace(validAgent, tomlMultiline(testKeyPEM), "'''\n"+testKeyPEM+"'''", 1), "'''\n" + testKeyPEM + "'''"},
		{"dotted key", "agent.name = \"acme\"\nagent.key = " + tomlMultiline(testKeyPEM) + " # key\n\n[server]\naddress = \"h:1\"\n", tomlMultiline(testKeyPEM)},
		{"key before name, CRLF lines", "[agent]\r\nkey = " + tomlMultiline(testKeyPEM) + "\r\nname = \"acme\"\r\n[server]\r\naddress = \"h:1\"\r\n",
			tomlMultiline(testKeyPEM)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := ParseAgent("in.toml", []byte(tt.in), nil); err != nil {
				t.Fatalf("the test's input does not load: %v", err)
			}
			out, err := ReplaceAgentKey("in.toml", []byte(tt.in), newKey)
			if err != nil {
				t.Fatal(err)
			}
			checkOnlyKeyChanged(t, []byte(tt.in), out, tt.oldValue, newKey)
		})
	}

	t.Run("errors", func(t *testing.T) {
		noKey := strings.Replace(validAgent, "key = "+tomlMultiline(testKeyPEM), "", 1)
		if _, err := ReplaceAgentKey("in.toml", []byte(noKey), newKey); !errors.Is(err, ErrKeyNotInFile) {
			t.Errorf("file without a key: %v, want ErrKeyNotInFile", err)
		}
		if _, err := ReplaceAgentKey("in.toml", []byte(validAgent), "not a key"); err == nil || strings.Contains(err.Error(), testKeyBody) {
			t.Errorf("bad new key: %v", err)
		}
		if _, err := ReplaceAgentKey("in.toml", []byte(validAgent+"\nbogus = 1\n"), newKey); err == nil {
			t.Error("a file that does not load was rewritten")
		}
	})
}

func TestRewriteAgentKey(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, AgentFile)
	if err := os.WriteFile(path, []byte(validAgent), 0o640); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(dir, "link.toml")
	if err := os.Symlink(AgentFile, link); err != nil {
		t.Fatal(err)
	}
	if err := CheckKeyRewritable(link); err != nil {
		t.Fatalf("CheckKeyRewritable: %v", err)
	}
	newKey := newKeyPEM(t)
	if err := RewriteAgentKey(link, newKey); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Lstat(link)
	if err != nil || fi.Mode()&os.ModeSymlink == 0 {
		t.Fatalf("the link was replaced by a file (%v)", err)
	}
	fi, err = os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("mode %v, want 0600", fi.Mode().Perm())
	}
	out, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	checkOnlyKeyChanged(t, []byte(validAgent), out, tomlMultiline(testKeyPEM), newKey)
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 2 {
		t.Errorf("%d files in the directory, want the config and the link: a temporary file was left", len(entries))
	}

	t.Run("unwritable directory", func(t *testing.T) {
		if os.Geteuid() == 0 {
			t.Skip("root writes anywhere")
		}
		ro := t.TempDir()
		p := filepath.Join(ro, AgentFile)
		if err := os.WriteFile(p, []byte(validAgent), 0o600); err != nil {
			t.Fatal(err)
		}
		os.Chmod(ro, 0o500)
		t.Cleanup(func() { os.Chmod(ro, 0o700) })
		if err := CheckKeyRewritable(p); err == nil {
			t.Error("CheckKeyRewritable passed for a read-only directory")
		}
		if err := RewriteAgentKey(p, newKey); err == nil {
			t.Error("RewriteAgentKey succeeded in a read-only directory")
		}
	})
	t.Run("no key in the file", func(t *testing.T) {
		p := filepath.Join(t.TempDir(), AgentFile)
		noKey := strings.Replace(validAgent, "key = "+tomlMultiline(testKeyPEM), "", 1)
		if err := os.WriteFile(p, []byte(noKey), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := CheckKeyRewritable(p); !errors.Is(err, ErrKeyNotInFile) {
			t.Errorf("CheckKeyRewritable = %v, want ErrKeyNotInFile", err)
		}
	})
}

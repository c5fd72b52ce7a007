// Package samples gives tests the sample configs of packaging/ in a form
// that loads: their PEM placeholders, which stand where `tunnel-server
// agent add` writes a CA certificate and a private key, replaced by freshly
// generated ones. It does not import internal/config, so that package's
// own tests can use it.
package samples

import (
	"bytes"
	"os"
	"path/filepath"
	"regexp"
	"testing"
	"time"

	"github.com/tunnelrelay/tunnel/pkg/auth"
)

// File names of the samples in packaging/.
const (
	AgentFile  = "tunnel-agent.toml"
	ServerFile = "tunnel-server.toml"
)

// placeholder matches a PEM block whose body is one line in parentheses:
// "(the agent's private key, from ...)" in place of base64.
var placeholder = regexp.MustCompile(`-----BEGIN ([A-Z ]+)-----\n\([^\n]*\)\n-----END ([A-Z ]+)-----\n`)

// Placeholders returns the PEM block types of data's placeholders, in
// order.
func Placeholders(data []byte) []string {
	var types []string
	for _, m := range placeholder.FindAllSubmatch(data, -1) {
		types = append(types, string(m[1]))
	}
	return types
}

// Fill returns data with every placeholder replaced by a PEM block of its
// type: a new CA certificate for CERTIFICATE, a new agent key for PRIVATE
// KEY. Other types are left as they are.
func Fill(t testing.TB, data []byte) []byte {
	t.Helper()
	ca, err := auth.NewCA("samples test CA", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	key, err := auth.NewAgentKey()
	if err != nil {
		t.Fatal(err)
	}
	return placeholder.ReplaceAllFunc(data, func(m []byte) []byte {
		switch string(placeholder.FindSubmatch(m)[1]) {
		case "CERTIFICATE":
			return ensureNewline(ca.CertPEM())
		case "PRIVATE KEY":
			return ensureNewline(key.PEM())
		}
		return m
	})
}

func ensureNewline(b []byte) []byte {
	if !bytes.HasSuffix(b, []byte("\n")) {
		b = append(b, '\n')
	}
	return b
}

// Read returns the sample called name from dir (packaging/, relative to the
// calling test's package), filled.
func Read(t testing.TB, dir, name string) []byte {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(dir, name))
	if err != nil {
		t.Fatal(err)
	}
	return Fill(t, data)
}

// Write writes the sample called name from dir, filled, to a new temporary
// directory under the same name, and returns its path.
func Write(t testing.TB, dir, name string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, Read(t, dir, name), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

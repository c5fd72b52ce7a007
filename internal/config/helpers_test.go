package config

import (
	"bytes"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

// Fixtures: a throwaway ed25519 key and a self-signed CA, made for these
// tests only.
var (
	testKeyPEM = mustRead("testdata/agent.key")
	testCAPEM  = mustRead("testdata/ca.crt")
)

// testKeyBody is a line of the key that must never show up in any output.
var testKeyBody = strings.Split(testKeyPEM, "\n")[1]

func mustRead(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		panic(err)
	}
	return string(b)
}

// golden compares got with testdata/name, or rewrites it under -update.
func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test ./internal/config -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs from the golden file (run with -update if the change is intended)\n--- got\n%s\n--- want\n%s", path, got, want)
	}
}

// envMap returns an env lookup over m.
func envMap(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

// validAgent is a complete agent config; cases edit it with strings.Replace
// or append to it.
var validAgent = `[server]
address = "tunnel.example.com:7443"
ca = """
` + testCAPEM + `"""

[agent]
name = "acme-bastion"
key = """
` + testKeyPEM + `"""

[[targets]]
name = "warehouse"
address = "10.0.0.5:5432"
`

// validServer is a complete server config.
const validServer = `[server]
public_address = "tunnel.example.com:7443"
cert = "server.crt"
key = "server.key"
ca = "ca.crt"

[admin]
token_file = "admin.token"
`

// checkErr fails t unless err contains every string in want (and is nil
// when want is empty) and matches every kind in kinds with errors.Is.
func checkErr(t *testing.T, err error, want []string, kinds ...error) {
	t.Helper()
	if len(want) == 0 {
		if err != nil {
			t.Fatalf("unexpected error:\n%v", err)
		}
		return
	}
	if err == nil {
		t.Fatalf("no error, want one containing %q", want)
	}
	for _, w := range want {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error does not contain %q:\n%v", w, err)
		}
	}
	for _, k := range kinds {
		if !errors.Is(err, k) {
			t.Errorf("error is not %v:\n%v", k, err)
		}
	}
	if strings.Contains(err.Error(), testKeyBody) {
		t.Errorf("error reveals the agent key:\n%v", err)
	}
}

package config

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestErrorReports shows whole error reports for bad files, as a user
// sees them, in golden files.
func TestErrorReports(t *testing.T) {
	t.Parallel()
	tests := []struct {
		file  string
		parse func(name string, data []byte) error
	}{
		{"bad-agent-keys.toml", func(n string, d []byte) error { _, err := ParseAgent(n, d, nil); return err }},
		{"bad-agent-values.toml", func(n string, d []byte) error { _, err := ParseAgent(n, d, nil); return err }},
		{"bad-server-values.toml", func(n string, d []byte) error { _, err := ParseServer(n, d, nil); return err }},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			t.Parallel()
			name := filepath.Join("testdata", tt.file)
			data, err := os.ReadFile(name)
			if err != nil {
				t.Fatal(err)
			}
			err = tt.parse(name, data)
			if err == nil {
				t.Fatal("no error")
			}
			// Every line is one *Error.
			var joined interface{ Unwrap() []error }
			if !errors.As(err, &joined) {
				t.Fatalf("not joined: %T", err)
			}
			for _, e := range joined.Unwrap() {
				var ce *Error
				if !errors.As(e, &ce) || strings.Contains(e.Error(), "\n") {
					t.Errorf("not one *Error per line: %T %q", e, e)
				}
			}
			golden(t, strings.TrimSuffix(tt.file, ".toml")+".errors.golden", []byte(err.Error()+"\n"))
		})
	}
}

func TestErrorFormat(t *testing.T) {
	t.Parallel()
	e := invalid("targets[1].address", `"db"`, "missing port")
	tests := []struct {
		name string
		err  Error
		want string
	}{
		{"bare", *e, `targets[1].address "db": missing port`},
		{"file", Error{File: "a.toml", msg: "m"}, "a.toml: m"},
		{"line", Error{File: "a.toml", Line: 3, msg: "m"}, "a.toml:3: m"},
		{"column", Error{File: "a.toml", Line: 3, Column: 7, msg: "m"}, "a.toml:3:7: m"},
		{"env wins", Error{File: "a.toml", Line: 3, Env: "TUNNEL_X", msg: "m"}, "TUNNEL_X: m"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.err.Error(); got != tt.want {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
	if !errors.Is(e, ErrInvalid) {
		t.Error("not ErrInvalid")
	}
}

package config

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/pelletier/go-toml/v2"
)

// renderings returns v as every output path a config may take.
func renderings(t *testing.T, v any) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%q", "%x", "%X", "%d"} {
		out["fmt "+verb] = fmt.Sprintf(verb, v)
		out["fmt pointer "+verb] = fmt.Sprintf(verb, &v)
	}
	out["fmt Sprint"] = fmt.Sprint(v)
	if j, err := json.Marshal(v); err != nil {
		t.Errorf("json: %v", err)
	} else {
		out["json"] = string(j)
	}
	switch v.(type) {
	case AgentTemplate: // its fields are plain strings; RenderAgent is its TOML
	case Secret, ProxyURL: // not a document; covered in a struct by TestSecretRedacted, TestProxyNeverShown
	default:
		b, err := toml.Marshal(v)
		if err != nil {
			t.Errorf("toml: %v", err)
		}
		out["toml"] = string(b)
	}
	for name, h := range map[string]func(*bytes.Buffer) slog.Handler{
		"slog text": func(b *bytes.Buffer) slog.Handler { return slog.NewTextHandler(b, nil) },
		"slog json": func(b *bytes.Buffer) slog.Handler { return slog.NewJSONHandler(b, nil) },
	} {
		var b bytes.Buffer
		slog.New(h(&b)).Info("config", "config", v, "pointer", &v)
		out[name] = b.String()
	}
	return out
}

func TestSecretNeverShown(t *testing.T) {
	t.Parallel()
	c, err := ParseAgent(AgentFile, []byte(validAgent), nil)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := AgentTemplate{Agent: "a", ServerAddress: "h:1", KeyPEM: testKeyPEM, Created: time.Unix(0, 0)}
	for name, v := range map[string]any{
		"secret":          c.Agent.Key,
		"agent section":   c.Agent,
		"agent config":    *c,
		"agent config pt": c,
		"agent template":  tmpl,
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			for how, s := range renderings(t, v) {
				if strings.Contains(s, testKeyBody) || strings.Contains(s, "PRIVATE KEY") {
					t.Errorf("%s shows the key:\n%s", how, s)
				}
			}
		})
	}
	if c.Agent.Key.Reveal() != testKeyPEM {
		t.Error("Reveal does not return the key")
	}
}

func TestSecretRedacted(t *testing.T) {
	t.Parallel()
	s := Secret("hunter2")
	tests := []struct {
		name, got, want string
	}{
		{"String", s.String(), "[redacted]"},
		{"%v", fmt.Sprintf("%v", s), "[redacted]"},
		{"%#v", fmt.Sprintf("%#v", s), "[redacted]"},
		{"%q", fmt.Sprintf("%q", s), "[redacted]"},
		{"json", mustJSON(t, s), `"[redacted]"`},
		{"json in struct", mustJSON(t, struct{ K Secret }{s}), `{"K":"[redacted]"}`},
		{"toml in struct", mustTOML(t, struct{ K Secret }{s}), "K = '[redacted]'\n"},
		{"slog", slog.AnyValue(s).Resolve().String(), "[redacted]"},
		{"Reveal", s.Reveal(), "hunter2"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.got != tt.want {
				t.Errorf("got %q, want %q", tt.got, tt.want)
			}
		})
	}
	if s.IsZero() || !Secret("").IsZero() {
		t.Error("IsZero")
	}
}

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func mustTOML(t *testing.T, v any) string {
	t.Helper()
	b, err := toml.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

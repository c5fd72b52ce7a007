package logging

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"strings"
	"testing"
)

func TestParseLevels(t *testing.T) {
	for _, tc := range []struct {
		spec    string
		def     slog.Level
		modules map[string]slog.Level
		err     string
	}{
		{spec: "", def: slog.LevelInfo},
		{spec: "debug", def: slog.LevelDebug},
		{spec: "TRACE", def: LevelTrace},
		{spec: "warn,mux=debug", def: slog.LevelWarn, modules: map[string]slog.Level{"mux": slog.LevelDebug}},
		{spec: "mux=trace", def: slog.LevelInfo, modules: map[string]slog.Level{"mux": LevelTrace}},
		{spec: "loud", err: `unknown log level "loud"`},
		{spec: "=debug", err: "missing module name"},
		{spec: "mux=chatty", err: `module "mux": unknown log level "chatty"`},
	} {
		t.Run(tc.spec, func(t *testing.T) {
			lv, err := ParseLevels(tc.spec)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err = %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if lv.Default != tc.def {
				t.Errorf("default %v, want %v", lv.Default, tc.def)
			}
			for m, want := range tc.modules {
				if got := lv.For(m); got != want {
					t.Errorf("module %s: %v, want %v", m, got, want)
				}
			}
		})
	}
}

func TestModuleLevels(t *testing.T) {
	var buf bytes.Buffer
	l, err := New(&buf, "warn,mux=debug", true)
	if err != nil {
		t.Fatal(err)
	}
	l.Info("root info")                                                 // dropped
	l.Warn("root warn")                                                 // kept
	Module(l, "mux").Debug("mux debug")                                 // kept
	Module(l, "mux").Log(context.Background(), LevelTrace, "mux trace") // dropped
	Module(l, "server").Info("server info")                             // dropped
	Module(Module(l, "mux"), "server").Warn("nested")                   // kept: last module wins
	Module(l, "mux").With("x", 1).Debug("mux with attr")                // kept

	var got []string
	for line := range strings.SplitSeq(strings.TrimSpace(buf.String()), "\n") {
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("not JSON: %q", line)
		}
		got = append(got, m["msg"].(string))
	}
	want := []string{"root warn", "mux debug", "nested", "mux with attr"}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Fatalf("logged %q, want %q", got, want)
	}
}

func TestTraceName(t *testing.T) {
	var buf bytes.Buffer
	l, _ := New(&buf, "trace", false)
	l.Log(context.Background(), LevelTrace, "detail")
	if !strings.Contains(buf.String(), "level=TRACE") {
		t.Fatalf("trace line: %q", buf.String())
	}
}

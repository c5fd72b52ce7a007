// Package logging builds the project's slog loggers: text or JSON, a global
// level and per-module levels ("info,mux=debug"), and the attribute keys that
// every package uses, so that one grep finds one agent's or one session's
// lines across components.
package logging

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"strings"
)

// LevelTrace is below debug: per-frame and per-stream detail.
const LevelTrace = slog.Level(-8)

// Attribute keys.
const (
	KeyModule   = "module"
	KeyAgent    = "agent"
	KeyRoute    = "route"
	KeyTarget   = "target"
	KeySession  = "session"
	KeyClient   = "client"
	KeyRemote   = "remote"
	KeyErr      = "err"
	KeyReason   = "reason"
	KeyDuration = "duration"
	// KeyBytesUp counts bytes from the client to the target, KeyBytesDown
	// bytes from the target to the client.
	KeyBytesUp   = "bytes_up"
	KeyBytesDown = "bytes_down"
)

// Levels is a default level and per-module overrides.
type Levels struct {
	Default slog.Level
	Modules map[string]slog.Level
}

// For returns the level for a module.
func (l Levels) For(module string) slog.Level {
	if lv, ok := l.Modules[module]; ok {
		return lv
	}
	return l.Default
}

// min is the lowest level anything may log at.
func (l Levels) min() slog.Level {
	m := l.Default
	for _, lv := range l.Modules {
		m = min(m, lv)
	}
	return m
}

// ParseLevel parses trace, debug, info, warn or error.
func ParseLevel(s string) (slog.Level, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "trace":
		return LevelTrace, nil
	case "debug":
		return slog.LevelDebug, nil
	case "info", "":
		return slog.LevelInfo, nil
	case "warn", "warning":
		return slog.LevelWarn, nil
	case "error":
		return slog.LevelError, nil
	}
	return 0, fmt.Errorf("unknown log level %q (want trace, debug, info, warn or error)", s)
}

// ParseLevels parses a spec such as "info", "debug" or "warn,mux=debug,agent=trace".
func ParseLevels(spec string) (Levels, error) {
	lv := Levels{Default: slog.LevelInfo, Modules: map[string]slog.Level{}}
	for part := range strings.SplitSeq(spec, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		module, level, ok := strings.Cut(part, "=")
		if !ok {
			l, err := ParseLevel(part)
			if err != nil {
				return Levels{}, err
			}
			lv.Default = l
			continue
		}
		module = strings.TrimSpace(module)
		if module == "" {
			return Levels{}, fmt.Errorf("log level %q: missing module name before '='", part)
		}
		l, err := ParseLevel(level)
		if err != nil {
			return Levels{}, fmt.Errorf("module %q: %w", module, err)
		}
		lv.Modules[module] = l
	}
	return lv, nil
}

// New returns a logger writing to w, in JSON when json is set, filtered by
// the level spec (see ParseLevels).
func New(w io.Writer, spec string, json bool) (*slog.Logger, error) {
	levels, err := ParseLevels(spec)
	if err != nil {
		return nil, err
	}
	opts := &slog.HandlerOptions{Level: levels.min(), ReplaceAttr: replaceLevel}
	var base slog.Handler
	if json {
		base = slog.NewJSONHandler(w, opts)
	} else {
		base = slog.NewTextHandler(w, opts)
	}
	return slog.New(&moduleHandler{base: base, levels: levels, level: levels.Default}), nil
}

// Module returns l for a named module; its level follows the module's.
func Module(l *slog.Logger, name string) *slog.Logger {
	return l.With(KeyModule, name)
}

// Discard is a logger that drops everything.
func Discard() *slog.Logger { return slog.New(slog.DiscardHandler) }

func replaceLevel(groups []string, a slog.Attr) slog.Attr {
	if a.Key == slog.LevelKey && len(groups) == 0 {
		if lv, ok := a.Value.Any().(slog.Level); ok && lv <= LevelTrace {
			a.Value = slog.StringValue("TRACE")
		}
	}
	return a
}

// moduleHandler applies the level of the module named by the last "module"
// attribute added with WithAttrs.
type moduleHandler struct {
	base   slog.Handler
	levels Levels
	level  slog.Level
}

func (h *moduleHandler) Enabled(_ context.Context, l slog.Level) bool { return l >= h.level }

func (h *moduleHandler) Handle(ctx context.Context, r slog.Record) error {
	return h.base.Handle(ctx, r)
}

func (h *moduleHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	level := h.level
	for _, a := range attrs {
		if a.Key == KeyModule {
			level = h.levels.For(a.Value.String())
		}
	}
	return &moduleHandler{base: h.base.WithAttrs(attrs), levels: h.levels, level: level}
}

func (h *moduleHandler) WithGroup(name string) slog.Handler {
	return &moduleHandler{base: h.base.WithGroup(name), levels: h.levels, level: h.level}
}

package proto

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"time"
	"unicode/utf8"
)

// Hello is the agent's first message on the control stream.
type Hello struct {
	// Version is the newest protocol version the agent speaks.
	Version int `json:"version"`
	// AgentVersion is the agent's release, for the server's status.
	AgentVersion string `json:"agent_version,omitempty"`
	// Targets are the names of the targets the agent declares.
	Targets []string `json:"targets"`
	// Capabilities name optional features the agent supports.
	Capabilities []string `json:"capabilities,omitempty"`
	// Instance identifies one run of the agent process. A new connection
	// from the same instance means the agent gave up on its old one.
	Instance string `json:"instance,omitempty"`
	// Probe asks the server to check the agent's credential and answer,
	// without making this connection the agent's live one.
	Probe bool `json:"probe,omitempty"`
	// Fallback says why the agent connected over TLS although it prefers
	// QUIC (transport "auto"), for the server's status and logs.
	Fallback string `json:"fallback,omitempty"`
}

// Welcome accepts the agent.
type Welcome struct {
	// Version is the protocol version the session speaks: the lower of the
	// two peers' newest.
	Version int `json:"version"`
	// HeartbeatIntervalMS is how often the server pings, in milliseconds.
	HeartbeatIntervalMS int64 `json:"heartbeat_interval_ms"`
	// HeartbeatTimeoutMS is how long either side lets the connection stay
	// silent (no byte at all arriving on it, on any stream) before it gives
	// up on it, in milliseconds.
	HeartbeatTimeoutMS int64 `json:"heartbeat_timeout_ms"`
	// ServerVersion is the server's release.
	ServerVersion string `json:"server_version,omitempty"`
}

// HeartbeatInterval returns the interval as a duration.
func (w *Welcome) HeartbeatInterval() time.Duration {
	return time.Duration(w.HeartbeatIntervalMS) * time.Millisecond
}

// HeartbeatTimeout returns the timeout as a duration.
func (w *Welcome) HeartbeatTimeout() time.Duration {
	return time.Duration(w.HeartbeatTimeoutMS) * time.Millisecond
}

// RefuseCode says why the server refused an agent.
type RefuseCode string

const (
	RefuseUnknownAgent       RefuseCode = "unknown_agent"
	RefuseAgentDisabled      RefuseCode = "agent_disabled"
	RefuseKeyMismatch        RefuseCode = "key_mismatch"
	RefuseAlreadyConnected   RefuseCode = "already_connected"
	RefuseUnsupportedVersion RefuseCode = "unsupported_version"
	RefuseBadHello           RefuseCode = "bad_hello"
	RefuseShuttingDown       RefuseCode = "shutting_down"
	RefuseInternal           RefuseCode = "internal_error"
)

// Permanent reports whether an agent should stop retrying: its credential,
// its version or its hello (which comes from its config) will not be
// accepted however often it tries.
func (c RefuseCode) Permanent() bool {
	switch c {
	case RefuseUnknownAgent, RefuseAgentDisabled, RefuseKeyMismatch, RefuseUnsupportedVersion, RefuseBadHello:
		return true
	}
	return false
}

// Refuse refuses the agent.
type Refuse struct {
	Code    RefuseCode `json:"code"`
	Message string     `json:"message"`
}

func (r *Refuse) Error() string { return fmt.Sprintf("refused by server: %s", r.Message) }

// WriteJSON writes v as the JSON payload of a frame of type t.
func WriteJSON(w io.Writer, t FrameType, v any) error {
	payload, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return WriteFrame(w, t, payload)
}

// DecodeJSON decodes a JSON payload into v.
func DecodeJSON(t FrameType, payload []byte, v any) error {
	if err := json.Unmarshal(payload, v); err != nil {
		return fmt.Errorf("%w: %s: %v", ErrMalformed, t, err)
	}
	return nil
}

// Validate checks a Hello from the network.
func (h *Hello) Validate() error {
	if h.Version < 1 {
		return fmt.Errorf("%w: hello: version %d", ErrMalformed, h.Version)
	}
	if len(h.Targets) > maxTargets {
		return fmt.Errorf("%w: hello: %d targets, limit %d", ErrMalformed, len(h.Targets), maxTargets)
	}
	for _, t := range h.Targets {
		if t == "" || len(t) > maxNameLen {
			return fmt.Errorf("%w: hello: bad target name %q", ErrMalformed, t)
		}
	}
	return nil
}

const (
	maxTargets = 1000
	maxNameLen = 255
)

// MaxFallbackLen bounds Hello.Fallback: an agent sends at most this many
// bytes, and a server keeps at most this many (a longer one is cut, not
// refused: it is only for display).
const MaxFallbackLen = 512

// ClipFallback returns s cut to MaxFallbackLen bytes at a character
// boundary.
func ClipFallback(s string) string {
	if len(s) <= MaxFallbackLen {
		return s
	}
	cut := MaxFallbackLen
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut]
}

// AppendSeq returns the payload of a Ping or Pong.
func AppendSeq(b []byte, seq uint64) []byte { return binary.BigEndian.AppendUint64(b, seq) }

// ParseSeq parses the payload of a Ping or Pong.
func ParseSeq(payload []byte) (uint64, error) {
	if len(payload) < 8 {
		return 0, fmt.Errorf("%w: heartbeat of %d bytes", ErrMalformed, len(payload))
	}
	return binary.BigEndian.Uint64(payload), nil
}

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
	// RefuseBadToken refuses an Enroll: the token is unknown, used,
	// expired, or its agent is already enrolled.
	RefuseBadToken RefuseCode = "bad_token"
)

// Permanent reports whether an agent should stop retrying: its credential,
// its version or its hello (which comes from its config) will not be
// accepted however often it tries.
func (c RefuseCode) Permanent() bool {
	switch c {
	case RefuseUnknownAgent, RefuseAgentDisabled, RefuseKeyMismatch, RefuseUnsupportedVersion, RefuseBadHello, RefuseBadToken:
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

// Reconnect asks the agent to open a new connection (version 2).
type Reconnect struct {
	// Reason says why, for the agent's log ("server shutting down").
	Reason string `json:"reason"`
}

// Draining says the agent is stopping (version 2).
type Draining struct {
	// Reason says why, for the server's log.
	Reason string `json:"reason"`
}

// Targets replaces the declared target names (version 2), with the same
// rules as Hello's.
type Targets struct {
	Targets []string `json:"targets"`
}

// Validate checks a Targets from the network.
func (t *Targets) Validate() error { return validateTargets("targets", t.Targets) }

// RotateKey asks the agent to make a new key and announce it with NewKey
// (version 2). It has no fields yet.
type RotateKey struct{}

// NewKey announces the agent's next key (version 2). The server accepts
// that key, besides the current one, until a connection proves it: from
// then on only the new key is accepted.
type NewKey struct {
	// Fingerprint is the new public key's fingerprint ("sha256:...").
	Fingerprint string `json:"fingerprint"`
}

// KeyAccepted answers NewKey (version 2).
type KeyAccepted struct {
	// Fingerprint repeats NewKey's.
	Fingerprint string `json:"fingerprint"`
	// Error is why the key was not accepted; empty when it was.
	Error string `json:"error,omitempty"`
}

// Enroll registers a new agent's key with a one-time token (version 2). It
// takes the place of Hello on the first stream of a connection whose
// client certificate carries the new key.
type Enroll struct {
	// Version is the newest protocol version the agent speaks.
	Version int `json:"version"`
	// AgentVersion is the agent's release, for the server's log.
	AgentVersion string `json:"agent_version,omitempty"`
	// Token is the enrollment token printed by `agent add --token`.
	Token string `json:"token"`
}

// Enrolled answers Enroll (version 2).
type Enrolled struct {
	// Agent is the name the token was issued for.
	Agent string `json:"agent"`
	// Fingerprint is the key now registered for it.
	Fingerprint string `json:"fingerprint"`
}

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
	return validateTargets("hello", h.Targets)
}

func validateTargets(msg string, targets []string) error {
	if len(targets) > maxTargets {
		return fmt.Errorf("%w: %s: %d targets, limit %d", ErrMalformed, msg, len(targets), maxTargets)
	}
	for _, t := range targets {
		if t == "" || len(t) > maxNameLen {
			return fmt.Errorf("%w: %s: bad target name %q", ErrMalformed, msg, t)
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
func ClipFallback(s string) string { return Clip(s, MaxFallbackLen) }

// Clip returns s cut to at most n bytes at a character boundary.
func Clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
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

package config

import (
	"encoding"
	"fmt"
	"io"
	"log/slog"
	"reflect"

	"github.com/pelletier/go-toml/v2/unstable"
)

// redacted is what a Secret prints as, everywhere.
const redacted = "[redacted]"

// Secret is a string that must never be printed, logged or serialized: a
// private key. Every way of formatting or encoding it (fmt verbs, String,
// text, JSON, TOML, slog) gives "[redacted]"; only Reveal returns the value.
// It does not protect against reflection reading the string directly.
type Secret string

var secretType = reflect.TypeFor[Secret]()

var (
	_ fmt.Formatter  = Secret("")
	_ fmt.Stringer   = Secret("")
	_ fmt.GoStringer = Secret("")
	_ slog.LogValuer = Secret("")

	_ encoding.TextMarshaler = (*Secret)(nil)
	_ unstable.Marshaler     = Secret("")
)

// Reveal returns the secret value. Call it only where the value is used,
// never to build a message.
func (s Secret) Reveal() string { return string(s) }

// IsZero reports whether the secret is empty, without revealing it.
func (s Secret) IsZero() bool { return s == "" }

// String returns "[redacted]".
func (s Secret) String() string { return redacted }

// GoString returns "[redacted]", so %#v does not print the value.
func (s Secret) GoString() string { return redacted }

// Format writes "[redacted]" for every verb, including %q, %x and %#v,
// which would otherwise bypass String.
func (s Secret) Format(f fmt.State, _ rune) { _, _ = io.WriteString(f, redacted) }

// MarshalText returns "[redacted]". Its receiver is a pointer because
// go-toml ignores a value-receiver MarshalText on a string type and would
// write the secret; it still applies to addressable and copied values.
func (s *Secret) MarshalText() ([]byte, error) { return []byte(redacted), nil }

// MarshalTOML returns "[redacted]" as a TOML string, for encoders that
// enable go-toml's Marshaler interface.
func (s Secret) MarshalTOML() ([]byte, error) { return []byte(`"` + redacted + `"`), nil }

// MarshalJSON returns "[redacted]" as a JSON string.
func (s Secret) MarshalJSON() ([]byte, error) { return []byte(`"` + redacted + `"`), nil }

// LogValue returns "[redacted]" for log/slog.
func (s Secret) LogValue() slog.Value { return slog.StringValue(redacted) }

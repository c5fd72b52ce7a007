package config

import (
	"fmt"
	"time"
)

// Duration is a time.Duration written in TOML and in the environment as a
// Go duration string such as "10s", "1m30s" or "250ms".
type Duration struct{ time.Duration }

// UnmarshalText parses a duration string. A bare number is refused: "10"
// could mean seconds or nanoseconds.
func (d *Duration) UnmarshalText(text []byte) error {
	v, err := time.ParseDuration(string(text))
	if err != nil {
		return fmt.Errorf("invalid duration %q (want a number with a unit, like \"10s\" or \"1m30s\")", text)
	}
	d.Duration = v
	return nil
}

// MarshalText writes the duration in the form UnmarshalText reads.
func (d Duration) MarshalText() ([]byte, error) {
	return []byte(d.Duration.String()), nil
}

package store

import (
	"context"
	"fmt"
)

// BackendSQLite names the embedded SQLite backend, the default.
const BackendSQLite = "sqlite"

// Config selects and configures a backend. The zero value is not usable:
// Path is required for SQLite.
type Config struct {
	// Backend names the implementation; empty means BackendSQLite.
	Backend string
	// Path is the SQLite database file. Its directory must exist; the file is
	// created with mode 0600 if it does not.
	Path string
}

// Validate reports a Config that Open would refuse, naming the field.
func (c Config) Validate() error {
	switch c.backend() {
	case BackendSQLite:
		if c.Path == "" {
			return fmt.Errorf("store: path is empty (backend %q needs a database file): %w", BackendSQLite, ErrInvalid)
		}
		return nil
	default:
		return fmt.Errorf("store: backend %q is unknown (known: %q): %w", c.Backend, BackendSQLite, ErrInvalid)
	}
}

func (c Config) backend() string {
	if c.Backend == "" {
		return BackendSQLite
	}
	return c.Backend
}

// Open opens the backend cfg names. It is the one place where a backend is
// chosen; callers hold the result as a Store.
func Open(ctx context.Context, cfg Config) (Store, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	switch cfg.backend() {
	case BackendSQLite:
		s, err := OpenSQLite(ctx, cfg.Path)
		if err != nil {
			return nil, err
		}
		return s, nil
	default:
		// Validate accepted a backend this switch lacks: a bug here.
		return nil, fmt.Errorf("store: backend %q has no opener: %w", cfg.Backend, ErrInvalid)
	}
}

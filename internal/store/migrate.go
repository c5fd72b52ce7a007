package store

import (
	"embed"
	"fmt"
	"io/fs"
	"path"
	"strconv"
	"strings"
)

// schemaFS holds each backend's migrations under schema/BACKEND/, one file per
// schema version named NNNN_what.sql and numbered from 1 without gaps.
//
//go:embed schema
var schemaFS embed.FS

// migration is one step of a backend's schema history.
type migration struct {
	version int
	name    string // file name, for error messages
	sql     string
}

// loadMigrations reads the migrations in dir of fsys, sorted by version. It
// fails unless they are numbered 1, 2, 3... so a missing or duplicated file
// is caught by the first test run rather than by a user's database.
func loadMigrations(fsys fs.FS, dir string) ([]migration, error) {
	entries, err := fs.ReadDir(fsys, dir)
	if err != nil {
		return nil, fmt.Errorf("read migrations: %w", err)
	}
	var migs []migration
	for _, e := range entries {
		name := e.Name()
		if e.IsDir() || !strings.HasSuffix(name, ".sql") {
			continue
		}
		prefix, _, ok := strings.Cut(name, "_")
		version, err := strconv.Atoi(prefix)
		if !ok || err != nil || version < 1 {
			return nil, fmt.Errorf("migration %s: name must start with a version number and '_' (0001_init.sql)", name)
		}
		text, err := fs.ReadFile(fsys, path.Join(dir, name))
		if err != nil {
			return nil, fmt.Errorf("read migration %s: %w", name, err)
		}
		migs = append(migs, migration{version: version, name: name, sql: string(text)})
	}
	// fs.ReadDir sorts by name and the prefixes are zero-padded, but check
	// the numbering itself rather than trust the padding.
	for i, m := range migs {
		if m.version != i+1 {
			return nil, fmt.Errorf("migration %s: has version %d, want %d (versions must run 1, 2, 3... without gaps)", m.name, m.version, i+1)
		}
	}
	if len(migs) == 0 {
		return nil, fmt.Errorf("read migrations: none in %s", dir)
	}
	return migs, nil
}

package store_test

import (
	"database/sql"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tunnelrelay/tunnel/internal/store"
	"github.com/tunnelrelay/tunnel/internal/store/storetest"
)

func TestSQLiteConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store {
		return openSQLite(t, tempDBPath(t))
	})
}

// tempDBPath returns the path of a database file that does not exist yet.
func tempDBPath(t *testing.T) string {
	t.Helper()
	return filepath.Join(t.TempDir(), "registry.db")
}

// openSQLite opens the store at path and closes it when the test ends.
func openSQLite(t *testing.T, path string) *store.SQLite {
	t.Helper()
	s, err := store.OpenSQLite(t.Context(), path)
	if err != nil {
		t.Fatalf("OpenSQLite: %v", err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return s
}

// closeSQLite closes s now, failing the test on error.
func closeSQLite(t *testing.T, s *store.SQLite) {
	t.Helper()
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
}

// rawDB opens the file at path with the driver alone, bypassing the store, to
// look at or tamper with what the store wrote.
func rawDB(t *testing.T, path string) *sql.DB {
	t.Helper()
	db, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatalf("sql.Open: %v", err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// queryInt runs a query returning one integer.
func queryInt(t *testing.T, db *sql.DB, query string) int {
	t.Helper()
	var n int
	if err := db.QueryRowContext(t.Context(), query).Scan(&n); err != nil {
		t.Fatalf("%s: %v", query, err)
	}
	return n
}

// fill registers two agents and two routes in s.
func fill(t *testing.T, s store.Store) {
	t.Helper()
	ctx := t.Context()
	for _, a := range []store.Agent{
		{Name: "acme", Fingerprint: "sha256:aaaa", CreatedAt: time.Date(2024, 2, 29, 23, 59, 59, 999999000, time.UTC)},
		{Name: "beta", Fingerprint: "sha256:bbbb", Disabled: true},
	} {
		if err := s.AddAgent(ctx, a); err != nil {
			t.Fatalf("AddAgent: %v", err)
		}
	}
	for _, r := range []store.Route{
		{Name: "warehouse", Agent: "acme", Target: "pg", Listen: "127.0.0.1:15432", Allow: []string{"10.0.0.0/8", "::1/128"}, MaxSessions: 3},
		{Name: "crm", Agent: "beta", Target: "mysql", Listen: ":13306", Protocol: "mysql"},
	} {
		if err := s.AddRoute(ctx, r); err != nil {
			t.Fatalf("AddRoute: %v", err)
		}
	}
}

// snapshot returns everything s holds.
func snapshot(t *testing.T, s store.Store) ([]store.Agent, []store.Route) {
	t.Helper()
	agents, err := s.Agents(t.Context())
	if err != nil {
		t.Fatalf("Agents: %v", err)
	}
	routes, err := s.Routes(t.Context())
	if err != nil {
		t.Fatalf("Routes: %v", err)
	}
	return agents, routes
}

func TestSQLitePersistsAcrossReopen(t *testing.T) {
	path := tempDBPath(t)
	s := openSQLite(t, path)
	fill(t, s)
	wantAgents, wantRoutes := snapshot(t, s)
	version := queryInt(t, store.SQLiteDB(s), "PRAGMA user_version")
	closeSQLite(t, s)

	for round := range 2 {
		s = openSQLite(t, path)
		gotAgents, gotRoutes := snapshot(t, s)
		if !reflect.DeepEqual(gotAgents, wantAgents) {
			t.Errorf("reopen %d: Agents = %+v, want %+v", round, gotAgents, wantAgents)
		}
		if !reflect.DeepEqual(gotRoutes, wantRoutes) {
			t.Errorf("reopen %d: Routes = %+v, want %+v", round, gotRoutes, wantRoutes)
		}
		if got := queryInt(t, store.SQLiteDB(s), "PRAGMA user_version"); got != version {
			t.Errorf("reopen %d: schema version = %d, want %d", round, got, version)
		}
		closeSQLite(t, s)
	}
}

func TestSQLiteOddPaths(t *testing.T) {
	// The path goes into a file: URI; characters with a meaning there must
	// still name the file, not start a query or fragment.
	for _, name := range []string{"space in name.db", "what?.db", "hash#1.db", "percent%20.db", "colon:.db"} {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, name)
			s := openSQLite(t, path)
			fill(t, s)
			closeSQLite(t, s)
			entries, err := os.ReadDir(dir)
			if err != nil {
				t.Fatal(err)
			}
			if len(entries) != 1 || entries[0].Name() != name {
				var names []string
				for _, e := range entries {
					names = append(names, e.Name())
				}
				t.Fatalf("directory holds %q, want only %q", names, name)
			}
			agents, _ := snapshot(t, openSQLite(t, path))
			if len(agents) != 2 {
				t.Errorf("%d agents after reopen, want 2", len(agents))
			}
		})
	}
}

func TestSQLiteRelativePath(t *testing.T) {
	t.Chdir(t.TempDir())
	s := openSQLite(t, "registry.db")
	fill(t, s)
	if _, err := os.Stat("registry.db"); err != nil {
		t.Fatalf("database not created in the working directory: %v", err)
	}
}

func TestSQLiteFileMode(t *testing.T) {
	t.Run("NewFile", func(t *testing.T) {
		path := tempDBPath(t)
		s := openSQLite(t, path)
		fill(t, s) // makes SQLite write the -wal and -shm files
		for _, p := range []string{path, path + "-wal", path + "-shm"} {
			fi, err := os.Stat(p)
			if err != nil {
				t.Fatalf("stat: %v", err)
			}
			if mode := fi.Mode().Perm(); mode != 0o600 {
				t.Errorf("%s has mode %#o, want 0600", filepath.Base(p), mode)
			}
		}
	})

	t.Run("ExistingFileKeepsMode", func(t *testing.T) {
		path := tempDBPath(t)
		if err := os.WriteFile(path, nil, 0o640); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(path, 0o640); err != nil { // past the umask
			t.Fatal(err)
		}
		openSQLite(t, path)
		fi, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		if mode := fi.Mode().Perm(); mode != 0o640 {
			t.Errorf("mode %#o, want the operator's 0640", mode)
		}
	})
}

func TestSQLitePragmas(t *testing.T) {
	db := store.SQLiteDB(openSQLite(t, tempDBPath(t)))
	tests := []struct {
		pragma string
		want   string
	}{
		{"journal_mode", "wal"},
		{"busy_timeout", "5000"},
		{"foreign_keys", "1"},
	}
	for _, tt := range tests {
		t.Run(tt.pragma, func(t *testing.T) {
			var got string
			if err := db.QueryRowContext(t.Context(), "PRAGMA "+tt.pragma).Scan(&got); err != nil {
				t.Fatal(err)
			}
			if !strings.EqualFold(got, tt.want) {
				t.Errorf("PRAGMA %s = %q, want %q", tt.pragma, got, tt.want)
			}
		})
	}
	t.Run("MaxOpenConns", func(t *testing.T) {
		if got := db.Stats().MaxOpenConnections; got != 1 {
			t.Errorf("MaxOpenConnections = %d, want 1", got)
		}
	})
}

func TestOpenSQLiteErrors(t *testing.T) {
	tests := []struct {
		name  string
		setup func(t *testing.T) string // returns the path to open
		want  error                     // nil: any error
		parts []string                  // what the message must say
	}{
		{
			name:  "EmptyPath",
			setup: func(t *testing.T) string { return "" },
			want:  store.ErrInvalid,
		},
		{
			name:  "MissingDirectory",
			setup: func(t *testing.T) string { return filepath.Join(t.TempDir(), "missing", "registry.db") },
			want:  fs.ErrNotExist,
			parts: []string{"missing", "does not exist"},
		},
		{
			name:  "PathIsDirectory",
			setup: func(t *testing.T) string { return t.TempDir() },
		},
		{
			name: "NotADatabase",
			setup: func(t *testing.T) string {
				path := tempDBPath(t)
				if err := os.WriteFile(path, []byte(strings.Repeat("not sqlite\n", 100)), 0o600); err != nil {
					t.Fatal(err)
				}
				return path
			},
		},
		{
			name: "OtherProgramsTables",
			setup: func(t *testing.T) string {
				path := tempDBPath(t)
				if _, err := rawDB(t, path).ExecContext(t.Context(), "CREATE TABLE notes (body TEXT)"); err != nil {
					t.Fatal(err)
				}
				return path
			},
			want: store.ErrForeignDatabase,
		},
		{
			name: "OtherProgramsApplicationID",
			setup: func(t *testing.T) string {
				path := tempDBPath(t)
				if _, err := rawDB(t, path).ExecContext(t.Context(), "PRAGMA application_id = 42"); err != nil {
					t.Fatal(err)
				}
				return path
			},
			want: store.ErrForeignDatabase,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := tt.setup(t)
			s, err := store.OpenSQLite(t.Context(), path)
			if err == nil {
				s.Close()
				t.Fatal("OpenSQLite succeeded, want an error")
			}
			if tt.want != nil && !errors.Is(err, tt.want) {
				t.Errorf("error = %v, want one wrapping %q", err, tt.want)
			}
			for _, p := range tt.parts {
				if !strings.Contains(err.Error(), p) {
					t.Errorf("error %q does not say %q", err, p)
				}
			}
		})
	}
}

func TestOpenSQLiteRefusesNewerSchema(t *testing.T) {
	path := tempDBPath(t)
	s := openSQLite(t, path)
	fill(t, s)
	newer := queryInt(t, store.SQLiteDB(s), "PRAGMA user_version") + 1
	closeSQLite(t, s)

	raw := rawDB(t, path)
	if _, err := raw.ExecContext(t.Context(), fmt.Sprintf("PRAGMA user_version = %d", newer)); err != nil {
		t.Fatal(err)
	}

	_, err := store.OpenSQLite(t.Context(), path)
	if !errors.Is(err, store.ErrNewerSchema) {
		t.Fatalf("error = %v, want one wrapping ErrNewerSchema", err)
	}
	if want := fmt.Sprintf("version %d", newer); !strings.Contains(err.Error(), want) {
		t.Errorf("error %q does not say %q", err, want)
	}
	// The refused database is left as it was.
	if got := queryInt(t, raw, "PRAGMA user_version"); got != newer {
		t.Errorf("user_version = %d after refusal, want %d", got, newer)
	}
	if got := queryInt(t, raw, "SELECT count(*) FROM agents"); got != 2 {
		t.Errorf("%d agents after refusal, want 2", got)
	}
}

func TestSQLiteConcurrentWriters(t *testing.T) {
	const writers = 20
	// Two handles on one file stand in for two processes: their writers
	// meet in SQLite's lock, not in one connection pool.
	for _, handles := range []int{1, 2} {
		t.Run(fmt.Sprintf("Handles=%d", handles), func(t *testing.T) {
			path := tempDBPath(t)
			stores := make([]*store.SQLite, handles)
			for i := range stores {
				stores[i] = openSQLite(t, path)
			}
			errs := make([]error, writers)
			var wg sync.WaitGroup
			for i := range writers {
				wg.Go(func() {
					s := stores[i%handles]
					agent := fmt.Sprintf("agent-%02d", i)
					if err := s.AddAgent(t.Context(), store.Agent{Name: agent, Fingerprint: "sha256:x"}); err != nil {
						errs[i] = err
						return
					}
					r := store.Route{Name: fmt.Sprintf("route-%02d", i), Agent: agent, Target: "db",
						Listen: fmt.Sprintf(":%d", 30000+i), Allow: []string{"10.0.0.0/8", "192.168.0.0/16"}}
					errs[i] = s.AddRoute(t.Context(), r)
				})
			}
			wg.Wait()
			for i, err := range errs {
				if err != nil {
					t.Errorf("writer %d: %v", i, err)
				}
			}
			for i, s := range stores {
				agents, routes := snapshot(t, s)
				if len(agents) != writers || len(routes) != writers {
					t.Errorf("handle %d sees %d agents and %d routes, want %d of each", i, len(agents), len(routes), writers)
				}
			}
		})
	}
}

func TestSQLiteStoresUTCText(t *testing.T) {
	s := openSQLite(t, tempDBPath(t))
	created := time.Date(2025, 12, 31, 22, 30, 0, 123456789, time.FixedZone("UTC-3", -3*60*60))
	if err := s.AddAgent(t.Context(), store.Agent{Name: "acme", Fingerprint: "sha256:x", CreatedAt: created}); err != nil {
		t.Fatal(err)
	}
	var stored string
	if err := store.SQLiteDB(s).QueryRowContext(t.Context(), "SELECT created_at FROM agents").Scan(&stored); err != nil {
		t.Fatal(err)
	}
	if want := "2026-01-01T01:30:00.123456Z"; stored != want {
		t.Errorf("stored created_at = %q, want %q", stored, want)
	}
	if !regexp.MustCompile(`^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$`).MatchString(stored) {
		t.Errorf("stored created_at %q is not fixed-width UTC", stored)
	}
	a, err := s.Agent(t.Context(), "acme")
	if err != nil {
		t.Fatal(err)
	}
	if want := created.Truncate(time.Microsecond); !a.CreatedAt.Equal(want) || a.CreatedAt.Location() != time.UTC {
		t.Errorf("CreatedAt = %v, want %v in UTC", a.CreatedAt, want.UTC())
	}
}

func TestSQLiteRemoveRouteDropsAllowlist(t *testing.T) {
	s := openSQLite(t, tempDBPath(t))
	fill(t, s)
	if err := s.RemoveRoute(t.Context(), "warehouse"); err != nil {
		t.Fatal(err)
	}
	if n := queryInt(t, store.SQLiteDB(s), "SELECT count(*) FROM route_allow"); n != 0 {
		t.Errorf("%d route_allow rows left after removing the only route with an allowlist", n)
	}
}

func TestSQLiteForeignKeyBackstop(t *testing.T) {
	// RemoveAgent checks for routes itself; the schema must refuse too.
	s := openSQLite(t, tempDBPath(t))
	fill(t, s)
	_, err := store.SQLiteDB(s).ExecContext(t.Context(), "DELETE FROM agents WHERE name = 'acme'")
	if err == nil {
		t.Fatal("deleting an agent that routes name succeeded")
	}
	if !strings.Contains(err.Error(), "FOREIGN KEY") {
		t.Errorf("error = %v, want a FOREIGN KEY constraint failure", err)
	}
}

func TestOpen(t *testing.T) {
	tests := []struct {
		name string
		cfg  func(path string) store.Config
		want error
	}{
		{"DefaultBackend", func(p string) store.Config { return store.Config{Path: p} }, nil},
		{"SQLite", func(p string) store.Config { return store.Config{Backend: store.BackendSQLite, Path: p} }, nil},
		{"UnknownBackend", func(p string) store.Config { return store.Config{Backend: "oracle", Path: p} }, store.ErrInvalid},
		{"NoPath", func(string) store.Config { return store.Config{} }, store.ErrInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := store.Open(t.Context(), tt.cfg(tempDBPath(t)))
			if !errors.Is(err, tt.want) {
				t.Fatalf("Open error = %v, want %v", err, tt.want)
			}
			if err != nil {
				return
			}
			t.Cleanup(func() { s.Close() })
			if _, err := s.Agents(t.Context()); err != nil {
				t.Errorf("Agents: %v", err)
			}
		})
	}
}

package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	_ "modernc.org/sqlite" // registers the "sqlite" database/sql driver
)

// sqliteBusyTimeout is how long a connection waits for another writer (in
// this process or another one) before giving up with SQLITE_BUSY. Registry
// writes take milliseconds, so this is only reached if something is stuck.
const sqliteBusyTimeout = 5 * time.Second

// SQLite is the embedded Store: one database file beside the server's config.
//
// It keeps a single connection open. SQLite allows one writer at a time
// anyway, and a one-connection pool serialises this process's writers in Go
// instead of in SQLite's busy loop; other processes on the same file are
// waited for through busy_timeout. Transactions begin IMMEDIATE so a
// transaction that reads before it writes cannot fail on lock upgrade.
type SQLite struct {
	// Static after construction.
	db   *sql.DB
	path string // absolute, for messages

	closeOnce sync.Once // makes Close idempotent
}

var _ Store = (*SQLite)(nil)

// OpenSQLite opens (creating if needed, file mode 0600) the SQLite database
// at path, applies the embedded schema migrations, and returns a Store. The
// directory of path must exist. A database written by a newer version of this
// program is refused with ErrNewerSchema, a database of another program with
// ErrForeignDatabase.
func OpenSQLite(ctx context.Context, path string) (*SQLite, error) {
	if path == "" {
		return nil, fmt.Errorf("open store: database path is empty: %w", ErrInvalid)
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("open store %q: %w", path, err)
	}
	if err := createSQLiteFile(abs); err != nil {
		return nil, fmt.Errorf("open store %q: %w", path, err)
	}
	db, err := sql.Open("sqlite", sqliteDSN(abs))
	if err != nil {
		return nil, fmt.Errorf("open store %q: %w", path, err)
	}
	db.SetMaxOpenConns(1)
	db.SetMaxIdleConns(1) // keep it: a new connection re-runs the pragmas

	s := &SQLite{db: db, path: abs}
	if err := s.init(ctx); err != nil {
		db.Close()
		return nil, fmt.Errorf("open store %q: %w", path, err)
	}
	return s, nil
}

// init checks the connection settings and brings the schema up to date.
func (s *SQLite) init(ctx context.Context) error {
	if err := checkSQLitePragmas(ctx, s.db); err != nil {
		return err
	}
	migs, err := loadMigrations(schemaFS, "schema/sqlite")
	if err != nil {
		return err
	}
	return migrateSQLite(ctx, s.db, migs)
}

// createSQLiteFile makes sure path exists as a regular file, creating it with
// mode 0600 so that SQLite, which gives its -wal and -shm files the mode of
// the database, never creates anything readable by others. An existing
// file's mode is left as the operator set it.
func createSQLiteFile(path string) error {
	dir := filepath.Dir(path)
	fi, err := os.Stat(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("directory %s does not exist; create it first: %w", dir, err)
	}
	if err != nil {
		return err
	}
	if !fi.IsDir() {
		return fmt.Errorf("%s is not a directory", dir)
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return err
	}
	fi, err = f.Stat()
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("%s is not a regular file", path)
	}
	return nil
}

// sqliteDSN returns the modernc.org/sqlite data source name for the database
// at abs. The pragmas run on every new connection of the pool; the path is
// URI-escaped so names with '?', '#' or '%' stay file names.
func sqliteDSN(abs string) string {
	q := url.Values{}
	q.Add("_pragma", fmt.Sprintf("busy_timeout(%d)", sqliteBusyTimeout.Milliseconds()))
	q.Add("_pragma", "journal_mode(WAL)")
	q.Add("_pragma", "foreign_keys(1)")
	q.Set("_txlock", "immediate")
	p := filepath.ToSlash(abs)
	if !strings.HasPrefix(p, "/") {
		p = "/" + p // a Windows drive letter: file:///C:/...
	}
	u := url.URL{Scheme: "file", Path: p, RawQuery: q.Encode()}
	return u.String()
}

// checkSQLitePragmas fails if the DSN's settings did not take effect, which
// SQLite would otherwise accept silently: journal_mode stays "delete" on
// filesystems without shared memory, for example.
func checkSQLitePragmas(ctx context.Context, db *sql.DB) error {
	var mode string
	if err := db.QueryRowContext(ctx, "PRAGMA journal_mode").Scan(&mode); err != nil {
		return fmt.Errorf("read journal_mode: %w", err)
	}
	if !strings.EqualFold(mode, "wal") {
		return fmt.Errorf("journal_mode is %q, not wal: keep the database on a local filesystem", mode)
	}
	var fk int
	if err := db.QueryRowContext(ctx, "PRAGMA foreign_keys").Scan(&fk); err != nil {
		return fmt.Errorf("read foreign_keys: %w", err)
	}
	if fk != 1 {
		return errors.New("foreign_keys did not turn on")
	}
	return nil
}

// inTx runs fn in a transaction and commits if fn returns nil. op names the
// operation in the errors of begin and commit; fn's errors are returned as
// they are.
func (s *SQLite) inTx(ctx context.Context, op string, fn func(tx *sql.Tx) error) error {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("%s: begin: %w", op, err)
	}
	defer tx.Rollback() // after Commit, a no-op returning sql.ErrTxDone
	if err := fn(tx); err != nil {
		return err
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("%s: commit: %w", op, err)
	}
	return nil
}

// Agents implements Store.
func (s *SQLite) Agents(ctx context.Context) ([]Agent, error) {
	return selectAgents(ctx, s.db)
}

// Agent implements Store.
func (s *SQLite) Agent(ctx context.Context, name string) (Agent, error) {
	return selectAgent(ctx, s.db, name)
}

// AddAgent implements Store.
func (s *SQLite) AddAgent(ctx context.Context, a Agent) error {
	if err := a.Validate(); err != nil {
		return err
	}
	a = a.withDefaults(time.Now())
	return s.inTx(ctx, fmt.Sprintf("add agent %q", a.Name), func(tx *sql.Tx) error {
		_, err := agentID(ctx, tx, a.Name)
		switch {
		case err == nil:
			return fmt.Errorf("agent %q: %w", a.Name, ErrExists)
		case !errors.Is(err, ErrNotFound):
			return err
		}
		return insertAgent(ctx, tx, a)
	})
}

// SetAgentDisabled implements Store.
func (s *SQLite) SetAgentDisabled(ctx context.Context, name string, disabled bool) error {
	return updateAgentDisabled(ctx, s.db, name, disabled)
}

// RemoveAgent implements Store.
func (s *SQLite) RemoveAgent(ctx context.Context, name string) error {
	return s.inTx(ctx, fmt.Sprintf("remove agent %q", name), func(tx *sql.Tx) error {
		id, err := agentID(ctx, tx, name)
		if err != nil {
			return err
		}
		routes, err := routeNamesByAgent(ctx, tx, id)
		if err != nil {
			return err
		}
		if len(routes) > 0 {
			return fmt.Errorf("agent %q: %w by %s; remove %s first", name, ErrInUse, quotedList("route", routes), pronoun(len(routes)))
		}
		return deleteAgent(ctx, tx, id, name)
	})
}

// Routes implements Store.
func (s *SQLite) Routes(ctx context.Context) ([]Route, error) {
	return selectRoutes(ctx, s.db)
}

// Route implements Store.
func (s *SQLite) Route(ctx context.Context, name string) (Route, error) {
	return selectRoute(ctx, s.db, name)
}

// AddRoute implements Store. The checks and inserts share one IMMEDIATE
// transaction, so no other writer can slip in between them and a failure
// leaves nothing behind.
func (s *SQLite) AddRoute(ctx context.Context, r Route) error {
	if err := r.Validate(); err != nil {
		return err
	}
	r = r.withDefaults(time.Now())
	return s.inTx(ctx, fmt.Sprintf("add route %q", r.Name), func(tx *sql.Tx) error {
		_, err := routeID(ctx, tx, r.Name)
		switch {
		case err == nil:
			return fmt.Errorf("route %q: %w", r.Name, ErrExists)
		case !errors.Is(err, ErrNotFound):
			return err
		}
		agent, err := agentID(ctx, tx, r.Agent)
		if err != nil {
			return fmt.Errorf("route %q: %w", r.Name, err)
		}
		others, err := routesByListen(ctx, tx, r.Listen)
		if err != nil {
			return err
		}
		if err := checkShare(r, others); err != nil {
			return err
		}
		return insertRoute(ctx, tx, agent, r)
	})
}

// RemoveRoute implements Store. The route's allowlist goes with it (ON
// DELETE CASCADE).
func (s *SQLite) RemoveRoute(ctx context.Context, name string) error {
	return deleteRoute(ctx, s.db, name)
}

// Close implements Store. It waits for queries in flight to finish.
func (s *SQLite) Close() error {
	var err error
	s.closeOnce.Do(func() {
		if err = s.db.Close(); err != nil {
			err = fmt.Errorf("close store %q: %w", s.path, err)
		}
	})
	return err
}

// quotedList formats names as `noun "a"` or `nouns "a", "b"`.
func quotedList(noun string, names []string) string {
	quoted := make([]string, len(names))
	for i, n := range names {
		quoted[i] = fmt.Sprintf("%q", n)
	}
	if len(names) != 1 {
		noun += "s"
	}
	return noun + " " + strings.Join(quoted, ", ")
}

// pronoun returns "it" for one thing and "them" for several.
func pronoun(n int) string {
	if n == 1 {
		return "it"
	}
	return "them"
}

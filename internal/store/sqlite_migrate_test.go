package store

import (
	"database/sql"
	"path/filepath"
	"testing"
)

// openMigrationDB opens a new database file with the store's settings but
// without migrating it.
func openMigrationDB(t *testing.T) *sql.DB {
	t.Helper()
	path := filepath.Join(t.TempDir(), "registry.db")
	if err := createSQLiteFile(path); err != nil {
		t.Fatal(err)
	}
	db, err := sql.Open("sqlite", sqliteDSN(path))
	if err != nil {
		t.Fatal(err)
	}
	db.SetMaxOpenConns(1)
	t.Cleanup(func() { db.Close() })
	return db
}

// embeddedMigrations returns the real SQLite migrations.
func embeddedMigrations(t *testing.T) []migration {
	t.Helper()
	migs, err := loadMigrations(schemaFS, "schema/sqlite")
	if err != nil {
		t.Fatal(err)
	}
	return migs
}

// next returns a migration numbered after migs.
func next(migs []migration, sql string) migration {
	v := len(migs) + 1
	return migration{version: v, name: "next.sql", sql: sql}
}

func dbInt(t *testing.T, db *sql.DB, query string) int {
	t.Helper()
	var n int
	if err := db.QueryRowContext(t.Context(), query).Scan(&n); err != nil {
		t.Fatalf("%s: %v", query, err)
	}
	return n
}

func TestMigrateSQLite(t *testing.T) {
	const addColumn = `ALTER TABLE agents ADD COLUMN note TEXT NOT NULL DEFAULT ''`
	const broken = `CREATE TABLE half_done (a INTEGER); THIS IS NOT SQL`

	t.Run("FreshDatabase", func(t *testing.T) {
		db := openMigrationDB(t)
		migs := embeddedMigrations(t)
		if err := migrateSQLite(t.Context(), db, migs); err != nil {
			t.Fatal(err)
		}
		if got := dbInt(t, db, "PRAGMA user_version"); got != len(migs) {
			t.Errorf("user_version = %d, want %d", got, len(migs))
		}
		if got := dbInt(t, db, "PRAGMA application_id"); got != sqliteApplicationID {
			t.Errorf("application_id = %#x, want %#x", got, sqliteApplicationID)
		}
		// Running again finds nothing to do.
		if err := migrateSQLite(t.Context(), db, migs); err != nil {
			t.Fatalf("second run: %v", err)
		}
	})

	t.Run("FailedFirstMigrationLeavesEmptyFile", func(t *testing.T) {
		db := openMigrationDB(t)
		migs := embeddedMigrations(t)
		if err := migrateSQLite(t.Context(), db, append(migs, next(migs, broken))); err == nil {
			t.Fatal("broken migration succeeded")
		}
		if n := dbInt(t, db, "SELECT count(*) FROM sqlite_schema"); n != 0 {
			t.Errorf("%d schema objects after a failed migration, want 0", n)
		}
		if v := dbInt(t, db, "PRAGMA user_version"); v != 0 {
			t.Errorf("user_version = %d after a failed migration, want 0", v)
		}
	})

	t.Run("UpgradeKeepsData", func(t *testing.T) {
		db := openMigrationDB(t)
		migs := embeddedMigrations(t)
		if err := migrateSQLite(t.Context(), db, migs); err != nil {
			t.Fatal(err)
		}
		if err := insertAgent(t.Context(), db, Agent{Name: "acme", Fingerprint: "sha256:x"}); err != nil {
			t.Fatal(err)
		}
		upgraded := append(migs, next(migs, addColumn))
		if err := migrateSQLite(t.Context(), db, upgraded); err != nil {
			t.Fatalf("upgrade: %v", err)
		}
		if got := dbInt(t, db, "PRAGMA user_version"); got != len(upgraded) {
			t.Errorf("user_version = %d, want %d", got, len(upgraded))
		}
		if n := dbInt(t, db, "SELECT count(*) FROM agents WHERE name = 'acme' AND note = ''"); n != 1 {
			t.Errorf("%d agents after upgrade, want 1", n)
		}
	})

	t.Run("FailedUpgradeKeepsOldVersion", func(t *testing.T) {
		db := openMigrationDB(t)
		migs := embeddedMigrations(t)
		if err := migrateSQLite(t.Context(), db, migs); err != nil {
			t.Fatal(err)
		}
		if err := insertAgent(t.Context(), db, Agent{Name: "acme", Fingerprint: "sha256:x"}); err != nil {
			t.Fatal(err)
		}
		if err := migrateSQLite(t.Context(), db, append(migs, next(migs, broken))); err == nil {
			t.Fatal("broken upgrade succeeded")
		}
		if got := dbInt(t, db, "PRAGMA user_version"); got != len(migs) {
			t.Errorf("user_version = %d after a failed upgrade, want %d", got, len(migs))
		}
		if n := dbInt(t, db, "SELECT count(*) FROM sqlite_schema WHERE name = 'half_done'"); n != 0 {
			t.Error("a failed upgrade left a table behind")
		}
		if n := dbInt(t, db, "SELECT count(*) FROM agents"); n != 1 {
			t.Errorf("%d agents after a failed upgrade, want 1", n)
		}
	})
}

// TestMigrateSharedListen upgrades a version 1 database holding routes to
// version 2: the routes and their allowlists survive the table rebuild, each
// becomes its address's default, and deleting a route still deletes its
// allowlist (the rebuilt reference points at the rebuilt table).
func TestMigrateSharedListen(t *testing.T) {
	db := openMigrationDB(t)
	migs := embeddedMigrations(t)
	if len(migs) < 2 {
		t.Fatalf("%d migrations, want at least 2", len(migs))
	}
	if err := migrateSQLite(t.Context(), db, migs[:1]); err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	for _, q := range []string{
		`INSERT INTO agents (id, name, fingerprint, created_at) VALUES (1, 'acme', 'sha256:x', '2026-01-01T00:00:00.000000Z')`,
		`INSERT INTO routes (id, name, agent_id, target, listen, protocol, max_sessions, created_at)
		 VALUES (1, 'a', 1, 't', ':1000', 'tcp', 3, '2026-01-01T00:00:00.000000Z'),
		        (2, 'b', 1, 't', ':1001', 'tcp', 0, '2026-01-01T00:00:00.000000Z')`,
		`INSERT INTO route_allow (route_id, position, cidr) VALUES (1, 0, '10.0.0.0/8'), (1, 1, '192.168.0.0/16'), (2, 0, '203.0.113.0/24')`,
	} {
		if _, err := db.ExecContext(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	if err := migrateSQLite(ctx, db, migs); err != nil {
		t.Fatalf("upgrade: %v", err)
	}
	routes, err := selectRoutes(ctx, db)
	if err != nil {
		t.Fatal(err)
	}
	if len(routes) != 2 || routes[0].Name != "a" || len(routes[0].Allow) != 2 || routes[0].MaxSessions != 3 ||
		!routes[0].Default || !routes[1].Default || len(routes[1].Allow) != 1 {
		t.Fatalf("routes after upgrade = %+v", routes)
	}
	if err := deleteRoute(ctx, db, "a"); err != nil {
		t.Fatal(err)
	}
	if n := dbInt(t, db, "SELECT count(*) FROM route_allow"); n != 1 {
		t.Errorf("%d allowlist rows after deleting route a, want 1", n)
	}
	if n := dbInt(t, db, "SELECT count(*) FROM sqlite_schema WHERE name LIKE '%_v2'"); n != 0 {
		t.Errorf("%d leftover _v2 objects", n)
	}
	if err := insertRoute(ctx, db, 1, Route{Name: "c", Target: "t", Listen: ":1001", Protocol: "postgres", Default: true,
		CreatedAt: routes[0].CreatedAt}); err == nil {
		t.Error("a second default on :1001 was stored; the unique index is missing")
	}
}

// TestMigrateEnrollment upgrades a version 2 database holding an agent to
// version 3: the agent keeps its key and has no pending one, and removing it
// removes its enrollment tokens (the foreign key cascades).
func TestMigrateEnrollment(t *testing.T) {
	db := openMigrationDB(t)
	migs := embeddedMigrations(t)
	if len(migs) < 3 {
		t.Fatalf("%d migrations, want at least 3", len(migs))
	}
	ctx := t.Context()
	if err := migrateSQLite(ctx, db, migs[:2]); err != nil {
		t.Fatal(err)
	}
	if _, err := db.ExecContext(ctx, `INSERT INTO agents (id, name, fingerprint, created_at) VALUES (1, 'acme', 'sha256:x', '2026-01-01T00:00:00.000000Z')`); err != nil {
		t.Fatal(err)
	}
	if err := migrateSQLite(ctx, db, migs); err != nil {
		t.Fatalf("upgrade: %v", err)
	}
	a, err := selectAgent(ctx, db, "acme")
	if err != nil {
		t.Fatal(err)
	}
	if a.Fingerprint != "sha256:x" || a.PendingFingerprint != "" {
		t.Fatalf("agent after upgrade = %+v", a)
	}
	if _, err := db.ExecContext(ctx, `INSERT INTO enroll_tokens (token_id, agent_id, secret_hash, created_at, expires_at)
		VALUES ('t1', 1, zeroblob(32), '2026-01-01T00:00:00.000000Z', '2026-01-02T00:00:00.000000Z')`); err != nil {
		t.Fatal(err)
	}
	if _, err := db.ExecContext(ctx, `INSERT INTO enroll_tokens (token_id, agent_id, secret_hash, created_at, expires_at)
		VALUES ('t2', 1, zeroblob(16), '2026-01-01T00:00:00.000000Z', '2026-01-02T00:00:00.000000Z')`); err == nil {
		t.Error("a 16-byte hash was stored; the length check is missing")
	}
	if err := deleteAgent(ctx, db, 1, "acme"); err != nil {
		t.Fatal(err)
	}
	if n := dbInt(t, db, "SELECT count(*) FROM enroll_tokens"); n != 0 {
		t.Errorf("%d tokens left after removing their agent, want 0", n)
	}
}

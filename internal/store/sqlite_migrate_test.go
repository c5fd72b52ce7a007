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

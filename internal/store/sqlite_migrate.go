package store

import (
	"context"
	"database/sql"
	"fmt"
)

// sqliteApplicationID marks a SQLite file as ours in its header (PRAGMA
// application_id; "TnlR"), so that pointing the server at another program's
// database fails instead of adding tables to it.
const sqliteApplicationID = 0x546e6c52

// The schema version of a SQLite database is its PRAGMA user_version: the
// number of the last migration applied, 0 for a new file. Both header fields
// change inside the migration transaction, so a failed upgrade leaves the
// old version and the old schema.

// migrateSQLite applies the migrations newer than the database's version, in
// one transaction. Several processes opening the same new file at once are
// safe: the transaction begins IMMEDIATE, so the second one waits and then
// finds the work done.
func migrateSQLite(ctx context.Context, db *sql.DB, migs []migration) error {
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("migrate: begin: %w", err)
	}
	defer tx.Rollback()

	version, err := checkSQLiteHeader(ctx, tx, migs[len(migs)-1].version)
	if err != nil {
		return err
	}
	if version == len(migs) {
		return nil
	}
	for _, m := range migs[version:] {
		if _, err := tx.ExecContext(ctx, m.sql); err != nil {
			return fmt.Errorf("migrate to schema version %d (%s): %w", m.version, m.name, err)
		}
	}
	// Pragma values cannot be bound parameters; both are integers we own.
	setHeader := fmt.Sprintf("PRAGMA application_id = %d; PRAGMA user_version = %d", sqliteApplicationID, len(migs))
	if _, err := tx.ExecContext(ctx, setHeader); err != nil {
		return fmt.Errorf("migrate: set schema version: %w", err)
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("migrate: commit: %w", err)
	}
	return nil
}

// checkSQLiteHeader returns the database's schema version, or an error if the
// file belongs to another program or to a newer version of this one.
func checkSQLiteHeader(ctx context.Context, q querier, latest int) (int, error) {
	var appID, version int
	if err := q.QueryRowContext(ctx, "PRAGMA application_id").Scan(&appID); err != nil {
		return 0, fmt.Errorf("read application_id: %w", err)
	}
	if err := q.QueryRowContext(ctx, "PRAGMA user_version").Scan(&version); err != nil {
		return 0, fmt.Errorf("read user_version: %w", err)
	}
	if appID != sqliteApplicationID {
		var objects int
		if err := q.QueryRowContext(ctx, "SELECT count(*) FROM sqlite_schema").Scan(&objects); err != nil {
			return 0, fmt.Errorf("read schema: %w", err)
		}
		if appID != 0 || version != 0 || objects != 0 {
			return 0, fmt.Errorf("application id %#x, schema version %d, %d schema objects: %w", appID, version, objects, ErrForeignDatabase)
		}
		return 0, nil // a new, empty file
	}
	if version > latest {
		return 0, fmt.Errorf("%w: database is at schema version %d, this program knows up to %d; upgrade tunnel-server (or restore a backup made by this version)",
			ErrNewerSchema, version, latest)
	}
	return version, nil
}

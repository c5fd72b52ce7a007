package store

import "database/sql"

// SQLiteDB exposes the handle of s to the tests in package store_test, which
// check pragmas and stored rows directly.
func SQLiteDB(s *SQLite) *sql.DB { return s.db }

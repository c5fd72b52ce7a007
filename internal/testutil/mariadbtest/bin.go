package mariadbtest

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tunnelrelay/tunnel/internal/testutil/fixture"
)

// Environment variables read by this package.
const (
	// EnvRequire, when set to a true value ("1"), turns every "MariaDB is
	// not installed" skip into a test failure. CI sets it so that a broken
	// install cannot silently skip the end-to-end tests.
	EnvRequire = "TUNNEL_REQUIRE_MARIADB"
	// EnvBin names the one directory to take the MariaDB programs from
	// (mariadbd, mariadb-install-db, mariadb, mariadb-slap) instead of
	// searching PATH and the sbin directories.
	EnvBin = "TUNNEL_MARIADB_BIN"
)

// aliases maps each program to its older MySQL-compatible name. MariaDB 10.4
// and earlier ship only the old names; later releases keep them as links.
var aliases = map[string]string{
	"mariadbd":           "mysqld",
	"mariadb-install-db": "mysql_install_db",
	"mariadb":            "mysql",
	"mariadb-slap":       "mysqlslap",
	"mariadb-admin":      "mysqladmin",
}

// fallbackDirs are searched after PATH: Debian installs mariadbd in /usr/sbin,
// which is not on an unprivileged user's PATH.
var fallbackDirs = []string{"/usr/sbin", "/usr/local/sbin", "/usr/bin"}

// ErrNotInstalled is returned (wrapped) when a MariaDB program is missing.
var ErrNotInstalled = errors.New("MariaDB programs not found")

// installHint is appended to every "not found" message.
const installHint = "install them with apt-get install mariadb-server mariadb-client"

// ToolPath finds a MariaDB program by name (mariadbd, mariadb-install-db,
// mariadb, mariadb-slap, ...), falling back to its MySQL name (mysqld,
// mysql_install_db, mysql, mysqlslap). It looks only in TUNNEL_MARIADB_BIN
// when that is set, else on PATH and then in /usr/sbin, /usr/local/sbin and
// /usr/bin.
func ToolPath(name string) (string, error) {
	names := []string{name}
	if alt, ok := aliases[name]; ok {
		names = append(names, alt)
	}
	if dir := os.Getenv(EnvBin); dir != "" {
		for _, n := range names {
			if p := filepath.Join(dir, n); fixture.IsExecutable(p) {
				return p, nil
			}
		}
		return "", fmt.Errorf("%w: %s=%s holds no %s", ErrNotInstalled, EnvBin, dir, name)
	}
	for _, n := range names {
		if p, err := exec.LookPath(n); err == nil {
			return p, nil
		}
	}
	for _, n := range names {
		for _, dir := range fallbackDirs {
			if p := filepath.Join(dir, n); fixture.IsExecutable(p) {
				return p, nil
			}
		}
	}
	return "", fmt.Errorf("%w: %s is neither on PATH nor in %v (%s, or set %s)",
		ErrNotInstalled, name, fallbackDirs, installHint, EnvBin)
}

// RequireTool returns the path of the named MariaDB program (see ToolPath).
// When it is missing the test is skipped, or fails if
// TUNNEL_REQUIRE_MARIADB=1.
func RequireTool(t testing.TB, name string) string {
	t.Helper()
	p, err := ToolPath(name)
	if err != nil {
		unavailable(t, err.Error())
	}
	return p
}

// Required reports whether TUNNEL_REQUIRE_MARIADB asks for missing MariaDB to be a
// failure rather than a skip.
func Required() bool { return fixture.Required(EnvRequire) }

// unavailable skips the test, or fails it when MariaDB is required.
func unavailable(t testing.TB, msg string) {
	t.Helper()
	fixture.Unavailable(t, "mariadbtest", EnvRequire, msg)
}

// environ is our environment without MYSQL_* and MARIADB_* variables, for
// the server and the clients: mariadbd reads MYSQL_TCP_PORT and
// MYSQL_UNIX_PORT, the clients also MYSQL_HOST and MYSQL_PWD, and a value
// meant for something else must not steer them.
func environ() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "MYSQL_") && !strings.HasPrefix(kv, "MARIADB_") {
			env = append(env, kv)
		}
	}
	return env
}

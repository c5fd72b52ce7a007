package pgtest

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/tunnelrelay/tunnel/internal/testutil/fixture"
)

// Environment variables read by this package.
const (
	// EnvRequire, when set to a true value ("1"), turns every "PostgreSQL is
	// not installed" skip into a test failure. CI sets it so that a broken
	// install cannot silently skip the end-to-end tests.
	EnvRequire = "TUNNEL_REQUIRE_POSTGRES"
	// EnvBin overrides BinDir: a directory holding initdb, pg_ctl and postgres.
	EnvBin = "TUNNEL_PG_BIN"
	// EnvOSUser names the unprivileged OS account the server runs as when the
	// tests run as root (default "postgres").
	EnvOSUser = "TUNNEL_PG_OSUSER"
)

// debianGlob is where Debian and Ubuntu install one directory per major
// version; the server binaries are not on PATH there.
const debianGlob = "/usr/lib/postgresql/*/bin"

// serverTools are the binaries Start needs from one installation.
var serverTools = []string{"initdb", "pg_ctl", "postgres"}

// ErrNotInstalled is returned (wrapped) when PostgreSQL binaries are missing.
var ErrNotInstalled = errors.New("PostgreSQL binaries not found")

// BinDir returns the directory of the newest installed PostgreSQL server: the
// highest version of /usr/lib/postgresql/*/bin holding initdb, pg_ctl and
// postgres, or else the directory of initdb on PATH (Fedora, Homebrew). The
// environment variable TUNNEL_PG_BIN overrides the search.
func BinDir() (string, error) {
	if dir := os.Getenv(EnvBin); dir != "" {
		if missing := missingTools(dir); len(missing) > 0 {
			return "", fmt.Errorf("%w: %s=%s lacks %s", ErrNotInstalled, EnvBin, dir, strings.Join(missing, ", "))
		}
		return dir, nil
	}
	dirs, _ := filepath.Glob(debianGlob) // the pattern is valid, so no error
	sort.Slice(dirs, func(i, j int) bool {
		return versionLess(filepath.Base(filepath.Dir(dirs[j])), filepath.Base(filepath.Dir(dirs[i])))
	})
	for _, dir := range dirs {
		if len(missingTools(dir)) == 0 {
			return dir, nil
		}
	}
	if initdb, err := exec.LookPath("initdb"); err == nil {
		dir := filepath.Dir(initdb)
		if len(missingTools(dir)) == 0 {
			return dir, nil
		}
	}
	return "", fmt.Errorf("%w: no %s or PATH directory holds %s (install the postgresql server package, e.g. apt-get install postgresql, or set %s)",
		ErrNotInstalled, debianGlob, strings.Join(serverTools, ", "), EnvBin)
}

// PsqlPath returns the psql client, preferring the one beside the server
// binaries (see ToolPath).
func PsqlPath() (string, error) { return ToolPath("psql") }

// PgbenchPath returns pgbench, preferring the one beside the server binaries
// (see ToolPath).
func PgbenchPath() (string, error) { return ToolPath("pgbench") }

// ToolPath finds a PostgreSQL program by name: first in BinDir, so client and
// server versions match and Debian's pg_wrapper script (which picks a version
// from cluster configuration we do not have) is bypassed, then on PATH.
func ToolPath(name string) (string, error) {
	if dir, err := BinDir(); err == nil {
		if p := filepath.Join(dir, name); fixture.IsExecutable(p) {
			return p, nil
		}
	}
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	return "", fmt.Errorf("%w: %s is neither in the server's bin directory nor on PATH (install postgresql-client)", ErrNotInstalled, name)
}

// RequireTool returns the path of the named PostgreSQL program (psql, pgbench,
// pg_isready, ...). When it is missing the test is skipped, or fails if
// TUNNEL_REQUIRE_POSTGRES=1.
func RequireTool(t testing.TB, name string) string {
	t.Helper()
	p, err := ToolPath(name)
	if err != nil {
		unavailable(t, err.Error())
	}
	return p
}

// Required reports whether TUNNEL_REQUIRE_POSTGRES asks for missing PostgreSQL to be a
// failure rather than a skip.
func Required() bool { return fixture.Required(EnvRequire) }

// unavailable skips the test, or fails it when PostgreSQL is required.
func unavailable(t testing.TB, msg string) {
	t.Helper()
	fixture.Unavailable(t, "pgtest", EnvRequire, msg)
}

func missingTools(dir string) []string {
	var missing []string
	for _, name := range serverTools {
		if !fixture.IsExecutable(filepath.Join(dir, name)) {
			missing = append(missing, name)
		}
	}
	return missing
}

// versionLess compares dotted version strings numerically ("9.6" < "15");
// a non-numeric part sorts before any number.
func versionLess(a, b string) bool {
	as, bs := strings.Split(a, "."), strings.Split(b, ".")
	for i := 0; i < len(as) && i < len(bs); i++ {
		x, errx := strconv.Atoi(as[i])
		y, erry := strconv.Atoi(bs[i])
		switch {
		case errx != nil && erry == nil:
			return true
		case errx == nil && erry != nil:
			return false
		case errx != nil && erry != nil:
			if as[i] != bs[i] {
				return as[i] < bs[i]
			}
		case x != y:
			return x < y
		}
	}
	return len(as) < len(bs)
}

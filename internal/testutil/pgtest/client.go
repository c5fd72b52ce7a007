package pgtest

import (
	"bytes"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
)

// Command returns an exec.Cmd for the named PostgreSQL client program (psql,
// pgbench, ...) whose environment points at s (PGHOST, PGPORT, PGUSER,
// PGDATABASE, PGSSLMODE=disable; inherited PG* variables are dropped).
// Explicit -h/-p/-U/-d arguments override the environment, e.g. to go
// through a tunnel route instead. The command is killed when the test's
// context ends. A missing program skips the test, or fails it when
// TUNNEL_REQUIRE_POSTGRES=1 (see RequireTool).
func (s *Server) Command(t testing.TB, tool string, args ...string) *exec.Cmd {
	t.Helper()
	cmd := exec.CommandContext(t.Context(), RequireTool(t, tool), args...)
	cmd.Env = clientEnv(s.Host, s.Port, s.User, s.Database)
	return cmd
}

// Psql runs one SQL string with psql against s and returns its unaligned,
// tuples-only output without the trailing newline. psql ignores ~/.psqlrc
// and stops at the first error, which fails the test with psql's message.
func (s *Server) Psql(t testing.TB, sql string) string {
	t.Helper()
	cmd := s.Command(t, "psql", "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-c", sql)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("pgtest: psql -c %q: %v\n%s", sql, err, stderr.Bytes())
	}
	return strings.TrimSuffix(string(out), "\n")
}

func clientEnv(host string, port int, user, db string) []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "PG") {
			env = append(env, kv)
		}
	}
	return append(env,
		"PGHOST="+host,
		"PGPORT="+strconv.Itoa(port),
		"PGUSER="+user,
		"PGDATABASE="+db,
		"PGSSLMODE=disable",
	)
}

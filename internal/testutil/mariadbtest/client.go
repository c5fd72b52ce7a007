package mariadbtest

import (
	"bytes"
	"context"
	"database/sql"
	"fmt"
	"net"
	"net/netip"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// queryTimeout bounds the queries this package runs for a test.
const queryTimeout = 10 * time.Second

// ClientCommand returns an exec.Cmd for the named MariaDB client program
// (mariadb, mariadb-slap, mariadb-admin, ...) connecting over TCP to addr
// ("host:port"; empty means the server itself, anything else e.g. a tunnel
// route in front of it) as s.User. The password is passed in MYSQL_PWD, so
// it shows neither in the arguments nor in a warning. mariadb and mysql also
// get --database=test; mariadb-slap picks its own schema (--create-schema).
//
// Option files are not read (--no-defaults; Debian's /etc/mysql is for the
// system server) and TLS is off (--skip-ssl; Debian 12's client would
// otherwise use TLS whenever a server offers it). args follow these options
// and may override them. The command is killed when the test's context
// ends. A missing program skips the test, or fails it when
// TUNNEL_REQUIRE_MARIADB=1 (see RequireTool).
func (s *Server) ClientCommand(t testing.TB, tool, addr string, args ...string) *exec.Cmd {
	t.Helper()
	if addr == "" {
		addr = s.Addr()
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatalf("mariadbtest: client address: %v", err)
	}
	opts := []string{
		"--no-defaults", // must come first
		"--protocol=tcp",
		"--host=" + host,
		"--port=" + port,
		"--user=" + s.User,
		"--skip-ssl",
	}
	switch tool {
	case "mariadb", "mysql":
		opts = append(opts, "--database="+s.Database)
	}
	cmd := exec.CommandContext(t.Context(), RequireTool(t, tool), append(opts, args...)...)
	cmd.Env = append(environ(), "MYSQL_PWD="+s.Password)
	return cmd
}

// Query runs SQL with the mariadb client against addr (see ClientCommand)
// and returns its output, tab separated without column names, without the
// trailing newline. An error fails the test with the client's message.
func (s *Server) Query(t testing.TB, addr, sql string) string {
	t.Helper()
	cmd := s.ClientCommand(t, "mariadb", addr, "--batch", "--skip-column-names", "--execute="+sql)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("mariadbtest: mariadb --execute=%q: %v\n%s", sql, err, stderr.Bytes())
	}
	return strings.TrimSuffix(string(out), "\n")
}

// Slap runs mariadb-slap against addr (see ClientCommand) with args and
// returns its report. mariadb-slap exits with status 0 when a client thread
// cannot connect or a query fails, and only says so on standard error, so
// Slap fails the test on any output there as well as on a non-zero status.
func (s *Server) Slap(t testing.TB, addr string, args ...string) string {
	t.Helper()
	cmd := s.ClientCommand(t, "mariadb-slap", addr, args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil || stderr.Len() > 0 {
		t.Fatalf("mariadbtest: mariadb-slap %s: %v\n%s%s", strings.Join(args, " "), err, stderr.Bytes(), out)
	}
	return string(out)
}

// RowQuerier is what ClientAddr needs; *sql.DB, *sql.Conn and *sql.Tx have
// it.
type RowQuerier interface {
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

// ClientAddr returns the client address and port the server sees for the
// connection q runs on, from information_schema.processlist. Behind a
// PROXY protocol header from a trusted network it is the address in the
// header (see the package documentation); a test can compare it with the
// local address of the client's own connection. Pass a *sql.Conn to ask
// about one particular connection of a pool.
func ClientAddr(t testing.TB, q RowQuerier) netip.AddrPort {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), queryTimeout)
	defer cancel()
	var host string
	err := q.QueryRowContext(ctx, "SELECT host FROM information_schema.processlist WHERE id = CONNECTION_ID()").Scan(&host)
	if err != nil {
		t.Fatalf("mariadbtest: client address: %v", err)
	}
	ap, err := parseHost(host)
	if err != nil {
		t.Fatalf("mariadbtest: client address: %v", err)
	}
	return ap
}

// parseHost parses a processlist host of a TCP connection, "addr:port",
// where an IPv6 addr has no brackets; the port is after the last colon.
func parseHost(host string) (netip.AddrPort, error) {
	i := strings.LastIndexByte(host, ':')
	if i < 0 {
		return netip.AddrPort{}, fmt.Errorf("host %q has no port (not a TCP connection, or a name instead of an address)", host)
	}
	return netip.ParseAddrPort(net.JoinHostPort(host[:i], host[i+1:]))
}

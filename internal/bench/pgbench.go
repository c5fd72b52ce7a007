package bench

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math"
	"net"
	"net/url"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/tunnelrelay/tunnel/internal/testutil/pgtest"
)

// pgbenchBudget is DESIGN.md's: pgbench -S -c 8 through a route at least
// 0.9 × the same through the reference relay.
const pgbenchBudget = 0.9

// pgbenchWarmup is a direct select-only run before measuring, so that the
// first path measured does not pay for a cold buffer cache.
const pgbenchWarmup = time.Second

// pgbenchArgs are the measured run's arguments before -T: select-only, 8
// clients on 2 threads, no vacuum first (select-only does not need it).
var pgbenchArgs = []string{"-n", "-S", "-c", "8", "-j", "2"}

// runPgbench measures pgbench -S -c 8 over every path to one PostgreSQL
// server: one the benchmark starts, or the one Config names.
func runPgbench(ctx context.Context, env *Env) []Row {
	cfg := env.Config
	row := Row{Figure: "pgbench -S -c 8 -j 2", Unit: "TPS"}
	one := func(r Row) []Row { return []Row{r} }

	pgbench, err := pgtest.PgbenchPath()
	if err != nil {
		row.Skipped = err.Error()
		return one(row)
	}
	srv, doInit, closeServer, err := pgbenchServer(ctx, cfg, env)
	if errors.Is(err, pgtest.ErrUnavailable) {
		row.Skipped = err.Error()
		return one(row)
	}
	if err != nil {
		row.Err = err.Error()
		return one(row)
	}
	defer closeServer()

	if doInit {
		env.progress("pgbench -i -s %d on %s", cfg.PGScale, srv.redacted())
		args := []string{"-i", "-q", "-s", strconv.Itoa(cfg.PGScale)}
		if out, err := runTool(ctx, pgbench, srv.env(srv.addr()), args...); err != nil {
			row.Err = fmt.Sprintf("pgbench -i: %v: %s", err, lastLines(out, 5))
			return one(row)
		}
	}
	ep, err := env.Expose(ctx, "bench-pg", srv.addr())
	if err != nil {
		row.Err = err.Error()
		return one(row)
	}
	if _, err := pgbenchSelect(ctx, pgbench, srv.env(ep.Addr(PathDirect)), pgbenchWarmup); err != nil {
		row.Err = fmt.Sprintf("warm-up, direct: %v", err)
		return one(row)
	}

	var results [3][]float64
	for run := 1; run <= cfg.PGRuns; run++ {
		for _, p := range Paths {
			tps, err := pgbenchSelect(ctx, pgbench, srv.env(ep.Addr(p)), cfg.PGDuration)
			if err != nil {
				row.Err = fmt.Sprintf("%s, run %d: %v", p, run, err)
				return one(row)
			}
			results[p] = append(results[p], tps)
			env.progress("pgbench -S run %d/%d: %-15s %8.0f TPS", run, cfg.PGRuns, p, tps)
		}
	}
	row.Direct = measurement(results[PathDirect])
	row.Relay = measurement(results[PathRelay])
	row.Tunnel = measurement(results[PathTunnel])
	return one(row.withBudget(pgbenchBudget, PathRelay))
}

// pgbenchServer returns the server to measure against, whether to run
// pgbench -i on it, and what stops it. It starts one unless cfg names one;
// when that is impossible here the error wraps pgtest.ErrUnavailable.
func pgbenchServer(ctx context.Context, cfg Config, env *Env) (pgServer, bool, func(), error) {
	switch {
	case cfg.PGDSN != "":
		s, err := parseDSN(cfg.PGDSN)
		return s, !cfg.PGSkipInit, func() {}, err
	case cfg.PGAddr != "":
		s, err := parseDSN("postgres://postgres@" + cfg.PGAddr + "/postgres?sslmode=disable")
		return s, !cfg.PGSkipInit, func() {}, err
	}
	env.progress("starting PostgreSQL")
	ps, err := pgtest.Launch(ctx)
	if err != nil {
		return pgServer{}, false, nil, err
	}
	s := pgServer{Host: ps.Host, Port: ps.Port, User: ps.User, Database: ps.Database, SSLMode: "disable"}
	return s, true, func() { ps.Close() }, nil
}

// tpsLine is pgbench's result line; PostgreSQL 14 renamed its remark.
var tpsLine = regexp.MustCompile(`(?m)^tps = ([0-9.]+) \((?:without initial connection time|excluding connections establishing)\)`)

// pgbenchSelect runs the select-only benchmark for d (whole seconds, at
// least one) and returns its TPS.
func pgbenchSelect(ctx context.Context, pgbench string, env []string, d time.Duration) (float64, error) {
	args := append(append([]string{}, pgbenchArgs...), "-T", strconv.Itoa(pgbenchSeconds(d)))
	out, err := runTool(ctx, pgbench, env, args...)
	if err != nil {
		return 0, fmt.Errorf("pgbench %s: %v: %s", strings.Join(args, " "), err, lastLines(out, 5))
	}
	m := tpsLine.FindSubmatch(out)
	if m == nil {
		return 0, fmt.Errorf("pgbench %s printed no tps line: %s", strings.Join(args, " "), lastLines(out, 5))
	}
	return strconv.ParseFloat(string(m[1]), 64)
}

// pgbenchSeconds is d as pgbench -T takes it: whole seconds, at least one.
func pgbenchSeconds(d time.Duration) int { return max(1, int(math.Round(d.Seconds()))) }

// runTool runs a PostgreSQL client program with env and returns its
// combined output. It is killed when ctx ends.
func runTool(ctx context.Context, path string, env []string, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, path, args...)
	cmd.Env = env
	cmd.WaitDelay = 5 * time.Second
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	return out.Bytes(), err
}

// lastLines returns the last n non-empty lines of out, joined by " | ".
func lastLines(out []byte, n int) string {
	var lines []string
	for l := range strings.SplitSeq(string(out), "\n") {
		if l = strings.TrimSpace(l); l != "" {
			lines = append(lines, l)
		}
	}
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, " | ")
}

// pgServer is how clients reach a PostgreSQL server.
type pgServer struct {
	Host     string
	Port     int
	User     string
	Password string // never printed
	Database string
	SSLMode  string // empty: libpq's default
}

func (s pgServer) addr() string { return net.JoinHostPort(s.Host, strconv.Itoa(s.Port)) }

// redacted describes the server without its password.
func (s pgServer) redacted() string {
	u := url.URL{Scheme: "postgres", User: url.User(s.User), Host: s.addr(), Path: "/" + s.Database}
	if s.SSLMode != "" {
		u.RawQuery = "sslmode=" + url.QueryEscape(s.SSLMode)
	}
	return u.String()
}

// env is the environment of a client program connecting to this server at
// addr (itself, or a relay or route in front of it): ours without PG*
// variables, plus PGHOST, PGPORT, PGUSER, PGDATABASE and, when set,
// PGPASSWORD and PGSSLMODE, as pgtest's Command has it. The password goes
// in the environment rather than on the command line, where ps would show
// it.
func (s pgServer) env(addr string) []string {
	host, port, _ := net.SplitHostPort(addr) // addresses here come from listeners
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "PG") {
			env = append(env, kv)
		}
	}
	env = append(env, "PGHOST="+host, "PGPORT="+port, "PGUSER="+s.User, "PGDATABASE="+s.Database)
	if s.Password != "" {
		env = append(env, "PGPASSWORD="+s.Password)
	}
	if s.SSLMode != "" {
		env = append(env, "PGSSLMODE="+s.SSLMode)
	}
	return env
}

// parseDSN parses postgres://user[:password]@host[:port][/database][?sslmode=M].
// The host must be reachable over TCP (no unix socket directory), because
// the relay and the tunnel dial it; the port defaults to 5432, the user and
// the database to "postgres".
func parseDSN(dsn string) (pgServer, error) {
	bad := func(format string, args ...any) (pgServer, error) {
		return pgServer{}, fmt.Errorf("pg DSN: "+format+" (want postgres://user[:password]@host[:port][/database][?sslmode=mode])", args...)
	}
	u, err := url.Parse(dsn)
	if err != nil {
		// url's message quotes the input, which may hold a password.
		return bad("not a URL")
	}
	if u.Scheme != "postgres" && u.Scheme != "postgresql" {
		return bad("scheme %q is not postgres", u.Scheme)
	}
	if u.Hostname() == "" || strings.Contains(u.Host, ",") {
		return bad("want exactly one TCP host")
	}
	s := pgServer{Host: u.Hostname(), Port: 5432, User: "postgres", Database: "postgres"}
	if p := u.Port(); p != "" {
		n, err := strconv.Atoi(p)
		if err != nil || n <= 0 || n > 65535 {
			return bad("port %q is not a port number", p)
		}
		s.Port = n
	}
	if u.User != nil {
		if name := u.User.Username(); name != "" {
			s.User = name
		}
		s.Password, _ = u.User.Password()
	}
	if db := strings.TrimPrefix(u.Path, "/"); db != "" {
		s.Database = db
	}
	for k, v := range u.Query() {
		if k != "sslmode" {
			return bad("parameter %q is not supported, only sslmode", k)
		}
		s.SSLMode = v[len(v)-1]
	}
	return s, nil
}

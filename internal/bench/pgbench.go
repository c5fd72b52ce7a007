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
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/tunnelrelay/tunnel/internal/testutil/pgtest"
)

// Budgets of DESIGN.md: pgbench -S -c 8 through a route at least 0.9 ×
// the same through the reference relay; new sessions (pgbench -S -C) at
// least 0.9 × direct.
const (
	pgbenchBudget     = 0.9
	pgbenchConnBudget = 0.9
)

// pgbenchWarmup is a direct select-only run before measuring, so that the
// first path measured does not pay for a cold buffer cache.
const pgbenchWarmup = time.Second

// pgbenchRuns are the two measured workloads, each with its arguments
// before -T: select-only, 8 clients on 2 threads, no vacuum first
// (select-only does not need it); the second opens a new connection for
// every transaction (-C), so that it measures session setup: the tunnel's
// stream open and the agent's dial on top of PostgreSQL's own.
var pgbenchRuns = []struct {
	figure  string
	args    []string
	factor  float64
	against Path
}{
	{"pgbench -S -c 8 -j 2", []string{"-n", "-S", "-c", "8", "-j", "2"}, pgbenchBudget, PathRelay},
	{"pgbench -S -C -c 8 -j 2 (new session per transaction)", []string{"-n", "-S", "-C", "-c", "8", "-j", "2"}, pgbenchConnBudget, PathDirect},
}

// runPgbench measures both pgbench workloads over every path to one
// PostgreSQL server: one the benchmark starts, or the one Config names.
func runPgbench(ctx context.Context, env *Env) []Row {
	cfg := env.Config
	rows := make([]Row, len(pgbenchRuns))
	for i, w := range pgbenchRuns {
		rows[i] = Row{Figure: w.figure, Unit: "TPS"}
	}
	set := func(f func(*Row)) []Row {
		for i := range rows {
			f(&rows[i])
		}
		return rows
	}
	skip := func(err error) []Row { return set(func(r *Row) { r.Skipped = err.Error() }) }
	fail := func(msg string) []Row { return set(func(r *Row) { r.Err = msg }) }

	pgbench, err := pgtest.PgbenchPath()
	if err != nil {
		return skip(err)
	}
	srv, doInit, closeServer, err := pgbenchServer(ctx, cfg, env)
	if errors.Is(err, pgtest.ErrUnavailable) {
		return skip(err)
	}
	if err != nil {
		return fail(err.Error())
	}
	defer closeServer()

	if doInit {
		env.progress("pgbench -i -s %d on %s", cfg.PGScale, srv.redacted())
		args := []string{"-i", "-q", "-s", strconv.Itoa(cfg.PGScale)}
		if out, err := runTool(ctx, pgbench, srv.env(srv.addr()), args...); err != nil {
			return fail(fmt.Sprintf("pgbench -i: %v: %s", err, lastLines(out, 5)))
		}
	}
	ep, err := env.Expose(ctx, "bench-pg", srv.addr())
	if err != nil {
		return fail(err.Error())
	}
	if _, err := pgbenchTPS(ctx, pgbench, srv.env(ep.Addr(PathDirect)), pgbenchRuns[0].args, pgbenchWarmup); err != nil {
		return fail(fmt.Sprintf("warm-up, direct: %v", err))
	}

	results := make([][numPaths][]float64, len(pgbenchRuns))
	for run := 1; run <= cfg.PGRuns; run++ {
		for i, w := range pgbenchRuns {
			for _, p := range Paths {
				tps, err := pgbenchTPS(ctx, pgbench, srv.env(ep.Addr(p)), w.args, cfg.PGDuration)
				if err != nil {
					rows[i].Err = fmt.Sprintf("%s, run %d: %v", p, run, err)
					break
				}
				results[i][p] = append(results[i][p], tps)
				env.progress("pgbench %s run %d/%d: %-15s %8.0f TPS", strings.Join(w.args[1:], " "), run, cfg.PGRuns, p, tps)
			}
		}
	}
	for i, w := range pgbenchRuns {
		if rows[i].Err != "" {
			continue
		}
		r := &rows[i]
		r.Direct = measurement(results[i][PathDirect])
		r.Relay = measurement(results[i][PathRelay])
		r.Tunnel = measurement(results[i][PathTunnel])
		base := r.Relay.Median
		if w.against == PathDirect {
			base = r.Direct.Median
		}
		*r = r.relative(atLeastOp, w.factor, w.against.String(), base)
	}
	return rows
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

// tpsLine is one of pgbench's result lines: one since PostgreSQL 14, two
// (including and excluding connection setup) before.
var tpsLine = regexp.MustCompile(`(?m)^tps = ([0-9.]+) \(([a-z ]+)\)`)

// parseTPS picks the TPS figure of pgbench's output: with -C, which
// measures connecting, the one that includes it ("including reconnection
// times" since PostgreSQL 14, "including connections establishing"
// before); otherwise the one without it.
func parseTPS(out []byte, reconnect bool) (float64, bool) {
	want := []string{"without initial connection time", "excluding connections establishing"}
	if reconnect {
		want = []string{"including reconnection times", "including connections establishing"}
	}
	for _, m := range tpsLine.FindAllSubmatch(out, -1) {
		if slices.Contains(want, string(m[2])) {
			v, err := strconv.ParseFloat(string(m[1]), 64)
			return v, err == nil
		}
	}
	return 0, false
}

// pgbenchTPS runs pgbench with args and -T d (whole seconds, at least one)
// and returns its TPS.
func pgbenchTPS(ctx context.Context, pgbench string, env []string, args []string, d time.Duration) (float64, error) {
	args = append(slices.Clone(args), "-T", strconv.Itoa(pgbenchSeconds(d)))
	out, err := runTool(ctx, pgbench, env, args...)
	if err != nil {
		return 0, fmt.Errorf("pgbench %s: %v: %s", strings.Join(args, " "), err, lastLines(out, 5))
	}
	tps, ok := parseTPS(out, slices.Contains(args, "-C"))
	if !ok {
		return 0, fmt.Errorf("pgbench %s printed no tps line: %s", strings.Join(args, " "), lastLines(out, 5))
	}
	return tps, nil
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

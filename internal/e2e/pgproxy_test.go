package e2e

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/tunnelrelay/tunnel/internal/admin"
	"github.com/tunnelrelay/tunnel/internal/agent"
	"github.com/tunnelrelay/tunnel/internal/harness"
	"github.com/tunnelrelay/tunnel/internal/testutil/pgtest"
	"github.com/tunnelrelay/tunnel/pkg/dbproxy"
)

// pgShared starts a real PostgreSQL, an agent declaring it twice (targets
// "pg" and "pg2"), and two postgres routes sharing one port: "warehouse",
// the default, and "sales". It returns the port.
func pgShared(t *testing.T, tr transport) (*pgtest.Server, *env, int) {
	t.Helper()
	pg := pgtest.Start(t)
	opt := testServerOptions()
	opt.PostgresDomain = harness.PostgresDomain
	e := newEnv(t, tr, opt)
	e.agent("dbagent", "pg="+pg.Addr(), "pg2="+pg.Addr())
	e.online("dbagent")
	addr := e.pgRoute("warehouse", "dbagent", "pg", "", nil)
	e.pgRoute("sales", "dbagent", "pg2", addr, nil)
	_, port, _ := net.SplitHostPort(addr)
	p, _ := strconv.Atoi(port)
	return pg, e, p
}

// pgRoute adds a postgres route on listen ("" for a new port) and returns
// its address.
func (e *env) pgRoute(name, agentName, target, listen string, isDefault *bool) string {
	e.t.Helper()
	addr, err := e.srv.AddProtocolRoute(e.ctx, name, agentName, target, dbproxy.ProtocolPostgres, listen, isDefault)
	if err != nil {
		e.t.Fatal(err)
	}
	return addr
}

// psqlConn runs psql -c sql with a connection string, returning its
// combined output and error.
func psqlConn(t *testing.T, pg *pgtest.Server, conninfo, sql string) (string, error) {
	t.Helper()
	out, err := pg.Command(t, "psql", "-X", "-A", "-t", "-d", conninfo, "-c", sql).CombinedOutput()
	return strings.TrimSpace(string(out)), err
}

// sessionRoutes returns the routes of the server's live sessions.
func (e *env) sessionRoutes() []string {
	st, err := e.srv.Status(e.ctx)
	if err != nil {
		e.t.Fatal(err)
	}
	var out []string
	for _, s := range st.Sessions {
		out = append(out, s.Route)
	}
	return out
}

// TestPostgresSharedPort: clients pick one of two routes on one port by
// TLS server name, by parameter, or get the default, with psql, pgx and
// pgbench.
func TestPostgresSharedPort(t *testing.T) {
	forEachTransport(t, func(t *testing.T, tr transport) {
		pg, e, port := pgShared(t, tr)
		base := fmt.Sprintf("hostaddr=127.0.0.1 port=%d user=%s dbname=%s", port, pg.User, pg.Database)

		t.Run("psql", func(t *testing.T) {
			for _, tc := range []struct{ name, conninfo string }{
				{"default route, no TLS", "host=localhost sslmode=disable"},
				{"default route, TLS", "host=localhost sslmode=require"},
				{"server name", "host=sales.db.test sslmode=require"},
				{"options", "host=localhost sslmode=disable options=tunnel_route=sales"},
				{"server name, verified", "host=sales.db.test sslmode=verify-full sslrootcert=" + e.caFile()},
			} {
				out, err := psqlConn(t, pg, tc.conninfo+" "+base, "select 40 + 2")
				if err != nil || out != "42" {
					t.Errorf("%s: psql printed %q, %v", tc.name, out, err)
				}
			}
		})

		t.Run("pgx picks the route", func(t *testing.T) {
			for _, tc := range []struct{ name, dsn, want string }{
				{"default", "sslmode=disable", "warehouse"},
				{"parameter", "sslmode=disable tunnel_route=sales", "sales"},
				{"server name", "host=sales.db.test sslmode=require", "sales"},
				{"server name, direct TLS", "host=sales.db.test sslmode=require sslnegotiation=direct", "sales"},
			} {
				cfg, err := pgx.ParseConfig(fmt.Sprintf("host=localhost port=%d user=%s dbname=%s %s", port, pg.User, pg.Database, tc.dsn))
				if err != nil {
					t.Fatal(err)
				}
				cfg.LookupFunc = func(context.Context, string) ([]string, error) { return []string{"127.0.0.1"}, nil }
				ctx, cancel := context.WithTimeout(e.ctx, 10*time.Second)
				conn, err := pgx.ConnectConfig(ctx, cfg)
				if err != nil {
					cancel()
					t.Fatalf("%s: %v", tc.name, err)
				}
				var n int
				if err := conn.QueryRow(ctx, "select 1").Scan(&n); err != nil {
					t.Errorf("%s: %v", tc.name, err)
				}
				if got := e.sessionRoutes(); len(got) != 1 || got[0] != tc.want {
					t.Errorf("%s: sessions on routes %q, want [%s]", tc.name, got, tc.want)
				}
				conn.Close(ctx)
				cancel()
				waitUntil(t, 5*time.Second, func() bool { return len(e.sessionRoutes()) == 0 })
			}
		})

		t.Run("pgbench", func(t *testing.T) {
			args := []string{"-h", "sales.db.test", "-p", strconv.Itoa(port)}
			env := []string{"PGSSLMODE=require", "PGHOSTADDR=127.0.0.1"}
			run := func(extra ...string) string {
				cmd := pg.Command(t, "pgbench", append(extra, args...)...)
				cmd.Env = append(cmd.Env, env...)
				out, err := cmd.CombinedOutput()
				if err != nil {
					t.Fatalf("pgbench %q: %v\n%s", extra, err, out)
				}
				return string(out)
			}
			run("-i", "-s", "1", "-q")
			for _, mode := range [][]string{{"-S", "-c", "4", "-j", "2", "-T", "2", "-n"}, {"-S", "-C", "-c", "4", "-j", "2", "-T", "2", "-n"}} {
				out := run(mode...)
				done, failed := pgbenchCounts(out)
				if done == 0 || failed != 0 {
					t.Fatalf("pgbench %q: %d transactions, %d failed:\n%s", mode, done, failed, out)
				}
				t.Logf("pgbench %s through the shared port over TLS: %d transactions", strings.Join(mode, " "), done)
			}
		})
	})
}

// pgbenchCounts reads the processed and failed transactions from pgbench's
// report.
func pgbenchCounts(out string) (done, failed int) {
	for line := range strings.SplitSeq(out, "\n") {
		if v, ok := strings.CutPrefix(line, "number of failed transactions: "); ok {
			failed, _ = strconv.Atoi(strings.Fields(v)[0])
		}
		if v, ok := strings.CutPrefix(line, "number of transactions actually processed: "); ok {
			done, _ = strconv.Atoi(strings.Fields(v)[0])
		}
	}
	return done, failed
}

func waitUntil(t *testing.T, d time.Duration, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(d); !cond(); {
		if time.Now().After(deadline) {
			t.Fatalf("condition not met within %v", d)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestPostgresErrorsPsql: every way a route can fail reaches psql as a
// readable FATAL error with its SQLSTATE, before any database is reached.
func TestPostgresErrorsPsql(t *testing.T) {
	forEachTransport(t, func(t *testing.T, tr transport) {
		pg := pgtest.Start(t)
		e := newEnv(t, tr, testServerOptions())
		closed := freeAddr(t)
		e.agent("dbagent", "pg="+pg.Addr(), "down="+closed)
		e.online("dbagent")
		// Registered, never started.
		if _, err := e.srv.NewAgent(e.ctx, harness.AgentConfig{Name: "sleeper"}); err != nil {
			t.Fatal(err)
		}
		// A shared port without a default route.
		no := false
		shared := e.pgRoute("a", "dbagent", "pg", "", &no)
		e.pgRoute("b", "dbagent", "pg", shared, &no)
		routes := map[string]string{
			"offline":    e.pgRoute("offline", "sleeper", "pg", "", nil),
			"undeclared": e.pgRoute("undeclared", "dbagent", "nosuch", "", nil),
			"down":       e.pgRoute("down", "dbagent", "down", "", nil),
		}
		limited, err := e.srv.Server.AddRoute(e.ctx, adminRoute("limited", "dbagent", "pg", dbproxy.ProtocolPostgres, 1, nil))
		if err != nil {
			t.Fatal(err)
		}
		routes["limited"] = limited.Listen
		walled, err := e.srv.Server.AddRoute(e.ctx, adminRoute("walled", "dbagent", "pg", dbproxy.ProtocolPostgres, 0, []string{"192.0.2.0/24"}))
		if err != nil {
			t.Fatal(err)
		}
		routes["walled"] = walled.Listen

		// Hold the limited route's one session.
		hold, err := pgx.Connect(e.ctx, fmt.Sprintf("postgres://%s@%s/%s?sslmode=disable", pg.User, limited.Listen, pg.Database))
		if err != nil {
			t.Fatal(err)
		}
		defer hold.Close(e.ctx)

		conninfo := func(addr, extra string) string {
			host, port, _ := net.SplitHostPort(addr)
			return fmt.Sprintf("host=%s port=%s user=%s dbname=%s sslmode=require %s", host, port, pg.User, pg.Database, extra)
		}
		for _, tc := range []struct {
			name, conninfo, sqlstate, want string
		}{
			{"unknown route", conninfo(shared, "options=tunnel_route=nope"), "3D000", `no route "nope" on this port`},
			{"no route named", conninfo(shared, ""), "3D000", "names none"},
			{"agent offline", conninfo(routes["offline"], ""), "08006", `agent "sleeper" is not connected`},
			{"target not declared", conninfo(routes["undeclared"], ""), "08006", `does not declare target "nosuch"`},
			{"database unreachable", conninfo(routes["down"], ""), "08006", `target "down" refused the connection`},
			{"session limit", conninfo(routes["limited"], ""), "53300", `route "limited" is at its limit of 1 open sessions`},
			{"address not allowed", conninfo(routes["walled"], ""), "28000", `FATAL:  connections from 127.0.0.1 are not allowed here`},
		} {
			t.Run(tc.name, func(t *testing.T) {
				cmd := pg.Command(t, "psql", "-X", "-d", tc.conninfo, "-c", "select 1")
				out, err := cmd.CombinedOutput()
				var ee *exec.ExitError
				if !errors.As(err, &ee) {
					t.Fatalf("psql: %v\n%s", err, out)
				}
				if !strings.Contains(string(out), "FATAL:  ") || !strings.Contains(string(out), tc.want) {
					t.Fatalf("psql printed:\n%s\nwant FATAL with %q", out, tc.want)
				}
				t.Logf("psql prints:\n%s", out)
				// The SQLSTATE, as a driver sees it.
				_, err = pgconn.Connect(e.ctx, tc.conninfo)
				var pe *pgconn.PgError
				if !errors.As(err, &pe) || pe.Code != tc.sqlstate {
					t.Fatalf("pgconn: %v, want SQLSTATE %s", err, tc.sqlstate)
				}
			})
		}
	})
}

// TestPostgresCancel: psql's Ctrl-C and a pgx context cancellation stop
// select pg_sleep(60) through the tunnel within 2 seconds, over TLS and
// without.
func TestPostgresCancel(t *testing.T) {
	forEachTransport(t, func(t *testing.T, tr transport) {
		pg, e, port := pgShared(t, tr)
		for _, ssl := range []string{"disable", "require"} {
			conninfo := fmt.Sprintf("host=sales.db.test hostaddr=127.0.0.1 port=%d user=%s dbname=%s sslmode=%s",
				port, pg.User, pg.Database, ssl)

			t.Run("psql SIGINT, sslmode="+ssl, func(t *testing.T) {
				cmd := pg.Command(t, "psql", "-X", "-d", conninfo, "-c", "select pg_sleep(60)")
				var out strings.Builder
				cmd.Stdout, cmd.Stderr = &out, &out
				if err := cmd.Start(); err != nil {
					t.Fatal(err)
				}
				waitUntil(t, 10*time.Second, func() bool { return sleeping(t, pg) })
				start := time.Now()
				cmd.Process.Signal(syscall.SIGINT)
				done := make(chan error, 1)
				go func() { done <- cmd.Wait() }()
				select {
				case <-done:
				case <-time.After(5 * time.Second):
					cmd.Process.Kill()
					t.Fatalf("psql still running 5s after SIGINT:\n%s", out.String())
				}
				el := time.Since(start)
				if !strings.Contains(out.String(), "canceling statement due to user request") {
					t.Fatalf("psql printed:\n%s", out.String())
				}
				if el > 2*time.Second {
					t.Errorf("cancel took %v, want under 2s", el)
				}
				t.Logf("psql canceled in %v: %s", el.Round(time.Millisecond), strings.TrimSpace(out.String()))
			})

			t.Run("pgx context, sslmode="+ssl, func(t *testing.T) {
				cfg, err := pgx.ParseConfig(strings.Replace(conninfo, "hostaddr=127.0.0.1 ", "", 1))
				if err != nil {
					t.Fatal(err)
				}
				cfg.LookupFunc = func(context.Context, string) ([]string, error) { return []string{"127.0.0.1"}, nil }
				conn, err := pgx.ConnectConfig(e.ctx, cfg)
				if err != nil {
					t.Fatal(err)
				}
				defer conn.Close(e.ctx)
				ctx, cancel := context.WithCancel(e.ctx)
				defer cancel()
				// The query runs on its own goroutine; the test's own waits and
				// failures stay on this one.
				res := make(chan error, 1)
				go func() {
					_, err := conn.Exec(ctx, "select pg_sleep(60)")
					res <- err
				}()
				waitUntil(t, 10*time.Second, func() bool { return sleeping(t, pg) })
				start := time.Now()
				cancel()
				err = <-res
				el := time.Since(start)
				if err == nil {
					t.Fatal("pg_sleep(60) returned without error")
				}
				var pe *pgconn.PgError
				if !errors.As(err, &pe) || pe.Code != "57014" {
					// pgx may return the context's error before the
					// server's answer; what counts is checked below.
					t.Logf("pgx: %v", err)
				}
				if el > 2*time.Second {
					t.Errorf("canceled query returned %v after the cancel", el)
				}
				// The database itself was told: nothing sleeps on.
				waitUntil(t, 2*time.Second, func() bool { return !sleeping(t, pg) })
			})
		}
	})
}

// sleeping reports whether a pg_sleep query is running in pg.
func sleeping(t *testing.T, pg *pgtest.Server) bool {
	return pg.Psql(t, "select count(*) from pg_stat_activity where query like 'select pg_sleep(60)%' and state = 'active'") != "0"
}

// adminRoute is a route request on a new loopback port.
func adminRoute(name, agentName, target, protocol string, maxSessions int, allow []string) admin.AddRouteRequest {
	return admin.AddRouteRequest{Name: name, Agent: agentName, Target: target, Listen: "127.0.0.1:0",
		Protocol: protocol, MaxSessions: maxSessions, Allow: allow}
}

// caFile writes the server's CA certificate to a file, for clients that
// verify the server.
func (e *env) caFile() string {
	e.t.Helper()
	path := filepath.Join(e.t.TempDir(), "ca.pem")
	if err := os.WriteFile(path, e.srv.CAPEM, 0o600); err != nil {
		e.t.Fatal(err)
	}
	return path
}

// TestPostgresTLSBothLegs: the client's TLS ends at the server and the
// agent has TLS of its own to the database (verify-full). With a SCRAM
// password, channel binding cannot work across the two: psql, which picks
// it by default, is told why; with channel_binding=disable, or without
// client TLS, or with the agent's leg in plaintext, the login works.
func TestPostgresTLSBothLegs(t *testing.T) {
	forEachTransport(t, func(t *testing.T, tr transport) {
		const user, password = "scram_user", "s3cret pass"
		pg := pgtest.StartWith(t, pgtest.Options{TLS: true, ScramUser: user, ScramPassword: password})
		e := newEnv(t, tr, testServerOptions())
		e.agentWith(harness.AgentConfig{Name: "dbagent", Targets: []agent.Target{
			{Name: "tls", Address: pg.Addr(), TLS: agent.TLSVerifyFull, TLSCA: pg.CAPEM, TLSServerName: "localhost"},
			{Name: "plain", Address: pg.Addr()},
		}})
		e.online("dbagent")
		viaTLS := e.pgRoute("via-tls", "dbagent", "tls", "", nil)
		viaPlain := e.pgRoute("via-plain", "dbagent", "plain", "", nil)

		conninfo := func(addr, extra string) string {
			host, port, _ := net.SplitHostPort(addr)
			return fmt.Sprintf("host=%s port=%s user=%s password='%s' dbname=%s %s", host, port, user, password, pg.Database, extra)
		}
		// The database sees TLS on the agent's leg exactly when asked.
		const sslQuery = "select ssl from pg_stat_ssl where pid = pg_backend_pid()"
		for _, tc := range []struct {
			name, conninfo, want string
		}{
			{"client TLS, agent TLS, binding disabled", conninfo(viaTLS, "sslmode=require channel_binding=disable"), "t"},
			{"client plain, agent TLS", conninfo(viaTLS, "sslmode=disable"), "t"},
			{"client TLS, agent plain", conninfo(viaPlain, "sslmode=require"), "f"},
		} {
			out, err := psqlConn(t, pg, tc.conninfo, sslQuery)
			if err != nil || out != tc.want {
				t.Errorf("%s: psql printed %q, %v; want %q", tc.name, out, err, tc.want)
			}
		}

		out, err := psqlConn(t, pg, conninfo(viaTLS, "sslmode=require"), "select 1")
		if err == nil || !strings.Contains(out, "FATAL:  route \"via-tls\": SCRAM channel binding cannot pass through the tunnel") ||
			!strings.Contains(out, "channel_binding=disable") {
			t.Fatalf("psql with channel binding printed:\n%s", out)
		}
		t.Logf("psql with channel binding across both legs prints:\n%s", out)
	})
}

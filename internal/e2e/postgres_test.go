package e2e

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tunnelrelay/tunnel/internal/testutil/pgtest"
)

// pgRoute starts a real PostgreSQL, an agent that declares it, connected
// over tr, and a route to it, and returns the database and the route's host
// and port.
func pgRoute(t *testing.T, tr transport) (*pgtest.Server, *env, string, int) {
	t.Helper()
	pg := pgtest.Start(t)
	e := newEnv(t, tr, testServerOptions())
	e.agent("dbagent", "pg="+pg.Addr())
	e.online("dbagent")
	host, port, _ := net.SplitHostPort(e.route("pg", "dbagent", "pg"))
	p, _ := strconv.Atoi(port)
	return pg, e, host, p
}

// TestPostgres drives a real PostgreSQL through a route with real clients:
// psql, 50 concurrent pgx sessions, pgbench -i and pgbench -S.
func TestPostgres(t *testing.T) {
	forEachTransport(t, func(t *testing.T, tr transport) {
		pg, e, host, port := pgRoute(t, tr)
		routeDSN := fmt.Sprintf("postgres://%s@%s/%s?sslmode=disable", pg.User, net.JoinHostPort(host, strconv.Itoa(port)), pg.Database)

		t.Run("psql select 1", func(t *testing.T) {
			cmd := pg.Command(t, "psql", "-X", "-A", "-t", "-h", host, "-p", strconv.Itoa(port), "-c", "select 1")
			out, err := cmd.CombinedOutput()
			if err != nil {
				t.Fatalf("psql through the route: %v\n%s", err, out)
			}
			if strings.TrimSpace(string(out)) != "1" {
				t.Fatalf("psql printed %q, want 1", out)
			}
		})

		t.Run("50 concurrent pgx sessions", func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			const sessions = 50
			var wg sync.WaitGroup
			errs := make(chan error, sessions)
			for i := range sessions {
				wg.Add(1)
				go func() {
					defer wg.Done()
					conn, err := pgx.Connect(ctx, routeDSN)
					if err != nil {
						errs <- fmt.Errorf("session %d: connect: %w", i, err)
						return
					}
					defer conn.Close(ctx)
					for j := range 20 {
						var sum int64
						var pid int
						err := conn.QueryRow(ctx, "select sum(g), pg_backend_pid() from generate_series(1, $1::int) g", 1000+i*10+j).Scan(&sum, &pid)
						if err != nil {
							errs <- fmt.Errorf("session %d query %d: %w", i, j, err)
							return
						}
						n := int64(1000 + i*10 + j)
						if sum != n*(n+1)/2 {
							errs <- fmt.Errorf("session %d: sum %d, want %d", i, sum, n*(n+1)/2)
							return
						}
					}
					// Something bigger than a window's worth, both ways.
					payload := strings.Repeat("x", 300_000)
					var back string
					if err := conn.QueryRow(ctx, "select $1::text", payload).Scan(&back); err != nil || back != payload {
						errs <- fmt.Errorf("session %d: large round trip: %v", i, err)
					}
				}()
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				t.Error(err)
			}
		})

		t.Run("pgbench", func(t *testing.T) {
			args := []string{"-h", host, "-p", strconv.Itoa(port)}
			out, err := pg.Command(t, "pgbench", append([]string{"-i", "-s", "2", "-q"}, args...)...).CombinedOutput()
			if err != nil {
				t.Fatalf("pgbench -i through the route: %v\n%s", err, out)
			}
			out, err = pg.Command(t, "pgbench", append([]string{"-S", "-c", "8", "-j", "2", "-T", "3", "-n"}, args...)...).CombinedOutput()
			if err != nil {
				t.Fatalf("pgbench -S through the route: %v\n%s", err, out)
			}
			done, failed := pgbenchCounts(string(out))
			if done == 0 || failed != 0 {
				t.Fatalf("pgbench: %d transactions, %d failed:\n%s", done, failed, out)
			}
			t.Logf("pgbench -S -c 8 -T 3 through the route: %d transactions", done)
		})

		// Every session was logged with its route, target, client and bytes.
		line := e.log.waitFor(t, 5*time.Second, "session ended", "module=server", "route=pg", "target=pg", "client=127.0.0.1:", "bytes_up=", "bytes_down=", "duration=")
		if strings.Contains(line, "bytes_up=0 ") {
			t.Errorf("a psql session moved no bytes: %s", line)
		}
	})
}

// TestPostgresGoesAway: the database stops in the middle of sessions; the
// clients get an error promptly instead of hanging.
func TestPostgresGoesAway(t *testing.T) {
	forEachTransport(t, func(t *testing.T, tr transport) {
		pg, _, host, port := pgRoute(t, tr)
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		dsn := fmt.Sprintf("postgres://%s@%s/%s?sslmode=disable", pg.User, net.JoinHostPort(host, strconv.Itoa(port)), pg.Database)
		conn, err := pgx.Connect(ctx, dsn)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close(ctx)
		pg.Stop()
		start := time.Now()
		qctx, qcancel := context.WithTimeout(ctx, 10*time.Second)
		defer qcancel()
		if _, err := conn.Exec(qctx, "select 1"); err == nil {
			t.Fatal("a query on a stopped database succeeded")
		}
		if el := time.Since(start); el > 5*time.Second {
			t.Fatalf("the client waited %v for its error", el)
		}
	})
}

package e2e

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/netip"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"

	"github.com/tunnelrelay/tunnel/internal/agent"
	"github.com/tunnelrelay/tunnel/internal/harness"
	"github.com/tunnelrelay/tunnel/internal/testutil/mariadbtest"
	"github.com/tunnelrelay/tunnel/pkg/dbproxy"
)

// mysqlRoute adds a mysql route on a new loopback port and returns its
// address.
func (e *env) mysqlRoute(name, agentName, target string) string {
	e.t.Helper()
	addr, err := e.srv.AddProtocolRoute(e.ctx, name, agentName, target, dbproxy.ProtocolMySQL, "", nil)
	if err != nil {
		e.t.Fatal(err)
	}
	return addr
}

// TestMariaDB drives a real MariaDB through mysql routes with the mariadb
// client, mariadb-slap and 50 concurrent go-sql-driver sessions, and checks
// that a target with proxy_protocol passes the client's own address on.
func TestMariaDB(t *testing.T) {
	forEachTransport(t, func(t *testing.T, tr transport) {
		db := mariadbtest.Start(t, mariadbtest.Options{ProxyProtocolNetworks: "127.0.0.0/8"})
		e := newEnv(t, tr, testServerOptions())
		e.agentWith(harness.AgentConfig{Name: "dbagent", Targets: []agent.Target{
			{Name: "db", Address: db.Addr()},
			{Name: "db-pp", Address: db.Addr(), ProxyProtocol: true},
		}})
		e.online("dbagent")
		route := e.mysqlRoute("orders", "dbagent", "db")
		viaPP := e.mysqlRoute("orders-pp", "dbagent", "db-pp")

		t.Run("mariadb -e", func(t *testing.T) {
			if out := db.Query(t, route, "select 1"); out != "1" {
				t.Fatalf("mariadb printed %q, want 1", out)
			}
		})

		t.Run("mariadb-slap", func(t *testing.T) {
			out := db.Slap(t, route, "--concurrency=8", "--iterations=2", "--number-of-queries=400",
				"--auto-generate-sql", "--auto-generate-sql-load-type=mixed")
			if !strings.Contains(out, "Average number of seconds to run all queries") {
				t.Fatalf("mariadb-slap printed:\n%s", out)
			}
			t.Logf("mariadb-slap through the route:\n%s", out)
		})

		t.Run("50 concurrent go-sql-driver sessions", func(t *testing.T) {
			pool, err := sql.Open("mysql", db.DSNAt(route))
			if err != nil {
				t.Fatal(err)
			}
			defer pool.Close()
			pool.SetMaxOpenConns(50)
			ctx, cancel := context.WithTimeout(e.ctx, time.Minute)
			defer cancel()
			var wg sync.WaitGroup
			errs := make(chan error, 50)
			for i := range 50 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					conn, err := pool.Conn(ctx)
					if err != nil {
						errs <- fmt.Errorf("session %d: %w", i, err)
						return
					}
					defer conn.Close()
					for j := range 20 {
						n := 100 + i*20 + j
						var sum int64
						err := conn.QueryRowContext(ctx, "select sum(seq) from seq_1_to_"+fmt.Sprint(n)).Scan(&sum)
						if err != nil || sum != int64(n*(n+1)/2) {
							errs <- fmt.Errorf("session %d query %d: sum %d, %v", i, j, sum, err)
							return
						}
					}
					payload := strings.Repeat("y", 300_000)
					var back string
					if err := conn.QueryRowContext(ctx, "select ?", payload).Scan(&back); err != nil || back != payload {
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

		t.Run("PROXY header carries the client address", func(t *testing.T) {
			// The sessions of the tests above end in the background.
			waitUntil(t, 10*time.Second, func() bool { return len(e.sessionRoutes()) == 0 })
			for _, tc := range []struct {
				route string
				pp    bool
			}{{viaPP, true}, {route, false}} {
				pool, err := sql.Open("mysql", db.DSNAt(tc.route))
				if err != nil {
					t.Fatal(err)
				}
				conn, err := pool.Conn(e.ctx)
				if err != nil {
					t.Fatal(err)
				}
				seen := mariadbtest.ClientAddr(t, conn)
				st, err := e.srv.Status(e.ctx)
				if err != nil {
					t.Fatal(err)
				}
				if len(st.Sessions) != 1 {
					t.Fatalf("%d sessions, want 1", len(st.Sessions))
				}
				client := netip.MustParseAddrPort(st.Sessions[0].Client)
				if (seen == client) != tc.pp {
					t.Errorf("route %s (proxy_protocol %v): MariaDB sees %s, the tunnel's client is %s", tc.route, tc.pp, seen, client)
				}
				conn.Close()
				pool.Close()
				waitUntil(t, 5*time.Second, func() bool { return len(e.sessionRoutes()) == 0 })
			}
		})
	})
}

// TestMariaDBErrors: every way a mysql route can fail reaches the mariadb
// client as an error packet it prints, and go-sql-driver as a MySQLError.
func TestMariaDBErrors(t *testing.T) {
	forEachTransport(t, func(t *testing.T, tr transport) {
		db := mariadbtest.Start(t, mariadbtest.Options{})
		e := newEnv(t, tr, testServerOptions())
		e.agent("dbagent", "db="+db.Addr(), "down="+freeAddr(t))
		e.online("dbagent")
		if _, err := e.srv.NewAgent(e.ctx, harness.AgentConfig{Name: "sleeper"}); err != nil {
			t.Fatal(err)
		}
		limited, err := e.srv.Server.AddRoute(e.ctx, adminRoute("limited", "dbagent", "db", dbproxy.ProtocolMySQL, 1, nil))
		if err != nil {
			t.Fatal(err)
		}
		walled, err := e.srv.Server.AddRoute(e.ctx, adminRoute("walled", "dbagent", "db", dbproxy.ProtocolMySQL, 0, []string{"192.0.2.0/24"}))
		if err != nil {
			t.Fatal(err)
		}
		hold, err := sql.Open("mysql", db.DSNAt(limited.Listen))
		if err != nil {
			t.Fatal(err)
		}
		defer hold.Close()
		held, err := hold.Conn(e.ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer held.Close()

		for _, tc := range []struct {
			name, addr string
			code       uint16
			want       string
		}{
			{"agent offline", e.mysqlRoute("offline", "sleeper", "db"), 1105, `agent "sleeper" is not connected`},
			{"target not declared", e.mysqlRoute("undeclared", "dbagent", "nosuch"), 1105, `does not declare target "nosuch"`},
			{"database unreachable", e.mysqlRoute("down", "dbagent", "down"), 1105, `target "down" refused the connection`},
			{"session limit", limited.Listen, 1040, `route "limited" is at its limit of 1 open sessions`},
			{"address not allowed", walled.Listen, 1130, `tunnel: connections from 127.0.0.1 are not allowed here`},
		} {
			t.Run(tc.name, func(t *testing.T) {
				cmd := db.ClientCommand(t, "mariadb", tc.addr, "--execute=select 1")
				out, err := cmd.CombinedOutput()
				var ee *exec.ExitError
				if !errors.As(err, &ee) || !strings.Contains(string(out), fmt.Sprintf("ERROR %d (", tc.code)) || !strings.Contains(string(out), tc.want) {
					t.Fatalf("mariadb: %v\n%s\nwant ERROR %d with %q", err, out, tc.code, tc.want)
				}
				t.Logf("mariadb prints: %s", strings.TrimSpace(string(out)))
				pool, err := sql.Open("mysql", db.DSNAt(tc.addr))
				if err != nil {
					t.Fatal(err)
				}
				defer pool.Close()
				err = pool.PingContext(e.ctx)
				var me *mysql.MySQLError
				if !errors.As(err, &me) || me.Number != tc.code {
					t.Fatalf("go-sql-driver: %v, want error %d", err, tc.code)
				}
			})
		}
	})
}

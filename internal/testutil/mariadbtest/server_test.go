package mariadbtest

import (
	"context"
	"database/sql"
	"errors"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"

	"github.com/tunnelrelay/tunnel/internal/testutil/fixture"
	"github.com/tunnelrelay/tunnel/internal/testutil/leakcheck"
)

// openDB opens a pool for dsn whose driver logs to the test instead of
// standard error, closed when the test ends.
func openDB(t testing.TB, dsn string, dial func(ctx context.Context, network, addr string) (net.Conn, error)) *sql.DB {
	t.Helper()
	cfg, err := mysql.ParseDSN(dsn)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Logger = mysql.Logger(testLogger{t})
	cfg.DialFunc = dial
	connector, err := mysql.NewConnector(cfg)
	if err != nil {
		t.Fatal(err)
	}
	db := sql.OpenDB(connector)
	t.Cleanup(func() { db.Close() })
	return db
}

type testLogger struct{ t testing.TB }

func (l testLogger) Print(v ...any) { l.t.Log(append([]any{"mysql driver:"}, v...)...) }

func TestStartSelect1(t *testing.T) {
	leakcheck.Check(t)
	s := Start(t, Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	t.Run("go-sql-driver", func(t *testing.T) {
		db := openDB(t, s.DSN(), nil)
		var one int
		if err := db.QueryRowContext(ctx, "select 1").Scan(&one); err != nil || one != 1 {
			t.Fatalf("select 1 = %d, %v", one, err)
		}
		var user, database, charset string
		var maxConns, perfSchema int
		err := db.QueryRowContext(ctx, "select current_user(), database(), @@max_connections, @@performance_schema, @@character_set_server").
			Scan(&user, &database, &maxConns, &perfSchema, &charset)
		if err != nil {
			t.Fatal(err)
		}
		if user != "tunnel@%" || database != "test" || maxConns != 300 || perfSchema != 0 || charset != "utf8mb4" {
			t.Fatalf("current_user %q, database %q, max_connections %d, performance_schema %d, character_set_server %q",
				user, database, maxConns, perfSchema, charset)
		}
	})
	t.Run("mariadb client", func(t *testing.T) {
		if got := s.Query(t, "", "select 40 + 2, database()"); got != "42\ttest" {
			t.Fatalf("Query = %q", got)
		}
	})
	t.Run("mariadb client without TLS", func(t *testing.T) {
		// Ssl_cipher is empty on a plain connection.
		if got := s.Query(t, s.Addr(), "show session status like 'Ssl_cipher'"); got != "Ssl_cipher\t" {
			t.Fatalf("Ssl_cipher = %q", got)
		}
	})
	t.Run("Query fails", func(t *testing.T) {
		r := &recorder{TB: t}
		s.Query(r, "", "select nosuchcolumn")
		if !r.failed {
			t.Fatal("a bad query did not fail the test")
		}
	})
	t.Run("unix socket", func(t *testing.T) {
		db := openDB(t, s.User+":"+s.Password+"@unix("+s.SocketPath()+")/test", nil)
		var one int
		if err := db.QueryRowContext(ctx, "select 1").Scan(&one); err != nil || one != 1 {
			t.Fatalf("select 1 over the socket = %d, %v", one, err)
		}
	})
	t.Run("wrong password", func(t *testing.T) {
		db := openDB(t, s.User+":wrong@tcp("+s.Addr()+")/test", nil)
		var merr *mysql.MySQLError
		if err := db.PingContext(ctx); !errors.As(err, &merr) || merr.Number != 1045 {
			t.Fatalf("ping with a wrong password = %v, want error 1045", err)
		}
	})
	t.Run("Stop", func(t *testing.T) {
		s.Stop()
		s.Stop()
		db := openDB(t, s.DSN(), nil)
		if err := db.PingContext(ctx); err == nil {
			t.Fatal("connected after Stop")
		}
	})
}

func TestStartRemovesDir(t *testing.T) {
	var dir string
	t.Run("start", func(t *testing.T) {
		s := Start(t, Options{})
		dir = s.Dir
		if _, err := os.Stat(filepath.Join(s.DataDir(), "test")); err != nil {
			t.Fatal(err)
		}
	})
	if dir == "" {
		t.Skip("server did not start")
	}
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("%s still exists after the test: %v", dir, err)
	}
}

// TestStartIsolated checks that servers made from the same template share
// nothing.
func TestStartIsolated(t *testing.T) {
	a, b := Start(t, Options{}), Start(t, Options{})
	if a.Dir == b.Dir || a.Port == b.Port {
		t.Fatalf("two servers share a directory or port: %s:%d, %s:%d", a.Dir, a.Port, b.Dir, b.Port)
	}
	a.Query(t, "", "CREATE TABLE only_a (id int); CREATE USER 'only_a'@'%'")
	if got := b.Query(t, "", "SELECT count(*) FROM information_schema.tables WHERE table_name = 'only_a'"); got != "0" {
		t.Fatalf("a table made on one server shows on the other: count %s", got)
	}
	if got := b.Query(t, "", "SELECT count(*) FROM mysql.user WHERE user = 'only_a'"); got != "0" {
		t.Fatalf("a user made on one server shows on the other: count %s", got)
	}
}

func TestClientAddr(t *testing.T) {
	s := Start(t, Options{})
	locals := make(chan net.Addr, 1)
	db := openDB(t, s.DSN(), func(ctx context.Context, network, addr string) (net.Conn, error) {
		var d net.Dialer
		c, err := d.DialContext(ctx, network, addr)
		if err == nil {
			locals <- c.LocalAddr()
		}
		return c, err
	})
	conn, err := db.Conn(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	want := (<-locals).(*net.TCPAddr).AddrPort()
	if got := ClientAddr(t, conn); got != want {
		t.Fatalf("ClientAddr = %v, want the connection's local address %v", got, want)
	}
}

func TestParseHost(t *testing.T) {
	tests := []struct {
		host    string
		want    string
		wantErr bool
	}{
		{"127.0.0.1:5432", "127.0.0.1:5432", false},
		{"2001:db8::5:999", "[2001:db8::5]:999", false},
		{"::1:40000", "[::1]:40000", false},
		{"localhost", "", true},
		{"example.com:80", "", true},
	}
	for _, tt := range tests {
		t.Run(tt.host, func(t *testing.T) {
			got, err := parseHost(tt.host)
			if tt.wantErr {
				if err == nil {
					t.Fatalf("parseHost = %v, want an error", got)
				}
				return
			}
			if err != nil || got != netip.MustParseAddrPort(tt.want) {
				t.Fatalf("parseHost = %v, %v, want %s", got, err, tt.want)
			}
		})
	}
}

func TestToolPath(t *testing.T) {
	t.Run("override lacking binaries", func(t *testing.T) {
		t.Setenv(EnvBin, t.TempDir())
		if _, err := ToolPath("mariadbd"); !errors.Is(err, ErrNotInstalled) || !strings.Contains(err.Error(), EnvBin) {
			t.Fatalf("ToolPath = %v, want ErrNotInstalled naming %s", err, EnvBin)
		}
	})
	t.Run("override with the old name", func(t *testing.T) {
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, "mysqlslap"), []byte("#!/bin/sh\n"), 0o755); err != nil {
			t.Fatal(err)
		}
		t.Setenv(EnvBin, dir)
		if p, err := ToolPath("mariadb-slap"); err != nil || p != filepath.Join(dir, "mysqlslap") {
			t.Fatalf("ToolPath(mariadb-slap) = %q, %v, want the mysqlslap in %s", p, err, dir)
		}
	})
	t.Run("missing", func(t *testing.T) {
		_, err := ToolPath("mariadb-no-such-tool")
		if !errors.Is(err, ErrNotInstalled) || !strings.Contains(err.Error(), "apt-get install") {
			t.Fatalf("ToolPath = %v, want ErrNotInstalled saying how to install", err)
		}
	})
	t.Run("found", func(t *testing.T) {
		for _, name := range []string{"mariadbd", "mariadb-install-db", "mariadb", "mariadb-slap"} {
			if p := RequireTool(t, name); !fixture.IsExecutable(p) {
				t.Errorf("RequireTool(%s) = %q, not executable", name, p)
			}
		}
	})
}

// recorder captures how a helper ends a test without ending this one.
type recorder struct {
	testing.TB
	failed bool
}

func (r *recorder) Helper()               {}
func (r *recorder) Fatalf(string, ...any) { r.failed = true }

// TestStartPortTaken checks that a port taken between picking and binding is
// reported as errPortInUse, which Start retries, and not as a failure.
func TestStartPortTaken(t *testing.T) {
	mariadbd := RequireTool(t, "mariadbd")
	installDB := RequireTool(t, "mariadb-install-db")
	s := &Server{Host: "127.0.0.1", User: testUser, Database: testDatabase, Dir: tempDir(t)}
	if err := s.install(installDB); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Stop)

	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if err := s.start(mariadbd, l.Addr().(*net.TCPAddr).Port); !errors.Is(err, errPortInUse) {
		t.Fatalf("start on a taken port: %v, want errPortInUse\n%s", err, s.logTail(1024))
	}
	port, err := fixture.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	if err := s.start(mariadbd, port); err != nil {
		t.Fatalf("start on a free port after a failed one: %v\n%s", err, s.logTail(1024))
	}
}

func TestStartBadOption(t *testing.T) {
	// An option mariadbd rejects must fail Start, not hang it. Start itself
	// would end the test, so drive the steps by hand.
	mariadbd := RequireTool(t, "mariadbd")
	installDB := RequireTool(t, "mariadb-install-db")
	s := &Server{Host: "127.0.0.1", User: testUser, Database: testDatabase, Dir: tempDir(t),
		opts: Options{ProxyProtocolNetworks: "not-a-network"}}
	if err := s.install(installDB); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Stop)
	begin := time.Now()
	err := s.startOnFreePort(mariadbd)
	if err == nil {
		t.Fatal("mariadbd started with proxy_protocol_networks=not-a-network")
	}
	if time.Since(begin) > readyTimeout/2 {
		t.Errorf("failing took %v", time.Since(begin))
	}
	if !strings.Contains(err.Error(), "proxy") {
		t.Errorf("error does not show the server's complaint: %v", err)
	}
}

func TestSlap(t *testing.T) {
	leakcheck.Check(t)
	s := Start(t, Options{})
	out := s.Slap(t, "", "--concurrency=8", "--iterations=1", "--number-of-queries=200",
		"--auto-generate-sql", "--auto-generate-sql-load-type=mixed")
	if !strings.Contains(out, "Number of clients running queries: 8") {
		t.Fatalf("mariadb-slap did not run 8 clients:\n%s", out)
	}
	// mariadb-slap exits with status 0 after a failed query; Slap must not.
	r := &recorder{TB: t}
	s.Slap(r, "", "--create-schema=test", "--query=select nosuchcolumn")
	if !r.failed {
		t.Fatal("Slap passed a failing query")
	}
}

func TestStartParallel(t *testing.T) {
	for i := range 3 {
		t.Run(strconv.Itoa(i), func(t *testing.T) {
			t.Parallel()
			begin := time.Now()
			s := Start(t, Options{})
			t.Logf("Start took %v", time.Since(begin))
			if got := s.Query(t, "", "select 40 + 2"); got != "42" {
				t.Fatalf("select 40 + 2 = %q", got)
			}
		})
	}
}

package pgtest

import (
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tunnelrelay/tunnel/internal/testutil/fixture"
	"github.com/tunnelrelay/tunnel/internal/testutil/leakcheck"
)

func TestStartSelect1(t *testing.T) {
	leakcheck.Check(t)
	s := Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	t.Run("pgx", func(t *testing.T) {
		conn, err := pgx.Connect(ctx, s.DSN())
		if err != nil {
			t.Fatalf("connect %s: %v", s.DSN(), err)
		}
		defer conn.Close(ctx)
		var one int
		if err := conn.QueryRow(ctx, "select 1").Scan(&one); err != nil || one != 1 {
			t.Fatalf("select 1 = %d, %v", one, err)
		}
		var maxConns string
		if err := conn.QueryRow(ctx, "show max_connections").Scan(&maxConns); err != nil || maxConns != "300" {
			t.Fatalf("max_connections = %q, %v", maxConns, err)
		}
	})
	t.Run("psql DSN", func(t *testing.T) {
		out, err := s.Command(t, "psql", "-X", "-A", "-t", "-d", s.DSN(), "-c", "select 1").CombinedOutput()
		if err != nil || strings.TrimSpace(string(out)) != "1" {
			t.Fatalf("psql: %v: %s", err, out)
		}
	})
	t.Run("Psql", func(t *testing.T) {
		if got := s.Psql(t, "select current_user || ' ' || inet_server_addr()"); got != s.User+" 127.0.0.1/32" {
			t.Fatalf("Psql = %q", got)
		}
	})
	t.Run("unix socket", func(t *testing.T) {
		out, err := s.Command(t, "psql", "-X", "-A", "-t", "-h", s.SocketDir(), "-c", "select 2").CombinedOutput()
		if err != nil || strings.TrimSpace(string(out)) != "2" {
			t.Fatalf("psql over unix socket: %v: %s", err, out)
		}
	})
	t.Run("Stop", func(t *testing.T) {
		s.Stop()
		s.Stop()
		conn, err := pgx.Connect(ctx, s.DSN())
		if err == nil {
			conn.Close(ctx)
			t.Fatal("connected after Stop")
		}
	})
}

func TestStartRemovesDir(t *testing.T) {
	var dir string
	t.Run("start", func(t *testing.T) {
		dir = Start(t).Dir
		if _, err := os.Stat(filepath.Join(dir, "data", "PG_VERSION")); err != nil {
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

func TestBinDir(t *testing.T) {
	t.Run("override lacking binaries", func(t *testing.T) {
		t.Setenv(EnvBin, t.TempDir())
		if _, err := BinDir(); !errors.Is(err, ErrNotInstalled) || !strings.Contains(err.Error(), EnvBin) {
			t.Fatalf("BinDir = %v, want ErrNotInstalled naming %s", err, EnvBin)
		}
	})
	t.Run("found", func(t *testing.T) {
		dir, err := BinDir()
		if err != nil {
			unavailable(t, err.Error())
		}
		if missing := missingTools(dir); len(missing) > 0 {
			t.Fatalf("BinDir %s lacks %v", dir, missing)
		}
		for _, find := range []func() (string, error){PsqlPath, PgbenchPath} {
			if p, err := find(); err != nil || !fixture.IsExecutable(p) {
				t.Errorf("tool path %q: %v", p, err)
			}
		}
	})
}

func TestVersionLess(t *testing.T) {
	tests := []struct {
		a, b string
		want bool
	}{
		{"9.6", "15", true},
		{"15", "9.6", false},
		{"15", "16", true},
		{"16", "16", false},
		{"16", "16.1", true},
		{"devel", "15", true},
		{"15", "devel", false},
	}
	for _, tt := range tests {
		t.Run(tt.a+"<"+tt.b, func(t *testing.T) {
			if got := versionLess(tt.a, tt.b); got != tt.want {
				t.Errorf("versionLess(%q, %q) = %v", tt.a, tt.b, got)
			}
		})
	}
}

// TestStartPortTaken checks that a port taken between picking and binding is
// reported as errPortInUse, which Start retries, and not as a failure.
func TestStartPortTaken(t *testing.T) {
	bin, err := BinDir()
	if err != nil {
		unavailable(t, err.Error())
	}
	acct, err := serverAccount()
	if err != nil {
		unavailable(t, err.Error())
	}
	s := &Server{Host: "127.0.0.1", User: superuser, Database: "postgres", Dir: tempDir(t, acct), bin: bin, acct: acct}
	if err := s.initdb(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Stop)

	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if err := s.start(l.Addr().(*net.TCPAddr).Port); !errors.Is(err, errPortInUse) {
		t.Fatalf("start on a taken port: %v, want errPortInUse\n%s", err, s.logTail(1024))
	}
	port, err := fixture.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	if err := s.start(port); err != nil {
		t.Fatalf("start on a free port after a failed one: %v", err)
	}
}

func TestPgbench(t *testing.T) {
	leakcheck.Check(t)
	s := Start(t)
	if out, err := s.Command(t, "pgbench", "-i", "-q", "-s", "1").CombinedOutput(); err != nil {
		t.Fatalf("pgbench -i: %v\n%s", err, out)
	}
	out, err := s.Command(t, "pgbench", "-S", "-c", "8", "-j", "2", "-t", "50").CombinedOutput()
	if err != nil {
		t.Fatalf("pgbench -S: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "number of transactions actually processed: 400/400") {
		t.Fatalf("pgbench -S did not process 400 transactions:\n%s", out)
	}
}

func TestStartParallel(t *testing.T) {
	for i := range 3 {
		t.Run(strconv.Itoa(i), func(t *testing.T) {
			t.Parallel()
			s := Start(t)
			if got := s.Psql(t, "select 40 + 2"); got != "42" {
				t.Fatalf("select 40 + 2 = %q", got)
			}
		})
	}
}

// TestStartWithTLSAndScram: the server speaks TLS with a certificate for
// 127.0.0.1 that chains to CAPEM, the SCRAM role must give its password,
// stored as SCRAM-SHA-256, and the superuser still gets in without one.
func TestStartWithTLSAndScram(t *testing.T) {
	leakcheck.Check(t)
	s := StartWith(t, Options{TLS: true, ScramUser: "reporter", ScramPassword: "it's a secret"})
	if s.CAPEM == "" {
		t.Fatal("no CA PEM")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	rootCert := filepath.Join(t.TempDir(), "root.crt")
	if err := os.WriteFile(rootCert, []byte(s.CAPEM), 0o600); err != nil {
		t.Fatal(err)
	}
	verified := strings.Replace(s.ScramDSN(), "sslmode=disable", "sslmode=verify-full&sslrootcert="+rootCert, 1)

	t.Run("verify-full as the SCRAM role", func(t *testing.T) {
		conn, err := pgx.Connect(ctx, verified)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close(ctx)
		var user string
		var ssl bool
		err = conn.QueryRow(ctx, "select current_user, ssl from pg_stat_ssl where pid = pg_backend_pid()").Scan(&user, &ssl)
		if err != nil || user != "reporter" || !ssl {
			t.Fatalf("user %q ssl %v, %v", user, ssl, err)
		}
	})
	t.Run("localhost matches too", func(t *testing.T) {
		conn, err := pgx.Connect(ctx, strings.Replace(verified, "@127.0.0.1:", "@localhost:", 1))
		if err != nil {
			t.Fatal(err)
		}
		conn.Close(ctx)
	})
	t.Run("wrong password", func(t *testing.T) {
		conn, err := pgx.Connect(ctx, strings.Replace(s.ScramDSN(), "secret", "guess", 1))
		if err == nil {
			conn.Close(ctx)
			t.Fatal("logged in with a wrong password")
		}
		if !strings.Contains(err.Error(), "password authentication failed") {
			t.Fatalf("error %v, want a failed password authentication", err)
		}
	})
	t.Run("stored as SCRAM, superuser on trust", func(t *testing.T) {
		conn, err := pgx.Connect(ctx, s.DSN())
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close(ctx)
		var scram bool
		if err := conn.QueryRow(ctx, "select rolpassword like 'SCRAM-SHA-256$%' from pg_authid where rolname = 'reporter'").Scan(&scram); err != nil || !scram {
			t.Fatalf("SCRAM verifier %v, %v", scram, err)
		}
	})
}

func TestStartWithBadOptions(t *testing.T) {
	for _, o := range []Options{
		{ScramUser: "x"},
		{ScramPassword: "x"},
		{ScramUser: `a"b`, ScramPassword: "x"},
	} {
		if err := o.check(); err == nil {
			t.Errorf("%+v accepted", o)
		}
	}
}

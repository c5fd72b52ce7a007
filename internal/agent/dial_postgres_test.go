package agent

import (
	"context"
	"errors"
	"net"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/tunnelrelay/tunnel/internal/testutil/leakcheck"
	"github.com/tunnelrelay/tunnel/internal/testutil/pgtest"
)

// TestDialPostgresTLS: a real PostgreSQL with TLS on, reached through the
// agent's dial path with verify-full; pgx runs over the conn as it is
// (sslmode=disable: the conn is already TLS), logs in with SCRAM, and its
// cancel request, dialed the same way, goes over TLS too.
func TestDialPostgresTLS(t *testing.T) {
	leakcheck.Check(t)
	s := pgtest.StartWith(t, pgtest.Options{TLS: true, ScramUser: "tunnel_agent", ScramPassword: "s3cret pass"})
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()

	connect := func(t *testing.T, tg Target) (*pgx.Conn, error) {
		t.Helper()
		tg.Name, tg.Address = "warehouse", s.Addr()
		d, err := newDialer(tg)
		if err != nil {
			t.Fatal(err)
		}
		cfg, err := pgx.ParseConfig(s.ScramDSN())
		if err != nil {
			t.Fatal(err)
		}
		cfg.DialFunc = func(ctx context.Context, _, _ string) (net.Conn, error) {
			dctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			defer cancel()
			return d.dial(dctx, "192.0.2.1:5000")
		}
		return pgx.ConnectConfig(ctx, cfg)
	}

	t.Run("verify-full", func(t *testing.T) {
		conn, err := connect(t, Target{TLS: TLSVerifyFull, TLSCA: s.CAPEM})
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close(ctx)
		var user string
		var ssl bool
		err = conn.QueryRow(ctx, "select current_user, ssl from pg_stat_ssl where pid = pg_backend_pid()").Scan(&user, &ssl)
		if err != nil || user != "tunnel_agent" || !ssl {
			t.Fatalf("user %q, ssl %v, %v", user, ssl, err)
		}

		// A cancel request opens a new connection through the same dial
		// path; its first bytes are the CancelRequest, inside TLS.
		done := make(chan error, 1)
		go func() {
			_, err := conn.Exec(ctx, "select pg_sleep(20)")
			done <- err
		}()
		admin, err := pgx.Connect(ctx, s.DSN())
		if err != nil {
			t.Fatal(err)
		}
		defer admin.Close(ctx)
		for i := 0; ; i++ {
			var n int
			if err := admin.QueryRow(ctx, "select count(*) from pg_stat_activity where state = 'active' and query like 'select pg_sleep%'").Scan(&n); err != nil {
				t.Fatal(err)
			}
			if n == 1 {
				break
			}
			if i == 200 {
				t.Fatal("the query did not start within 2s")
			}
			time.Sleep(10 * time.Millisecond)
		}
		if err := conn.PgConn().CancelRequest(ctx); err != nil {
			t.Fatalf("cancel request: %v", err)
		}
		select {
		case err := <-done:
			var pgErr *pgconn.PgError
			if !errors.As(err, &pgErr) || pgErr.Code != "57014" {
				t.Fatalf("query ended with %v, want query_canceled (57014)", err)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("the query was not cancelled within 10s")
		}
	})

	t.Run("verify-full, wrong name", func(t *testing.T) {
		conn, err := connect(t, Target{TLS: TLSVerifyFull, TLSCA: s.CAPEM, TLSServerName: "db.example"})
		if err == nil {
			conn.Close(ctx)
			t.Fatal("connected")
		}
		want := `target "warehouse" failed the TLS handshake: certificate name mismatch`
		if got := describeDialErr("warehouse", err, 5*time.Second); got != want {
			t.Fatalf("reason %q, want %q (%v)", got, want, err)
		}
	})
}

// Package pgtest starts a real, throwaway PostgreSQL server for a test from
// the installed server binaries, and finds the PostgreSQL client programs
// (psql, pgbench) the end-to-end tests drive it with.
//
// When PostgreSQL is not installed, tests skip with a message saying what is
// missing; with TUNNEL_REQUIRE_POSTGRES=1 (set by CI) they fail instead.
// It is not a fixture manager: each Start is a fresh cluster (about two
// seconds), stopped and deleted when the test ends.
package pgtest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/tunnelrelay/tunnel/internal/testutil/fixture"
)

// Timeouts and bounds of Start and Stop.
const (
	initdbTimeout = 2 * time.Minute  // a loaded 2-core machine takes seconds
	readyTimeout  = 30 * time.Second // from exec of postgres to accepting connections
	stopTimeout   = 10 * time.Second // after SIGQUIT, before SIGKILL
	pollInterval  = 10 * time.Millisecond
	portAttempts  = 5 // fresh ports tried when postgres cannot bind
)

// superuser is the database role initdb creates. It is fixed, whatever OS
// user runs the tests or the server, so DSNs are predictable.
const superuser = "postgres"

// settings are appended to postgresql.conf. fsync=off trades crash safety,
// which a throwaway cluster does not need, for speed.
var settings = []string{
	"listen_addresses = '127.0.0.1'",
	"max_connections = 300",
	"fsync = off",
	"synchronous_commit = off",
	"full_page_writes = off",
}

// errPortInUse means postgres exited because its port was taken after we
// picked it; Start retries with another port.
var errPortInUse = errors.New("port already in use")

// Server is a PostgreSQL server started for a test from the installed
// binaries. Clients reach it over TCP at Host:Port as User (trust auth, no
// password) in Database; StartWith can add TLS and a role with a password.
type Server struct {
	Host     string // always 127.0.0.1
	Port     int
	User     string // database superuser role
	Database string // "postgres"
	Dir      string // holds data/, sock/ (unix socket) and postgres.log
	// CAPEM is the PEM of the CA that signed the server's certificate, with
	// Options.TLS; empty without.
	CAPEM string

	// Static after Start.
	bin  string
	acct account
	opts Options
	cmd  *exec.Cmd
	done chan struct{} // closed when cmd.Wait returns

	stopOnce sync.Once
}

// Addr returns "127.0.0.1:PORT".
func (s *Server) Addr() string {
	return net.JoinHostPort(s.Host, strconv.Itoa(s.Port))
}

// DSN returns a URL usable by pgx and psql:
// postgres://USER@127.0.0.1:PORT/DB?sslmode=disable.
func (s *Server) DSN() string {
	return fmt.Sprintf("postgres://%s@%s/%s?sslmode=disable", s.User, s.Addr(), s.Database)
}

// DataDir is the cluster's data directory.
func (s *Server) DataDir() string { return filepath.Join(s.Dir, "data") }

// SocketDir is the directory of the server's unix socket.
func (s *Server) SocketDir() string { return filepath.Join(s.Dir, "sock") }

// LogPath is the file receiving the server's log.
func (s *Server) LogPath() string { return filepath.Join(s.Dir, "postgres.log") }

// Start creates a cluster in a temporary directory and starts postgres on
// 127.0.0.1 with a random free port, a unix socket inside that directory,
// trust authentication for local and 127.0.0.1 connections,
// max_connections = 300 and fsync = off. It returns once the server accepts
// connections (at most 30 s). The server is stopped (immediate shutdown) and
// its directory removed when the test ends; if the test failed, the server
// log is attached to the test output.
//
// When the binaries are missing, or the tests run as root and there is no
// unprivileged "postgres" OS user to run the server as, Start skips the test,
// or fails it when TUNNEL_REQUIRE_POSTGRES=1. Any other problem fails it.
func Start(t testing.TB) *Server {
	t.Helper()
	return StartWith(t, Options{})
}

// StartWith is Start with options: TLS, a role that logs in with a SCRAM
// password (see Options).
func StartWith(t testing.TB, opts Options) *Server {
	t.Helper()
	if err := opts.check(); err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	bin, err := BinDir()
	if err != nil {
		unavailable(t, err.Error())
	}
	acct, err := serverAccount()
	if err != nil {
		unavailable(t, err.Error())
	}
	s := newServer(bin, acct, tempDir(t, acct))
	s.opts = opts
	if err := s.initdb(); err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	if err := s.applyOptions(); err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	t.Cleanup(func() {
		s.Stop()
		if t.Failed() {
			t.Logf("pgtest: server log %s:\n%s", s.LogPath(), s.logTail(4096))
		}
	})
	if err := s.startOnFreePort(); err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	if err := s.createScramRole(t.Context()); err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	return s
}

func newServer(bin string, acct account, dir string) *Server {
	return &Server{
		Host:     "127.0.0.1",
		User:     superuser,
		Database: "postgres",
		Dir:      dir,
		bin:      bin,
		acct:     acct,
	}
}

// startOnFreePort starts postgres on a free port, trying another one when
// the port was taken between picking and binding it.
func (s *Server) startOnFreePort() error {
	for attempt := 1; ; attempt++ {
		port, err := fixture.FreePort()
		if err != nil {
			return fmt.Errorf("pick a port: %v", err)
		}
		err = s.start(port)
		if err == nil {
			return nil
		}
		if !errors.Is(err, errPortInUse) || attempt == portAttempts {
			return fmt.Errorf("start postgres (attempt %d): %v\n%s", attempt, err, s.logTail(4096))
		}
	}
}

// Stop shuts the server down at once (SIGQUIT, as pg_ctl stop -m immediate
// does) and waits for it to exit, killing it after 10 s. It is idempotent
// and safe to call before the test ends, e.g. to test what clients see when
// the database goes away.
func (s *Server) Stop() {
	s.stopOnce.Do(func() {
		if s.cmd == nil {
			return
		}
		s.cmd.Process.Signal(syscall.SIGQUIT)
		select {
		case <-s.done:
		case <-time.After(stopTimeout):
			s.cmd.Process.Kill()
			<-s.done
		}
	})
}

func (s *Server) initdb() error { return s.initdbContext(context.Background()) }

func (s *Server) initdbContext(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, initdbTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(s.bin, "initdb"),
		"-D", s.DataDir(), "-U", s.User, "--auth=trust",
		"--encoding=UTF8", "--no-locale", "--no-sync")
	cmd.Dir = s.Dir
	cmd.Env = serverEnv(s.Dir)
	// On SIGTERM initdb removes what it created; send it on timeout and if
	// the test binary dies.
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = 10 * time.Second
	cmd.SysProcAttr = dieWithParent(syscall.SIGTERM)
	s.acct.apply(cmd)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("initdb %s: %v\n%s", s.DataDir(), err, out)
	}
	if err := os.Mkdir(s.SocketDir(), 0o700); err != nil {
		return err
	}
	if s.acct.switched {
		if err := os.Chown(s.SocketDir(), int(s.acct.uid), int(s.acct.gid)); err != nil {
			return err
		}
	}
	conf := "\n# pgtest\n" + strings.Join(settings, "\n") +
		fmt.Sprintf("\nunix_socket_directories = '%s'\n", s.SocketDir())
	f, err := os.OpenFile(filepath.Join(s.DataDir(), "postgresql.conf"), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	_, err = f.WriteString(conf)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// start runs postgres on port and waits until it is ready. On error the
// process has exited.
func (s *Server) start(port int) error {
	logf, err := os.OpenFile(s.LogPath(), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	defer logf.Close() // the child has its own copy
	fmt.Fprintf(logf, "--- pgtest: starting on port %d\n", port)
	logStart, err := logf.Seek(0, io.SeekEnd)
	if err != nil {
		return err
	}

	cmd := exec.Command(filepath.Join(s.bin, "postgres"), "-D", s.DataDir(), "-p", strconv.Itoa(port))
	cmd.Dir = s.Dir
	cmd.Env = serverEnv(s.Dir)
	cmd.Stdout, cmd.Stderr = logf, logf
	// If the test binary dies (panic, go test -timeout), take the server
	// down too instead of leaking it. The signal is tied to the OS thread
	// that forked, which the Go runtime does not retire unless a goroutine
	// exits while locked to it; nothing in our tests does that.
	cmd.SysProcAttr = dieWithParent(syscall.SIGQUIT)
	s.acct.apply(cmd)
	if err := cmd.Start(); err != nil {
		return err
	}
	done := make(chan struct{})
	go func() {
		cmd.Wait()
		close(done)
	}()

	err = waitReady(filepath.Join(s.DataDir(), "postmaster.pid"), done)
	if err == nil {
		s.cmd, s.done, s.Port = cmd, done, port
		return nil
	}
	cmd.Process.Kill()
	<-done
	if log := s.logFrom(logStart); strings.Contains(log, "could not bind") || strings.Contains(log, "already in use") {
		return fmt.Errorf("port %d: %w", port, errPortInUse)
	}
	return err
}

// waitReady polls the postmaster.pid file until the postmaster reports
// "ready" in it (PostgreSQL 10 and later; pg_ctl -w does the same), the
// process exits, or readyTimeout passes.
func waitReady(pidFile string, exited <-chan struct{}) error {
	deadline := time.Now().Add(readyTimeout)
	tick := time.NewTicker(pollInterval)
	defer tick.Stop()
	for time.Now().Before(deadline) {
		if b, err := os.ReadFile(pidFile); err == nil {
			lines := strings.Split(string(b), "\n")
			if len(lines) > 7 && strings.TrimSpace(lines[7]) == "ready" {
				return nil
			}
		}
		select {
		case <-exited:
			return errors.New("postgres exited before accepting connections")
		case <-tick.C:
		}
	}
	return fmt.Errorf("postgres not ready after %v", readyTimeout)
}

// serverEnv is our environment without PG* variables (a PGPORT or PGDATA
// meant for something else must not leak into the cluster) and with HOME in
// the test directory, which the server account can read.
func serverEnv(home string) []string {
	env := []string{"HOME=" + home}
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "PG") && !strings.HasPrefix(kv, "HOME=") {
			env = append(env, kv)
		}
	}
	return env
}

// logFrom returns the server's log from offset on.
func (s *Server) logFrom(offset int64) string { return fixture.LogFrom(s.LogPath(), offset) }

// logTail returns up to the last n bytes of the server's log.
func (s *Server) logTail(n int) string { return fixture.LogTail(s.LogPath(), n) }

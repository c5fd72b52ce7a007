// Package mariadbtest starts a real, throwaway MariaDB server for a test from
// the installed binaries, and finds the MariaDB client programs (mariadb,
// mariadb-slap) the end-to-end tests drive it with.
//
// When MariaDB is not installed, tests skip with a message saying what is
// missing; with TUNNEL_REQUIRE_MARIADB=1 (set by CI) they fail instead.
// It is not a fixture manager: each Start is a fresh data directory and
// server, stopped and deleted when the test ends. The first Start of a test
// binary runs mariadb-install-db (a second on an idle 2-core machine) and
// keeps the result in memory; each Start writes a copy of it and starts
// mariadbd, which takes a few tenths of a second.
//
// # PROXY protocol
//
// Options.ProxyProtocolNetworks sets the server's proxy_protocol_networks.
// What MariaDB 10.11 (Debian 12) then does, as the tests in proxy_test.go
// check against the real server:
//
//   - A connection from a listed network may start with a PROXY header, v1
//     (text) or v2 (binary); the server takes the client address from it.
//     USER(), information_schema.processlist and the account lookup all use
//     that address: with a header claiming 192.0.2.7, 'x'@'127.0.0.1' is
//     denied although the TCP peer is 127.0.0.1.
//   - The header is optional: a connection from a listed network without
//     one is accepted and keeps its TCP peer address.
//   - v2 LOCAL (with or without addresses) and v1 "PROXY UNKNOWN" are
//     accepted and keep the TCP peer address. v2 PROXY with family AF_UNSPEC
//     is refused with error 1105 "Failed to parse proxy header"; a proxy
//     with no address to pass on must send LOCAL.
//   - TCP over IPv6 in the header is accepted on an IPv4 listener. The host
//     is shown without brackets: "2001:db8::5:999".
//   - A v1 header may arrive in pieces; a v2 header must arrive whole.
//     Split after its first 4 bytes or after its 16-byte fixed part it still
//     works (the server seems to read those parts and then the addresses
//     with one read each); split inside the fixed part it is refused with
//     1105, and split inside the addresses it is misread, so that the
//     connection fails later with errors such as "Got packets out of
//     order" (seen by experiment, not tested). Send it with one Write.
//   - A header from a network that is not listed (from any network when the
//     variable is empty, the default) is refused with error 1130 "Proxy
//     header is not accepted from 127.0.0.1".
//   - Refusals come as an error packet right after the server's greeting,
//     before the client has sent anything but the header; go-sql-driver
//     then reports "busy buffer" or "bad connection" rather than the
//     server's error, while the mariadb client shows it.
//
// The processlist host of a TCP connection is "addr:port"; ClientAddr
// parses it, so a test can check that the address a tunnel passed on is the
// one it meant. The server runs with skip-name-resolve, so addresses are
// never turned into names (127.0.0.1 stays "127.0.0.1", not "localhost").
package mariadbtest

import (
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
	installTimeout = 2 * time.Minute  // mariadb-install-db; a loaded 2-core machine takes seconds
	readyTimeout   = 30 * time.Second // from exec of mariadbd to accepting connections
	stopTimeout    = 10 * time.Second // after SIGTERM, before SIGKILL
	pollInterval   = 10 * time.Millisecond
	portAttempts   = 5 // fresh ports tried when mariadbd cannot bind
)

// The account and database Start creates for the tests.
const (
	testUser     = "tunnel"
	testDatabase = "test"
)

// settings are given to mariadbd, and to mariadb-install-db, which passes
// them on to the bootstrap server, so that the InnoDB files it creates fit
// the server that opens them. Buffers are a few megabytes instead of the
// default 128 (about 55 MB resident per server), performance_schema is off,
// and flushing is relaxed: a throwaway server does not need crash safety.
// Native AIO (io_uring) is off because container seccomp profiles often
// refuse it.
var settings = []string{
	"--skip-name-resolve",
	"--performance-schema=OFF",
	"--innodb-buffer-pool-size=8M",
	"--innodb-log-file-size=8M",
	"--innodb-log-buffer-size=2M",
	"--innodb-use-native-aio=OFF",
	"--innodb-flush-log-at-trx-commit=0",
	"--innodb-doublewrite=OFF",
	"--aria-pagecache-buffer-size=1M",
	"--key-buffer-size=1M",
	"--table-open-cache=200", // the default asks for more open files than containers allow
	"--max-connections=300",
	"--character-set-server=utf8mb4",
	"--collation-server=utf8mb4_general_ci",
}

// errPortInUse means mariadbd exited because its port was taken after we
// picked it; Start retries with another port.
var errPortInUse = errors.New("port already in use")

// Options adjust the server Start creates. The zero value is a plain server.
type Options struct {
	// ProxyProtocolNetworks is the server's proxy_protocol_networks: a comma
	// separated list of addresses and CIDR networks (or "*") from which
	// connections may start with a PROXY protocol header. Empty, the
	// default, accepts the header from nowhere. See the package
	// documentation for what the server then does.
	ProxyProtocolNetworks string
}

// Server is a MariaDB server started for a test from the installed
// binaries. Clients reach it over TCP at Host:Port as User with Password in
// Database; User may do anything on the server.
type Server struct {
	Host     string // always 127.0.0.1
	Port     int
	User     string // "tunnel", from any host, with all privileges
	Password string // random for each test binary
	Database string // "test", created empty
	Dir      string // holds data/, mysqld.sock and error.log

	// Static after Start.
	opts Options
	cmd  *exec.Cmd
	done chan struct{} // closed when cmd.Wait returns

	stopOnce sync.Once
}

// Addr returns "127.0.0.1:PORT".
func (s *Server) Addr() string {
	return net.JoinHostPort(s.Host, strconv.Itoa(s.Port))
}

// DSN returns a go-sql-driver/mysql data source name for the server:
// USER:PASSWORD@tcp(127.0.0.1:PORT)/test.
func (s *Server) DSN() string { return s.DSNAt(s.Addr()) }

// DSNAt is DSN with another address, such as a tunnel route in front of the
// server.
func (s *Server) DSNAt(addr string) string {
	return fmt.Sprintf("%s:%s@tcp(%s)/%s", s.User, s.Password, addr, s.Database)
}

// DataDir is the server's data directory.
func (s *Server) DataDir() string { return filepath.Join(s.Dir, "data") }

// SocketPath is the server's unix socket.
func (s *Server) SocketPath() string { return filepath.Join(s.Dir, "mysqld.sock") }

// LogPath is the server's error log.
func (s *Server) LogPath() string { return filepath.Join(s.Dir, "error.log") }

// Start creates a data directory in a temporary directory (a copy of one
// made by mariadb-install-db, see template) and starts mariadbd on
// 127.0.0.1 with a random free port, a unix socket inside that directory
// and the small, unsafe settings above. The data directory holds the
// database "test" and the user 'tunnel'@'%' with a random password and all
// privileges (mariadb-slap creates and drops its own schema). Start returns
// once the server accepts connections (at most 30 s). When the test ends
// the server is stopped (SIGTERM, SIGKILL after 10 s) and its directory
// removed; if the test failed, the end of the error log is attached to the
// test output.
//
// When run as root, mariadbd runs as root too (--user=root): there is no OS
// account to set up, and secure_file_priv keeps its file access inside the
// temporary directory.
//
// When mariadbd or mariadb-install-db is missing, Start skips the test, or
// fails it when TUNNEL_REQUIRE_MARIADB=1. Any other problem fails it.
func Start(t testing.TB, opts Options) *Server {
	t.Helper()
	mariadbd := RequireTool(t, "mariadbd")
	installDB := RequireTool(t, "mariadb-install-db")
	s := &Server{
		Host:     "127.0.0.1",
		User:     testUser,
		Database: testDatabase,
		Dir:      tempDir(t),
		opts:     opts,
	}
	if err := s.install(installDB); err != nil {
		t.Fatalf("mariadbtest: %v", err)
	}
	t.Cleanup(func() {
		s.Stop()
		if t.Failed() {
			t.Logf("mariadbtest: server log %s:\n%s", s.LogPath(), s.logTail(4096))
		}
	})
	if err := s.startOnFreePort(mariadbd); err != nil {
		t.Fatalf("mariadbtest: %v", err)
	}
	return s
}

// startOnFreePort starts mariadbd on a free port, trying another one when
// the port was taken between picking and binding it.
func (s *Server) startOnFreePort(mariadbd string) error {
	for attempt := 1; ; attempt++ {
		port, err := fixture.FreePort()
		if err != nil {
			return fmt.Errorf("pick a port: %v", err)
		}
		err = s.start(mariadbd, port)
		if err == nil {
			return nil
		}
		if !errors.Is(err, errPortInUse) || attempt == portAttempts {
			return fmt.Errorf("start mariadbd (attempt %d): %v\n%s", attempt, err, s.logTail(4096))
		}
	}
}

// Stop shuts the server down (SIGTERM, a normal shutdown that takes well
// under a second) and waits for it to exit, killing it after 10 s. It is
// idempotent and safe to call before the test ends, e.g. to test what
// clients see when the database goes away.
func (s *Server) Stop() {
	s.stopOnce.Do(func() {
		if s.cmd == nil {
			return
		}
		s.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-s.done:
		case <-time.After(stopTimeout):
			s.cmd.Process.Kill()
			<-s.done
		}
	})
}

// install creates the data directory, with the test database and user, as
// a copy of the template, and takes the template's password.
func (s *Server) install(installDB string) error {
	tp, err := templateFor(installDB)
	if err != nil {
		return err
	}
	s.Password = tp.password
	return tp.writeTo(s.DataDir())
}

// start runs mariadbd on port and waits until it is ready. On error the
// process has exited.
func (s *Server) start(mariadbd string, port int) error {
	logf, err := os.OpenFile(s.LogPath(), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	defer logf.Close() // the child has its own copy
	fmt.Fprintf(logf, "--- mariadbtest: starting on port %d\n", port)
	logStart, err := logf.Seek(0, io.SeekEnd)
	if err != nil {
		return err
	}

	args := []string{
		"--no-defaults",
		"--datadir=" + s.DataDir(),
		"--socket=" + s.SocketPath(),
		"--pid-file=" + filepath.Join(s.Dir, "mysqld.pid"),
		"--log-error=" + s.LogPath(),
		"--secure-file-priv=" + s.Dir,
		"--bind-address=" + s.Host,
		"--port=" + strconv.Itoa(port),
		"--skip-ssl",
	}
	args = append(args, userArgs()...)
	args = append(args, settings...)
	if s.opts.ProxyProtocolNetworks != "" {
		args = append(args, "--proxy-protocol-networks="+s.opts.ProxyProtocolNetworks)
	}
	cmd := exec.Command(mariadbd, args...)
	cmd.Dir = s.Dir
	cmd.Env = environ()
	// Anything mariadbd prints before it opens its error log (a bad option)
	// goes to the same file.
	cmd.Stdout, cmd.Stderr = logf, logf
	// If the test binary dies (panic, go test -timeout), take the server
	// down too instead of leaking it. The signal is tied to the OS thread
	// that forked, which the Go runtime does not retire unless a goroutine
	// exits while locked to it; nothing in our tests does that.
	cmd.SysProcAttr = dieWithParent(syscall.SIGKILL)
	if err := cmd.Start(); err != nil {
		return err
	}
	done := make(chan struct{})
	go func() {
		cmd.Wait()
		close(done)
	}()

	err = s.waitReady(logStart, done)
	if err == nil {
		s.cmd, s.done, s.Port = cmd, done, port
		return nil
	}
	cmd.Process.Kill()
	<-done
	if strings.Contains(s.logFrom(logStart), "Address already in use") {
		return fmt.Errorf("port %d: %w", port, errPortInUse)
	}
	return err
}

// waitReady polls the error log until mariadbd reports "ready for
// connections" after logStart (it does so once it listens and is about to
// accept), the process exits, or readyTimeout passes.
func (s *Server) waitReady(logStart int64, exited <-chan struct{}) error {
	deadline := time.Now().Add(readyTimeout)
	tick := time.NewTicker(pollInterval)
	defer tick.Stop()
	for time.Now().Before(deadline) {
		if strings.Contains(s.logFrom(logStart), "ready for connections") {
			return nil
		}
		select {
		case <-exited:
			return errors.New("mariadbd exited before accepting connections")
		case <-tick.C:
		}
	}
	return fmt.Errorf("mariadbd not ready after %v", readyTimeout)
}

// userArgs makes mariadbd, which refuses to run as root unless told to,
// run as root when we are root.
func userArgs() []string {
	if os.Geteuid() == 0 {
		return []string{"--user=root"}
	}
	return nil
}

// maxSocketDir keeps "<dir>/mysqld.sock" well inside the 107 bytes a unix
// socket path may have.
const maxSocketDir = 80

// tempDir returns an empty directory removed when the test ends: t.TempDir,
// unless its path is too long for the unix socket inside it; then a
// directory directly under os.TempDir.
func tempDir(t testing.TB) string {
	t.Helper()
	if dir := t.TempDir(); len(dir) <= maxSocketDir {
		return dir
	}
	dir, err := os.MkdirTemp("", "mariadbtest-")
	if err != nil {
		t.Fatalf("mariadbtest: %v", err)
	}
	t.Cleanup(func() {
		if err := os.RemoveAll(dir); err != nil {
			t.Errorf("mariadbtest: remove %s: %v", dir, err)
		}
	})
	return dir
}

// logFrom returns the server's log from offset on.
func (s *Server) logFrom(offset int64) string { return fixture.LogFrom(s.LogPath(), offset) }

// logTail returns up to the last n bytes of the server's log.
func (s *Server) logTail(n int) string { return fixture.LogTail(s.LogPath(), n) }

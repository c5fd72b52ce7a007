package e2e

import (
	"bytes"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/tunnelrelay/tunnel/internal/testutil/leakcheck"
)

// TestBulkBothWays moves 256 MiB each way through one session at the same
// time and compares checksums at both ends.
func TestBulkBothWays(t *testing.T) {
	size := int64(256 << 20)
	if testing.Short() {
		size = 16 << 20
	}
	e := newEnv(t, testServerOptions())
	e.agent("a1", "echo="+echoServer(t))
	e.online("a1")
	addr := e.route("bulk", "a1", "echo")

	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	start := time.Now()
	if err := checksumExchange(conn, size, 7); err != nil {
		t.Fatal(err)
	}
	t.Logf("%d MiB each way in %v", size>>20, time.Since(start).Round(time.Millisecond))
	line := e.log.waitFor(t, 5*time.Second, "session ended", "module=server", "route=bulk")
	if !bytes.Contains([]byte(line), []byte("bytes_up=268435456")) && !testing.Short() {
		t.Errorf("session end not logged with its byte counts: %s", line)
	}
}

// TestConcurrentSessions runs 200 sessions at once, each with its own
// checksum, through one agent.
func TestConcurrentSessions(t *testing.T) {
	e := newEnv(t, testServerOptions())
	e.agent("a1", "echo="+echoServer(t))
	e.online("a1")
	addr := e.route("many", "a1", "echo")

	const sessions = 200
	var wg sync.WaitGroup
	errs := make(chan error, sessions)
	for i := range sessions {
		wg.Add(1)
		go func() {
			defer wg.Done()
			conn, err := net.Dial("tcp", addr)
			if err != nil {
				errs <- err
				return
			}
			defer conn.Close()
			if err := checksumExchange(conn, int64(64<<10+i*997), byte(i)); err != nil {
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// TestHalfCloseThroughTunnel: the client sends a request and closes its
// write side; the target reads to EOF and only then answers; the client
// still receives the whole answer.
func TestHalfCloseThroughTunnel(t *testing.T) {
	response := bytes.Repeat([]byte("0123456789abcdef"), 1<<16) // 1 MiB
	target := serveTCP(t, func(c net.Conn) {
		req, err := io.ReadAll(c)
		if err != nil || string(req) != "SELECT everything" {
			return
		}
		c.Write(response)
		c.(*net.TCPConn).CloseWrite()
		io.Copy(io.Discard, c)
	})
	e := newEnv(t, testServerOptions())
	e.agent("a1", "db="+target)
	e.online("a1")
	addr := e.route("hc", "a1", "db")

	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.Write([]byte("SELECT everything"))
	conn.(*net.TCPConn).CloseWrite()
	conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	got, err := io.ReadAll(conn)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, response) {
		t.Fatalf("got %d bytes, want the %d-byte response", len(got), len(response))
	}
}

// TestGoroutinesReturnToBaseline: after sessions end and the agent and
// server stop, no goroutine is left behind.
func TestGoroutinesReturnToBaseline(t *testing.T) {
	echo := echoServer(t)
	leakcheck.Check(t) // runs after the cleanups registered below
	e := newEnv(t, testServerOptions())
	e.agent("a1", "echo="+echo)
	e.online("a1")
	addr := e.route("g", "a1", "echo")
	var wg sync.WaitGroup
	for i := range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			conn, err := net.Dial("tcp", addr)
			if err != nil {
				t.Error(err)
				return
			}
			defer conn.Close()
			if err := checksumExchange(conn, 100_000, byte(i)); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
}

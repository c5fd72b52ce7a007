package e2e

import (
	"bytes"
	"crypto/sha256"
	"fmt"
	"io"
	"net"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tunnelrelay/tunnel/internal/harness"
	"github.com/tunnelrelay/tunnel/internal/testutil/leakcheck"
	"github.com/tunnelrelay/tunnel/internal/testutil/tcptest"
)

// TestBulkBothWays moves 256 MiB (128 MiB with the race detector) each way
// through one session at the same time and compares checksums at both
// ends: what the client sent with what the target received, and what the
// target sent with what the client received.
func TestBulkBothWays(t *testing.T) {
	forEachTransport(t, func(t *testing.T, tr transport) {
		size := int64(256 << 20)
		switch {
		case testing.Short():
			size = 16 << 20
		case raceEnabled:
			// Still eight stream windows each way, in a third of the
			// time 256 MiB takes with the race detector, per transport.
			size = 128 << 20
		}
		type sums struct{ sent, received []byte }
		atTarget := make(chan sums, 1)
		target := tcptest.Serve(t, func(c *net.TCPConn) {
			var s sums
			done := make(chan struct{})
			go func() {
				defer close(done)
				h := sha256.New()
				io.Copy(h, c)
				s.received = h.Sum(nil)
			}()
			h := sha256.New()
			io.Copy(io.MultiWriter(c, h), &patternReader{n: size, seed: 2})
			c.CloseWrite()
			s.sent = h.Sum(nil)
			<-done
			atTarget <- s
		})
		e := newEnv(t, tr, testServerOptions())
		e.agent("a1", "bulk="+target)
		e.online("a1")
		conn, err := net.Dial("tcp", e.route("bulk", "a1", "bulk"))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()

		start := time.Now()
		var client sums
		done := make(chan struct{})
		go func() {
			defer close(done)
			h := sha256.New()
			n, _ := io.Copy(h, conn)
			if n != size {
				t.Errorf("client received %d bytes, want %d", n, size)
			}
			client.received = h.Sum(nil)
		}()
		h := sha256.New()
		if _, err := io.Copy(io.MultiWriter(conn, h), &patternReader{n: size, seed: 1}); err != nil {
			t.Fatal(err)
		}
		conn.(*net.TCPConn).CloseWrite()
		client.sent = h.Sum(nil)
		<-done
		tgt := <-atTarget
		if !bytes.Equal(client.sent, tgt.received) {
			t.Error("what the target received differs from what the client sent")
		}
		if !bytes.Equal(tgt.sent, client.received) {
			t.Error("what the client received differs from what the target sent")
		}
		t.Logf("%d MiB each way in %v", size>>20, time.Since(start).Round(time.Millisecond))
		line := e.log.waitFor(t, 5*time.Second, "session ended", "module=server", "route=bulk")
		want := fmt.Sprintf("bytes_up=%d bytes_down=%d", size, size)
		if !strings.Contains(line, want) {
			t.Errorf("session end not logged with its byte counts (%s): %s", want, line)
		}
	})
}

// TestConcurrentSessions runs 200 sessions at once, each with its own
// checksum, through one agent.
func TestConcurrentSessions(t *testing.T) {
	forEachTransport(t, func(t *testing.T, tr transport) {
		// The sessions all arrive at once. With the race detector on two
		// cores the clients' goroutines, generating and hashing their data,
		// can keep the engines' goroutines waiting for seconds: for their
		// opens, stream headers, dials, even heartbeats; and QUIC moves 200
		// streams several times slower than without it, so an echo can
		// trail its request by more than the tests' short half-close
		// timeout. This test is about the data, so it waits as long as the
		// defaults do.
		opt := testServerOptions()
		opt.OpenTimeout = 15 * time.Second
		opt.HeartbeatTimeout = 15 * time.Second
		opt.HalfCloseTimeout = 30 * time.Second
		aopt := testAgentOptions()
		aopt.DialTimeout = 10 * time.Second
		aopt.HandshakeTimeout = 10 * time.Second
		aopt.HalfCloseTimeout = 30 * time.Second
		e := newEnv(t, tr, opt)
		e.agentWith(harness.AgentConfig{Name: "a1", Options: aopt}, "echo="+tcptest.Echo(t))
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
	})
}

// TestHalfCloseThroughTunnel: the client sends a request and closes its
// write side; the target reads to EOF and only then answers; the client
// still receives the whole answer.
func TestHalfCloseThroughTunnel(t *testing.T) {
	forEachTransport(t, func(t *testing.T, tr transport) {
		response := bytes.Repeat([]byte("0123456789abcdef"), 1<<16) // 1 MiB
		target := tcptest.Serve(t, func(c *net.TCPConn) {
			req, err := io.ReadAll(c)
			if err != nil || string(req) != "SELECT everything" {
				return
			}
			c.Write(response)
			c.CloseWrite()
			io.Copy(io.Discard, c)
		})
		e := newEnv(t, tr, testServerOptions())
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
	})
}

// TestGoroutinesReturnToBaseline: after sessions end and the agent and
// server stop, no goroutine is left behind.
func TestGoroutinesReturnToBaseline(t *testing.T) {
	forEachTransport(t, func(t *testing.T, tr transport) {
		echo := tcptest.Echo(t)
		leakcheck.Check(t) // after the engines stop too: runs after the cleanups below
		e := newEnv(t, tr, testServerOptions())
		e.agent("a1", "echo="+echo)
		e.online("a1")
		addr := e.route("g", "a1", "echo")
		// Warm up, so that what exists while idle exists before the baseline.
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		if err := checksumExchange(c, 1000, 1); err != nil {
			t.Fatal(err)
		}
		c.Close()
		time.Sleep(200 * time.Millisecond)
		base := runtime.NumGoroutine()

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
		// With the engines still running, the sessions' goroutines are gone
		// once the sessions end, on both sides.
		if n, ok := leakcheck.WaitFor(base, 5*time.Second); !ok {
			buf := make([]byte, 1<<20)
			t.Fatalf("%d goroutines after the sessions ended, %d before:\n%s", n, base, buf[:runtime.Stack(buf, true)])
		}
	})
}

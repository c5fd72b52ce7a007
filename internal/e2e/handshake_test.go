package e2e

import (
	"context"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/tunnelrelay/tunnel/internal/testutil/tcptest"

	"github.com/tunnelrelay/tunnel/internal/admin"
	"github.com/tunnelrelay/tunnel/internal/proto"
	"github.com/tunnelrelay/tunnel/pkg/auth"
	"github.com/tunnelrelay/tunnel/pkg/mux"
)

// rawAgent connects over the env's transport with a registered agent's
// credential but speaks the tunnel protocol by hand, to misbehave after the
// TLS handshake (over TCP, or inside QUIC's).
func rawAgent(t *testing.T, e *env, name string) mux.Session {
	t.Helper()
	key, err := auth.NewAgentKey()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.srv.AddAgent(e.ctx, admin.AddAgentRequest{Name: name, Fingerprint: key.Fingerprint()}); err != nil {
		t.Fatal(err)
	}
	tlsConf, err := auth.ClientConfig(name, key, e.srv.CAPEM, "127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	sess, err := e.tr.dial(e.ctx, e.srv.Addr, tlsConf, &mux.Config{Logger: e.lg})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sess.Close() })
	return sess
}

func expectSessionClosed(t *testing.T, sess mux.Session, within time.Duration) {
	t.Helper()
	start := time.Now()
	select {
	case <-sess.Done():
		t.Logf("closed after %v", time.Since(start).Round(time.Millisecond))
	case <-time.After(within):
		t.Fatalf("the server kept the connection open for %v", within)
	}
}

// TestStallsAfterTLS: a peer that completes the TLS handshake (of TLS over
// TCP, or of QUIC) and then opens no control stream, stops in the middle of
// its hello, or opens streams nobody asked for, is closed within the
// handshake timeout.
func TestStallsAfterTLS(t *testing.T) {
	forEachTransport(t, func(t *testing.T, tr transport) {
		opt := testServerOptions()
		e := newEnv(t, tr, opt)
		bound := opt.HandshakeTimeout + time.Second

		t.Run("no control stream", func(t *testing.T) {
			expectSessionClosed(t, rawAgent(t, e, "silent"), bound)
			e.log.waitFor(t, time.Second, "agent handshake failed", "agent=silent", "no control stream")
		})
		t.Run("hello stops halfway", func(t *testing.T) {
			sess := rawAgent(t, e, "halfway")
			ctl, err := sess.OpenStream(e.ctx)
			if err != nil {
				t.Fatal(err)
			}
			ctl.Write([]byte{byte(proto.FrameHello), 0, 200, '{'}) // 200 bytes announced, 1 sent
			expectSessionClosed(t, sess, bound)
		})
		t.Run("extra streams before the hello", func(t *testing.T) {
			sess := rawAgent(t, e, "greedy")
			for range 5 {
				st, err := sess.OpenStream(e.ctx)
				if err != nil {
					break
				}
				st.Write(make([]byte, 64<<10))
			}
			expectSessionClosed(t, sess, bound)
			e.log.waitFor(t, time.Second, "protocol violation", "agent=greedy")
		})
	})
}

// TestDrain: a stopping server stops accepting, lets sessions in flight go
// on until they end or the drain timeout passes.
func TestDrain(t *testing.T) {
	forEachTransport(t, func(t *testing.T, tr transport) {
		e := newEnv(t, tr, testServerOptions())
		e.agent("a1", "echo="+tcptest.Echo(t))
		e.online("a1")
		addr := e.route("r", "a1", "echo")

		inFlight, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer inFlight.Close()
		inFlight.Write([]byte("before"))
		inFlight.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := io.ReadFull(inFlight, make([]byte, 6)); err != nil {
			t.Fatal(err)
		}

		closed := make(chan error, 1)
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			closed <- e.srv.Server.Close(ctx)
		}()
		e.log.waitFor(t, 5*time.Second, "draining sessions", "sessions=1")

		// No new sessions...
		if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
			c.Close()
			t.Fatal("a new client was accepted while draining")
		}
		// ...while the one in flight works on.
		if err := checksumExchange(inFlight, 200_000, 5); err != nil {
			t.Fatalf("the session in flight broke during the drain: %v", err)
		}
		select {
		case <-closed:
		case <-time.After(5 * time.Second):
			t.Fatal("Close did not return once the last session ended")
		}
		if strings.Contains(e.log.String(), "drain timeout") {
			t.Error("the drain timed out though the session ended")
		}
	})
}

// TestDrainTimeout: a session that outlives the drain is closed.
func TestDrainTimeout(t *testing.T) {
	forEachTransport(t, func(t *testing.T, tr transport) {
		e := newEnv(t, tr, testServerOptions())
		e.agent("a1", "echo="+tcptest.Echo(t))
		e.online("a1")
		c, err := net.Dial("tcp", e.route("r", "a1", "echo"))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.Write([]byte("x"))
		c.Read(make([]byte, 1))
		start := time.Now()
		ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
		defer cancel()
		e.srv.Server.Close(ctx)
		if el := time.Since(start); el < 400*time.Millisecond || el > 5*time.Second {
			t.Errorf("Close returned after %v with a 500ms drain", el)
		}
		e.log.waitFor(t, time.Second, "drain timeout: closing sessions", "sessions=1")
		expectClosed(t, c, time.Second)
	})
}

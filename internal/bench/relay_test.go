package bench

import (
	"bytes"
	"context"
	"io"
	"net"
	"testing"
	"time"

	"github.com/tunnelrelay/tunnel/internal/testutil/tcptest"

	"github.com/tunnelrelay/tunnel/internal/testutil/leakcheck"
)

func startRelay(t *testing.T, target string) *Relay {
	t.Helper()
	r, err := StartRelay(t.Context(), target)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

func dialTCP(t *testing.T, addr string) *net.TCPConn {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(20 * time.Second))
	return c.(*net.TCPConn)
}

// TestRelayBothWays sends more than a TLS record and a splice buffer each
// way at the same time and checks what arrives.
func TestRelayBothWays(t *testing.T) {
	leakcheck.Check(t)
	const size = 1<<20 + 123
	up := pattern(size, 1)
	down := pattern(size, 2)
	gotUp := make(chan []byte, 1)
	target := tcptest.Serve(t, func(c *net.TCPConn) {
		done := make(chan struct{})
		go func() {
			defer close(done)
			c.Write(down)
			c.CloseWrite()
		}()
		b, _ := io.ReadAll(c)
		<-done
		gotUp <- b
	})
	r := startRelay(t, target)

	c := dialTCP(t, r.Addr())
	werr := make(chan error, 1)
	go func() {
		_, err := c.Write(up)
		if err == nil {
			err = c.CloseWrite()
		}
		werr <- err
	}()
	got, err := io.ReadAll(c)
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	if err := <-werr; err != nil {
		t.Fatalf("write: %v", err)
	}
	if !bytes.Equal(got, down) {
		t.Errorf("client got %d bytes, want the target's %d", len(got), len(down))
	}
	if b := <-gotUp; !bytes.Equal(b, up) {
		t.Errorf("target got %d bytes, want the client's %d", len(b), len(up))
	}
}

// TestRelayHalfClose checks that the client's half-close reaches the target
// as EOF while the target's reply, sent after it, still reaches the client.
func TestRelayHalfClose(t *testing.T) {
	leakcheck.Check(t)
	target := tcptest.Serve(t, func(c *net.TCPConn) {
		req, err := io.ReadAll(c) // returns at the client's half-close
		if err != nil {
			return
		}
		time.Sleep(50 * time.Millisecond) // the reply comes well after the EOF
		c.Write(append([]byte("got "), req...))
	})
	r := startRelay(t, target)

	c := dialTCP(t, r.Addr())
	if _, err := c.Write([]byte("request")); err != nil {
		t.Fatal(err)
	}
	if err := c.CloseWrite(); err != nil {
		t.Fatal(err)
	}
	reply, err := io.ReadAll(c)
	if err != nil {
		t.Fatalf("read the reply: %v", err)
	}
	if string(reply) != "got request" {
		t.Fatalf("reply %q, want %q", reply, "got request")
	}
}

// TestRelaySessions checks that sessions are independent: each has its own
// TLS connection, and they run at the same time.
func TestRelaySessions(t *testing.T) {
	leakcheck.Check(t)
	target := tcptest.Serve(t, func(c *net.TCPConn) {
		io.Copy(c, c)
		c.CloseWrite()
	})
	r := startRelay(t, target)

	var conns []*net.TCPConn
	for i := range 4 {
		c := dialTCP(t, r.Addr())
		if _, err := c.Write([]byte{byte('a' + i)}); err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
	}
	for i, c := range conns {
		var b [1]byte
		if _, err := io.ReadFull(c, b[:]); err != nil || b[0] != byte('a'+i) {
			t.Fatalf("session %d echoed %q, %v", i, b[:], err)
		}
	}
}

// TestRelayClose checks that Close ends sessions in progress and returns.
func TestRelayClose(t *testing.T) {
	leakcheck.Check(t)
	target := tcptest.Serve(t, func(c *net.TCPConn) { io.Copy(io.Discard, c) })
	r, err := StartRelay(context.Background(), target)
	if err != nil {
		t.Fatal(err)
	}
	c := dialTCP(t, r.Addr())
	if _, err := c.Write([]byte("x")); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { r.Close(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not return")
	}
	if _, err := c.Read(make([]byte, 1)); err == nil {
		t.Fatal("session still open after Close")
	}
	if _, err := net.DialTimeout("tcp", r.Addr(), time.Second); err == nil {
		t.Fatal("relay still accepting after Close")
	}
}

func pattern(n int, seed byte) []byte {
	b := make([]byte, n)
	x := uint32(seed)*2654435761 + 1
	for i := range b {
		x ^= x << 13
		x ^= x >> 17
		x ^= x << 5
		b[i] = byte(x)
	}
	return b
}

package faultproxy

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/tunnelrelay/tunnel/internal/testutil/blackhole"
	"github.com/tunnelrelay/tunnel/internal/testutil/leakcheck"
)

// ioTimeout bounds every read and write a test expects to succeed.
const ioTimeout = 10 * time.Second

func TestForward(t *testing.T) {
	leakcheck.Check(t)
	p := New(t, startServer(t, echo))
	c := dial(t, p.Addr())
	roundTrip(t, c, "hello")
	if n := p.Conns(); n != 1 {
		t.Errorf("Conns = %d, want 1", n)
	}
	c.Close()
	waitConns(t, p, 0)
}

func TestHalfClose(t *testing.T) {
	leakcheck.Check(t)
	// The target answers only after it has read to EOF, so the answer
	// arrives only if the client's FIN is forwarded while the other
	// direction stays open, and ReadAll returns only if the target's FIN is
	// forwarded too.
	p := New(t, startServer(t, digest))
	c := dial(t, p.Addr())
	data := randomBytes(t, 1<<20)
	if _, err := c.Write(data); err != nil {
		t.Fatal(err)
	}
	if err := c.(*net.TCPConn).CloseWrite(); err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(c)
	if err != nil {
		t.Fatalf("read answer after half-close: %v", err)
	}
	if want := sha256.Sum256(data); !bytes.Equal(got, want[:]) {
		t.Fatalf("target saw different bytes: digest %x, want %x", got, want)
	}
}

func TestHalfCloseFromTarget(t *testing.T) {
	leakcheck.Check(t)
	// The target says hello and half-closes; the client must see EOF and
	// still be able to send, and the target must receive all of it.
	received := make(chan [sha256.Size]byte, 1)
	p := New(t, startServer(t, func(c *net.TCPConn) {
		io.WriteString(c, "hello")
		c.CloseWrite()
		h := sha256.New()
		io.Copy(h, c)
		received <- [sha256.Size]byte(h.Sum(nil))
	}))
	c := dial(t, p.Addr())
	c.SetDeadline(time.Now().Add(ioTimeout))
	if got, err := io.ReadAll(c); err != nil || string(got) != "hello" {
		t.Fatalf("read until the target's FIN: %q, %v", got, err)
	}
	data := randomBytes(t, 1<<20)
	if _, err := c.Write(data); err != nil {
		t.Fatalf("write after the target's FIN: %v", err)
	}
	c.Close()
	select {
	case got := <-received:
		if got != sha256.Sum256(data) {
			t.Fatal("target received different bytes")
		}
	case <-time.After(ioTimeout):
		t.Fatal("target did not see EOF")
	}
}

func TestStallResume(t *testing.T) {
	leakcheck.Check(t)
	p := New(t, startServer(t, echo))
	c := dial(t, p.Addr())
	roundTrip(t, c, "before")

	p.Stall()
	p.Stall() // idempotent
	// More than the kernel buffers on both sides of the client's
	// connection hold, so the writer must block.
	data := randomBytes(t, 16<<20)
	writeErr := make(chan error, 1)
	go func() {
		_, err := c.Write(data)
		if err == nil {
			err = c.(*net.TCPConn).CloseWrite()
		}
		writeErr <- err
	}()

	c.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
	if n, err := c.Read(make([]byte, 1)); !isTimeout(err) {
		t.Fatalf("read while stalled: n=%d err=%v, want a timeout", n, err)
	}
	select {
	case err := <-writeErr:
		t.Fatalf("16 MiB written through a stalled proxy (err %v); the kernel buffers should have filled", err)
	default:
	}
	if n := p.Conns(); n != 1 {
		t.Fatalf("Conns while stalled = %d, want 1", n)
	}

	p.Resume()
	p.Resume() // idempotent
	c.SetReadDeadline(time.Now().Add(ioTimeout))
	got, err := io.ReadAll(c)
	if err != nil {
		t.Fatalf("read after Resume: %v", err)
	}
	if err := <-writeErr; err != nil {
		t.Fatalf("write after Resume: %v", err)
	}
	if sha256.Sum256(got) != sha256.Sum256(data) {
		t.Fatalf("echo after Resume differs: %d bytes, want %d", len(got), len(data))
	}
}

func TestDropAll(t *testing.T) {
	leakcheck.Check(t)
	p := New(t, startServer(t, echo))
	var conns []net.Conn
	for range 3 {
		c := dial(t, p.Addr())
		roundTrip(t, c, "x")
		conns = append(conns, c)
	}
	p.Stall() // dropping must not wait for forwarding to resume
	p.DropAll()
	if n := p.Conns(); n != 0 {
		t.Errorf("Conns after DropAll = %d, want 0", n)
	}
	for i, c := range conns {
		c.SetReadDeadline(time.Now().Add(ioTimeout))
		if n, err := c.Read(make([]byte, 1)); err == nil || isTimeout(err) {
			t.Errorf("conn %d after DropAll: n=%d err=%v, want it closed", i, n, err)
		}
	}
	p.Resume()
	roundTrip(t, dial(t, p.Addr()), "after")
}

func TestLatency(t *testing.T) {
	leakcheck.Check(t)
	const oneWay = 50 * time.Millisecond
	p := New(t, startServer(t, echo))
	p.SetLatency(oneWay)
	c := dial(t, p.Addr())

	start := time.Now()
	roundTrip(t, c, "ping")
	if rtt := time.Since(start); rtt < 2*oneWay {
		t.Errorf("round trip took %v, want at least %v", rtt, 2*oneWay)
	}

	data := randomBytes(t, 8<<20)
	start = time.Now()
	go func() {
		c.Write(data)
		c.(*net.TCPConn).CloseWrite()
	}()
	c.SetReadDeadline(time.Now().Add(ioTimeout))
	got, err := io.ReadAll(c)
	if err != nil {
		t.Fatalf("read 8 MiB echo: %v", err)
	}
	if sha256.Sum256(got) != sha256.Sum256(data) {
		t.Fatalf("8 MiB echo differs: %d bytes", len(got))
	}
	took := time.Since(start)
	if took < 2*oneWay {
		t.Errorf("8 MiB echo took %v, want at least %v", took, 2*oneWay)
	}
	t.Logf("8 MiB echo with %v one-way latency: %v", oneWay, took)

	p.SetLatency(0)
	c2 := dial(t, p.Addr())
	start = time.Now()
	roundTrip(t, c2, "fast")
	t.Logf("round trip after SetLatency(0): %v", time.Since(start))
}

func TestRefuse(t *testing.T) {
	leakcheck.Check(t)
	p := New(t, startServer(t, echo))
	p.SetRefuse(true)
	c := dial(t, p.Addr())
	c.SetReadDeadline(time.Now().Add(ioTimeout))
	if n, err := c.Read(make([]byte, 1)); err == nil || isTimeout(err) {
		t.Fatalf("read from refused connection: n=%d err=%v, want it closed", n, err)
	}
	if n := p.Conns(); n != 0 {
		t.Errorf("Conns = %d, want 0", n)
	}
	p.SetRefuse(false)
	roundTrip(t, dial(t, p.Addr()), "again")
}

func TestTargetRefuses(t *testing.T) {
	leakcheck.Check(t)
	p := New(t, blackhole.RefusedAddr(t))
	// The reset may arrive before the client's connect returns.
	c, err := net.DialTimeout("tcp", p.Addr(), ioTimeout)
	if err == nil {
		defer c.Close()
		c.SetReadDeadline(time.Now().Add(ioTimeout))
		_, err = c.Read(make([]byte, 1))
	}
	if err == nil || isTimeout(err) {
		t.Fatalf("connection with the target down: %v, want it closed", err)
	}
	waitConns(t, p, 0)
}

func TestCloseWhileStalled(t *testing.T) {
	leakcheck.Check(t)
	p, err := Listen("127.0.0.1:0", startServer(t, echo))
	if err != nil {
		t.Fatal(err)
	}
	c := dial(t, p.Addr())
	roundTrip(t, c, "x")
	p.Stall()
	c.Write([]byte("held"))
	p.SetLatency(time.Hour)
	if err := p.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := p.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	c.SetReadDeadline(time.Now().Add(ioTimeout))
	if _, err := c.Read(make([]byte, 1)); err == nil || isTimeout(err) {
		t.Fatalf("read after Close: %v, want it closed", err)
	}
	if _, err := net.DialTimeout("tcp", p.Addr(), time.Second); err == nil {
		t.Fatal("dial after Close succeeded")
	}
}

// startServer serves handler on 127.0.0.1:0 until the test ends, then closes
// every connection and waits for the handlers.
func startServer(t *testing.T, handler func(*net.TCPConn)) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		conns []net.Conn
	)
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				handler(c.(*net.TCPConn))
			}()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	return ln.Addr().String()
}

// echo sends back what it reads and half-closes at EOF.
func echo(c *net.TCPConn) {
	io.Copy(c, c)
	c.CloseWrite()
}

// digest reads to EOF, then answers with the SHA-256 of what it read.
func digest(c *net.TCPConn) {
	h := sha256.New()
	if _, err := io.Copy(h, c); err == nil {
		c.Write(h.Sum(nil))
	}
}

func dial(t *testing.T, addr string) net.Conn {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, ioTimeout)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func roundTrip(t *testing.T, c net.Conn, msg string) {
	t.Helper()
	c.SetDeadline(time.Now().Add(ioTimeout))
	defer c.SetDeadline(time.Time{})
	if _, err := io.WriteString(c, msg); err != nil {
		t.Fatalf("write %q: %v", msg, err)
	}
	got := make([]byte, len(msg))
	if _, err := io.ReadFull(c, got); err != nil || string(got) != msg {
		t.Fatalf("echo of %q: %q, %v", msg, got, err)
	}
}

func waitConns(t *testing.T, p *Proxy, want int) {
	t.Helper()
	deadline := time.Now().Add(ioTimeout)
	for p.Conns() != want {
		if time.Now().After(deadline) {
			t.Fatalf("Conns = %d after %v, want %d", p.Conns(), ioTimeout, want)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func randomBytes(t *testing.T, n int) []byte {
	t.Helper()
	b := make([]byte, n)
	rand.Read(b)
	return b
}

func isTimeout(err error) bool {
	return errors.Is(err, os.ErrDeadlineExceeded)
}

func TestCloseWhileDialing(t *testing.T) {
	leakcheck.Check(t)
	p, err := Listen("127.0.0.1:0", blackhole.Listen(t))
	if err != nil {
		t.Fatal(err)
	}
	dial(t, p.Addr())
	waitConns(t, p, 1) // accepted; the dial to the target hangs
	start := time.Now()
	if err := p.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if took := time.Since(start); took > time.Second {
		t.Errorf("Close took %v with a dial to the target pending", took)
	}
	if n := p.Conns(); n != 0 {
		t.Errorf("Conns after Close = %d", n)
	}
}

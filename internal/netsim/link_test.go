package netsim

import (
	"bytes"
	"errors"
	"io"
	"net"
	"os"
	"testing"
	"time"

	"github.com/tunnelrelay/tunnel/internal/testutil/leakcheck"
	"github.com/tunnelrelay/tunnel/internal/testutil/tcptest"
)

func listen(t *testing.T, target string, cfg Config) *Link {
	t.Helper()
	l, err := Listen("127.0.0.1:0", target, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := l.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return l
}

func dial(t *testing.T, addr string) *net.TCPConn {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(30 * time.Second))
	return c.(*net.TCPConn)
}

// TestDelay checks that a round trip through the link takes at least two
// one-way delays (timers never fire early, so this cannot flake), and not
// wildly more.
func TestDelay(t *testing.T) {
	leakcheck.Check(t)
	const delay = 50 * time.Millisecond
	l := listen(t, tcptest.Echo(t), Config{Delay: delay})
	c := dial(t, l.Addr())
	for i := range 3 {
		start := time.Now()
		if _, err := c.Write([]byte("ping")); err != nil {
			t.Fatal(err)
		}
		var b [4]byte
		if _, err := io.ReadFull(c, b[:]); err != nil {
			t.Fatal(err)
		}
		rtt := time.Since(start)
		if rtt < 2*delay {
			t.Errorf("round trip %d took %v, less than 2 × %v", i, rtt, delay)
		}
		if rtt > 2*delay+5*time.Second {
			t.Errorf("round trip %d took %v, far more than 2 × %v", i, rtt, delay)
		}
	}
}

// TestCapacityBoundsThroughput sends many times the capacity one way: at
// most Capacity bytes can be inside the line and each stays Delay, so the
// transfer cannot finish in less than (size/Capacity − 1) × Delay.
func TestCapacityBoundsThroughput(t *testing.T) {
	leakcheck.Check(t)
	const (
		delay    = 50 * time.Millisecond
		capacity = 128 << 10
		size     = 16 * capacity
	)
	got := make(chan int64, 1)
	target := tcptest.Serve(t, func(c *net.TCPConn) {
		n, _ := io.Copy(io.Discard, c)
		got <- n
	})
	l := listen(t, target, Config{Delay: delay, Capacity: capacity})
	c := dial(t, l.Addr())
	start := time.Now()
	if _, err := c.Write(make([]byte, size)); err != nil {
		t.Fatal(err)
	}
	c.CloseWrite()
	var n int64
	select {
	case n = <-got:
	case <-time.After(30 * time.Second):
		t.Fatal("the target did not receive everything within 30 s")
	}
	elapsed := time.Since(start)
	if n != size {
		t.Fatalf("target received %d bytes, want %d", n, size)
	}
	if min := (size/capacity - 1) * delay; elapsed < min {
		t.Errorf("%d bytes through a %d-byte, %v line took %v, less than the model allows (%v)", size, capacity, delay, elapsed, min)
	}
	if p := l.PeakInFlight(); p <= 0 || p > capacity {
		t.Errorf("peak in flight %d, want within (0, %d]", p, capacity)
	}
}

// TestBackpressure checks that a receiver that never reads stops the
// sender: the link holds at most its capacity, and the kernel buffers on
// either side of it are finite. Without the bound the proxy would read
// everything offered.
func TestBackpressure(t *testing.T) {
	leakcheck.Check(t)
	const capacity = 256 << 10
	release := make(chan struct{})
	target := tcptest.Serve(t, func(c *net.TCPConn) { <-release })
	l := listen(t, target, Config{Delay: time.Millisecond, Capacity: capacity})
	c := dial(t, l.Addr())
	defer close(release) // before the cleanups, which wait for the handler

	// Kernel socket buffers on loopback come to a few tens of MiB at most;
	// a sender that gets 256 MiB out has met no backpressure at all.
	const limit = 256 << 20
	buf := make([]byte, 1<<20)
	var sent int64
	c.SetWriteDeadline(time.Now().Add(2 * time.Second))
	for sent < limit {
		n, err := c.Write(buf)
		sent += int64(n)
		if errors.Is(err, os.ErrDeadlineExceeded) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	if sent >= limit {
		t.Fatalf("the sender wrote %d bytes to a receiver that reads nothing", sent)
	}
	if p := l.PeakInFlight(); p > capacity {
		t.Errorf("peak in flight %d, more than the capacity %d", p, capacity)
	}
	t.Logf("the sender stalled after %d bytes; the line held at most %d", sent, l.PeakInFlight())
}

// TestBothWaysHalfClose sends different data each way, with half-closes,
// and checks that everything arrives in order and each end sees EOF.
func TestBothWaysHalfClose(t *testing.T) {
	leakcheck.Check(t)
	up := pattern(3<<20+17, 1)
	down := pattern(2<<20+5, 2)
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
	l := listen(t, target, Config{Delay: 5 * time.Millisecond, Capacity: 256 << 10})
	c := dial(t, l.Addr())
	werr := make(chan error, 1)
	go func() {
		_, err := c.Write(up)
		if err == nil {
			err = c.CloseWrite()
		}
		werr <- err
	}()
	gotDown, err := io.ReadAll(c)
	if err != nil {
		t.Fatal(err)
	}
	if err := <-werr; err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(gotDown, down) {
		t.Errorf("down: got %d bytes, want %d, equal %v", len(gotDown), len(down), bytes.Equal(gotDown, down))
	}
	select {
	case b := <-gotUp:
		if !bytes.Equal(b, up) {
			t.Errorf("up: got %d bytes, want %d", len(b), len(up))
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the target did not finish")
	}
}

// TestTargetDown: a client of a link whose target refuses is reset.
func TestTargetDown(t *testing.T) {
	leakcheck.Check(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	l := listen(t, addr, Config{})
	c, err := net.DialTimeout("tcp", l.Addr(), 5*time.Second)
	if err != nil {
		return // reset before connect returned: as good
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(30 * time.Second))
	var b [1]byte
	if _, err := c.Read(b[:]); err == nil {
		t.Fatal("read through a link to nothing succeeded")
	}
}

// TestCloseEndsConnections: Close returns with connections open, and ends
// them.
func TestCloseEndsConnections(t *testing.T) {
	leakcheck.Check(t)
	l, err := Listen("127.0.0.1:0", tcptest.Echo(t), Config{Delay: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	c := dial(t, l.Addr())
	c.Write([]byte("held in the line"))
	time.Sleep(50 * time.Millisecond)
	done := make(chan error, 1)
	go func() { done <- l.Close() }()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Close: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Close did not return")
	}
	var b [1]byte
	if _, err := c.Read(b[:]); err == nil {
		t.Error("the client's connection is still open after Close")
	}
}

func TestValidate(t *testing.T) {
	for _, tt := range []struct {
		name string
		cfg  Config
		ok   bool
	}{
		{"zero", Config{}, true},
		{"set", Config{Delay: time.Millisecond, Capacity: 1}, true},
		{"negative delay", Config{Delay: -1}, false},
		{"negative capacity", Config{Capacity: -1}, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.cfg.Validate(); (err == nil) != tt.ok {
				t.Errorf("Validate() = %v, want ok %v", err, tt.ok)
			}
		})
	}
	if _, err := Listen("127.0.0.1:0", "127.0.0.1:1", Config{Delay: -1}); err == nil {
		t.Error("Listen accepted a negative delay")
	}
}

func pattern(n int, seed byte) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i*7) ^ seed
	}
	return b
}

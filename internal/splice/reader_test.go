package splice

import (
	"bytes"
	"context"
	"io"
	"net"
	"testing"
	"time"

	"github.com/tunnelrelay/tunnel/internal/testutil/leakcheck"
)

// waitHeld waits up to a few seconds for the process-wide count of held
// buffers to reach want.
func waitHeld(t *testing.T, want int64) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for held.Load() != want {
		if time.Now().After(deadline) {
			t.Fatalf("%d buffers held, want %d", held.Load(), want)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// roundTrip writes msg on c and reads it back from the far end's echo.
func roundTrip(t *testing.T, c net.Conn, msg []byte) {
	t.Helper()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	defer c.SetDeadline(time.Time{})
	werr := make(chan error, 1)
	go func() { _, err := c.Write(msg); werr <- err }() // a pipe has no buffer
	got := make([]byte, len(msg))
	if _, err := io.ReadFull(c, got); err != nil {
		t.Fatal(err)
	}
	if err := <-werr; err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, msg) {
		t.Fatalf("echo differs")
	}
}

// echo copies everything c reads back to it, until c ends.
func echo(c net.Conn) {
	defer c.Close()
	buf := make([]byte, 64<<10)
	for {
		n, err := c.Read(buf)
		if n > 0 {
			if _, werr := c.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// TestIdleSessionHoldsNoBuffers: once neither direction has read anything
// for IdleAfter, the session holds no buffer, and it still works after.
// Both ways of waiting are covered: a socket (peeked) and a net.Pipe (one
// byte read ahead).
func TestIdleSessionHoldsNoBuffers(t *testing.T) {
	for _, tc := range []struct {
		name string
		pair func(t *testing.T) (near, far net.Conn)
	}{
		{"tcp", func(t *testing.T) (net.Conn, net.Conn) { a, b := tcpPair(t); return a, b }},
		{"pipe", func(t *testing.T) (net.Conn, net.Conn) {
			a, b := net.Pipe()
			t.Cleanup(func() { a.Close(); b.Close() })
			return a, b
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			leakcheck.Check(t)
			waitHeld(t, 0)
			client, a := tc.pair(t)
			b, server := tc.pair(t)
			go echo(server)
			done := make(chan Result, 1)
			go func() { done <- Splice(context.Background(), a, b, Options{IdleAfter: 50 * time.Millisecond}) }()

			msg := []byte("select 1;")
			roundTrip(t, client, msg)
			waitHeld(t, 0) // idle: both directions gave their buffers back
			for i := 0; i < 3; i++ {
				roundTrip(t, client, msg) // after a pause, in one piece
				waitHeld(t, 0)
			}
			big := make([]byte, 3<<20)
			for i := range big {
				big[i] = byte(i * 7)
			}
			roundTrip(t, client, big)
			waitHeld(t, 0)

			client.Close()
			select {
			case <-done:
			case <-time.After(5 * time.Second):
				t.Fatal("Splice did not end after the client closed")
			}
		})
	}
}

// TestBulkTakesLargeBuffer: a direction that fills its small buffer moves
// to a large one, so bulk goes in large writes.
func TestBulkTakesLargeBuffer(t *testing.T) {
	src, a := tcpPair(t)
	r := reader{src: a, idleAfter: time.Minute}
	defer r.release()
	if _, err := src.Write(make([]byte, 1<<20)); err != nil {
		t.Fatal(err)
	}
	var sizes []int
	for total := 0; total < 1<<20; {
		p, err := r.read()
		if err != nil {
			t.Fatal(err)
		}
		total += len(p)
		sizes = append(sizes, len(p))
	}
	if !r.large {
		t.Fatalf("reads of %v never moved to the large buffer", sizes)
	}
	biggest := 0
	for _, n := range sizes {
		biggest = max(biggest, n)
	}
	if biggest <= SmallBufferSize {
		t.Fatalf("largest read %d, want more than the small buffer's %d", biggest, SmallBufferSize)
	}
}

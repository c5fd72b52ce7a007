package splice

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"io"
	"net"
	"syscall"
	"testing"
	"time"

	"github.com/tunnelrelay/tunnel/internal/testutil/leakcheck"
)

// tcpPair returns the two ends of a loopback TCP connection.
func tcpPair(t testing.TB) (*net.TCPConn, *net.TCPConn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	c1, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	c2, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c1.Close(); c2.Close() })
	return c1.(*net.TCPConn), c2.(*net.TCPConn)
}

// relay starts Splice between two TCP pairs and returns the outer ends:
// client ↔ a ⇄ b ↔ server.
func relay(t testing.TB, ctx context.Context, opt Options) (client, server *net.TCPConn, result <-chan Result) {
	t.Helper()
	client, a := tcpPair(t)
	b, server := tcpPair(t)
	ch := make(chan Result, 1)
	go func() { ch <- Splice(ctx, a, b, opt) }()
	return client, server, ch
}

func waitResult(t *testing.T, ch <-chan Result, within time.Duration) Result {
	t.Helper()
	select {
	case r := <-ch:
		return r
	case <-time.After(within):
		t.Fatalf("Splice did not return within %v", within)
	}
	return Result{}
}

func TestHalfCloseExchange(t *testing.T) {
	leakcheck.Check(t)
	var counters Counters
	client, server, result := relay(t, context.Background(), Options{Counters: &counters})

	request := make([]byte, 1<<20)
	rand.Read(request)
	response := make([]byte, 5<<20)
	rand.Read(response)

	srvErr := make(chan error, 1)
	go func() {
		got, err := io.ReadAll(server)
		if err != nil {
			srvErr <- err
			return
		}
		if !bytes.Equal(got, request) {
			srvErr <- errors.New("server got a different request")
			return
		}
		if _, err := server.Write(response); err != nil {
			srvErr <- err
			return
		}
		srvErr <- server.CloseWrite()
	}()

	if _, err := client.Write(request); err != nil {
		t.Fatal(err)
	}
	client.CloseWrite()
	got, err := io.ReadAll(client)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, response) {
		t.Fatalf("client got %d bytes, want the %d-byte response", len(got), len(response))
	}
	if err := <-srvErr; err != nil {
		t.Fatal(err)
	}
	r := waitResult(t, result, 5*time.Second)
	if r.Err != nil {
		t.Errorf("Err = %v, want nil", r.Err)
	}
	if r.AToB != int64(len(request)) || r.BToA != int64(len(response)) {
		t.Errorf("counts %d/%d, want %d/%d", r.AToB, r.BToA, len(request), len(response))
	}
	if counters.AToB.Load() != r.AToB || counters.BToA.Load() != r.BToA {
		t.Errorf("live counters %d/%d differ from result", counters.AToB.Load(), counters.BToA.Load())
	}
}

func TestEnds(t *testing.T) {
	for _, tc := range []struct {
		name    string
		act     func(client, server *net.TCPConn, cancel context.CancelFunc)
		within  time.Duration
		wantErr error // nil: any error is accepted as long as it is not nil when wantAnyErr
		anyErr  bool
		farRead string // what the far side reads: "reset", "eof", or "" not checked
	}{
		{
			name:   "both close",
			act:    func(c, s *net.TCPConn, _ context.CancelFunc) { c.Close(); s.Close() },
			within: 2 * time.Second,
		},
		{
			name:    "half-closed for too long",
			act:     func(c, s *net.TCPConn, _ context.CancelFunc) { c.CloseWrite() },
			within:  2 * time.Second,
			wantErr: ErrHalfCloseTimeout,
			farRead: "eof", // the client's half-close, passed on
		},
		{
			name:    "context canceled",
			act:     func(c, s *net.TCPConn, cancel context.CancelFunc) { cancel() },
			within:  2 * time.Second,
			wantErr: context.Canceled,
			farRead: "reset",
		},
		{
			name: "client resets",
			act: func(c, s *net.TCPConn, _ context.CancelFunc) {
				c.SetLinger(0)
				c.Close()
			},
			within:  2 * time.Second,
			anyErr:  true,
			farRead: "reset",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			client, server, result := relay(t, ctx, Options{HalfCloseTimeout: 300 * time.Millisecond})
			// Traffic first, so the session is really running.
			client.Write([]byte("ping"))
			buf := make([]byte, 4)
			if _, err := io.ReadFull(server, buf); err != nil {
				t.Fatal(err)
			}
			tc.act(client, server, cancel)
			r := waitResult(t, result, tc.within)
			switch {
			case tc.wantErr != nil && !errors.Is(r.Err, tc.wantErr):
				t.Fatalf("Err = %v, want %v", r.Err, tc.wantErr)
			case tc.anyErr && r.Err == nil:
				t.Fatal("Err = nil, want the reset")
			case tc.wantErr == nil && !tc.anyErr && r.Err != nil:
				t.Fatalf("Err = %v, want nil", r.Err)
			}
			if tc.farRead == "" {
				return
			}
			// The far side sees its connection end: with a reset after a
			// failure, not with a clean end of stream.
			server.SetReadDeadline(time.Now().Add(2 * time.Second))
			_, err := io.Copy(io.Discard, server)
			var ne net.Error
			switch {
			case errors.As(err, &ne) && ne.Timeout():
				t.Fatal("server side still open after Splice returned")
			case tc.farRead == "reset" && !errors.Is(err, syscall.ECONNRESET):
				t.Fatalf("after %v the far side read %v, want a reset", r.Err, err)
			case tc.farRead == "eof" && err != nil:
				t.Fatalf("the far side read %v, want the client's clean end", err)
			}
		})
	}
}

// noHalfClose hides CloseWrite.
type noHalfClose struct{ net.Conn }

func TestPeerWithoutHalfClose(t *testing.T) {
	client, a := tcpPair(t)
	b, server := tcpPair(t)
	ch := make(chan Result, 1)
	go func() { ch <- Splice(context.Background(), noHalfClose{a}, b, Options{}) }()
	server.Write([]byte("bye"))
	server.CloseWrite()
	got, _ := io.ReadAll(client)
	if string(got) != "bye" {
		t.Fatalf("client got %q", got)
	}
	r := waitResult(t, ch, 2*time.Second)
	if r.Err != nil {
		t.Fatalf("Err = %v, want a clean end", r.Err)
	}
}

func BenchmarkSplice(b *testing.B) {
	client, server, _ := relay(b, context.Background(), Options{})
	buf := make([]byte, 256<<10)
	done := make(chan struct{})
	go func() {
		io.Copy(io.Discard, server)
		close(done)
	}()
	b.SetBytes(int64(len(buf)))
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if _, err := client.Write(buf); err != nil {
			b.Fatal(err)
		}
	}
	client.Close()
	<-done
}

// BenchmarkSpliceRoundTrip: small request/response messages through a
// splice, the shape of an OLTP database session: per-message cost, and
// allocations, of waking each direction.
func BenchmarkSpliceRoundTrip(b *testing.B) {
	client, server, _ := relay(b, context.Background(), Options{})
	go func() {
		buf := make([]byte, 512)
		for {
			n, err := server.Read(buf)
			if err != nil {
				return
			}
			if _, err := server.Write(buf[:n]); err != nil {
				return
			}
		}
	}()
	msg := make([]byte, 100)
	reply := make([]byte, len(msg))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := client.Write(msg); err != nil {
			b.Fatal(err)
		}
		if _, err := io.ReadFull(client, reply); err != nil {
			b.Fatal(err)
		}
	}
	client.Close()
}

package mux

import (
	"bytes"
	"errors"
	"net"
	"sync"
	"testing"
	"time"
)

// recordWriter stands in for the TLS connection: it cuts every write into
// records of at most 16 KiB and writes each on its own, as crypto/tls does.
type recordWriter struct {
	recorder
	out *corkConn
}

func (w *recordWriter) Write(p []byte) (int, error) {
	for rest := p; len(rest) > 0; {
		n := min(len(rest), tlsRecordPayload)
		if _, err := w.out.Write(rest[:n]); err != nil {
			return 0, err
		}
		rest = rest[n:]
	}
	return len(p), nil
}

// TestCorkOneWritePerFrame: a frame that spans many records reaches the TCP
// connection in one write, with every byte in order; writes outside a frame
// (a handshake, an alert) pass straight through.
func TestCorkOneWritePerFrame(t *testing.T) {
	tcp := &recorder{}
	cork := newCorkConn(tcp)
	tlsConn := &recordWriter{out: cork}
	fc := &frameConn{Conn: tlsConn, raw: cork}

	body := make([]byte, 200<<10)
	for i := range body {
		body[i] = byte(i)
	}
	hdr := []byte{0, yamuxTypeData, 0, 0, 0, 0, 0, 1, 0, 3, 32, 0} // length 200 KiB
	if _, err := fc.Write(hdr); err != nil {
		t.Fatal(err)
	}
	if _, err := fc.Write(body); err != nil {
		t.Fatal(err)
	}
	if len(tcp.writes) != 1 {
		t.Fatalf("%d writes reached TCP, want 1", len(tcp.writes))
	}
	if want := append(append([]byte{}, hdr...), body...); !bytes.Equal(tcp.writes[0], want) {
		t.Fatal("the write differs from header and body in order")
	}

	if _, err := cork.Write([]byte("alert")); err != nil {
		t.Fatal(err)
	}
	if len(tcp.writes) != 2 || string(tcp.writes[1]) != "alert" {
		t.Fatalf("an uncorked write did not pass straight through: %d writes", len(tcp.writes))
	}
	if cork.cur != nil {
		t.Fatal("the cork keeps its buffer after a flush")
	}
}

// slowConn records writes, each after a pause, and fails them once told to.
type slowConn struct {
	net.Conn
	mu     sync.Mutex
	data   []byte
	writes int
	delay  time.Duration
	fail   error
}

func (c *slowConn) Write(p []byte) (int, error) {
	time.Sleep(c.delay)
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.fail != nil {
		return 0, c.fail
	}
	c.data = append(c.data, p...)
	c.writes++
	return len(p), nil
}

func (c *slowConn) Close() error { return nil }

func (c *slowConn) snapshot() ([]byte, int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]byte(nil), c.data...), c.writes
}

// TestCorkAsync: after the handshake, frames are written behind the
// caller's back, in order; at most
// maxQueued bytes wait; a write error reaches every later write; Close
// writes out what is queued first.
func TestCorkAsync(t *testing.T) {
	slow := &slowConn{delay: 20 * time.Millisecond}
	cork := newCorkConn(slow)
	cork.startAsync()

	var want []byte
	frame := func(i int) []byte {
		b := bytes.Repeat([]byte{byte(i)}, 200<<10)
		want = append(want, b...)
		return b
	}
	start := time.Now()
	cork.cork(200 << 10)
	cork.Write(frame(-1))
	cork.uncork()
	if el := time.Since(start); el >= slow.delay {
		t.Fatalf("uncork took %v, as long as the write: not behind the caller's back", el)
	}
	for i := range 20 {
		cork.cork(200 << 10)
		cork.Write(frame(i))
		if err := cork.uncork(); err != nil {
			t.Fatal(err)
		}
		cork.mu.Lock()
		q := cork.queued
		cork.mu.Unlock()
		if q > maxQueued+200<<10 {
			t.Fatalf("%d bytes queued, bound %d", q, maxQueued)
		}
	}
	if el := time.Since(start); el < 5*slow.delay {
		t.Fatalf("20 frames of 200 KiB queued in %v: the queue bound did not hold the writer back", el)
	}
	if err := cork.Close(); err != nil {
		t.Fatal(err)
	}
	got, writes := slow.snapshot()
	if !bytes.Equal(got, want) {
		t.Fatalf("wrote %d bytes, want %d, in order", len(got), len(want))
	}
	if writes < 20 {
		t.Fatalf("%d writes for 20 frames", writes)
	}

	boom := errors.New("boom")
	slow.mu.Lock()
	slow.fail = boom
	slow.mu.Unlock()
	cork.cork(200 << 10)
	cork.Write(make([]byte, 100))
	cork.uncork()
	deadline := time.Now().Add(5 * time.Second)
	for {
		cork.cork(200 << 10)
		_, werr := cork.Write([]byte("x"))
		uerr := cork.uncork()
		if errors.Is(werr, boom) || errors.Is(uerr, boom) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("a failed write never reached the writer")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestCorkBufferSizes: a small frame takes a small buffer, a large one a
// large buffer, and a frame larger than its hint moves to a large one
// without losing a byte.
func TestCorkBufferSizes(t *testing.T) {
	for _, tc := range []struct {
		name       string
		hint, size int
		wantCap    int
	}{
		{"ping", 8, 30, smallCorkBufSize},
		{"full record", 16 << 10, 16<<10 + 22, smallCorkBufSize},
		{"large frame", 256<<10 - 12, 256<<10 + 16*22, corkBufSize},
		{"hint too small", 100, 40 << 10, corkBufSize},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tcp := &recorder{}
			cork := newCorkConn(tcp)
			cork.cork(tc.hint)
			want := make([]byte, tc.size)
			for i := range want {
				want[i] = byte(i)
			}
			for rest := want; len(rest) > 0; {
				n := min(len(rest), 1000)
				cork.Write(rest[:n])
				rest = rest[n:]
			}
			if got := cap(*cork.cur); got != tc.wantCap {
				t.Errorf("buffer of %d bytes, want %d", got, tc.wantCap)
			}
			if err := cork.uncork(); err != nil {
				t.Fatal(err)
			}
			if len(tcp.writes) != 1 || !bytes.Equal(tcp.writes[0], want) {
				t.Fatalf("%d writes; the bytes differ from what was written", len(tcp.writes))
			}
		})
	}
}

// TestCorkSmallFrameInline: a small frame with nothing queued ahead of it
// is written before uncork returns, on the caller's goroutine.
func TestCorkSmallFrameInline(t *testing.T) {
	slow := &slowConn{delay: 10 * time.Millisecond}
	cork := newCorkConn(slow)
	cork.startAsync()
	cork.cork(100)
	cork.Write([]byte("select 1"))
	if err := cork.uncork(); err != nil {
		t.Fatal(err)
	}
	if got, _ := slow.snapshot(); string(got) != "select 1" {
		t.Fatalf("after uncork the connection has %q", got)
	}
	cork.mu.Lock()
	flushing := cork.flushing
	cork.mu.Unlock()
	if flushing {
		t.Fatal("a flusher still runs after the inline write")
	}
}

func TestAutoStreamWindow(t *testing.T) {
	for _, tc := range []struct {
		handshake time.Duration
		want      uint32
	}{
		{time.Millisecond, 4 << 20},        // loopback
		{10 * time.Millisecond, 5_000_000}, // across a region
		{50 * time.Millisecond, 16 << 20},  // across a continent: the cap
	} {
		if got := autoStreamWindow(tc.handshake); got != tc.want {
			t.Errorf("autoStreamWindow(%v) = %d, want %d", tc.handshake, got, tc.want)
		}
	}
}

// blockedConn takes no write until released, like a peer that reads nothing.
type blockedConn struct {
	net.Conn
	release chan struct{}
}

func (c *blockedConn) Write(p []byte) (int, error) {
	<-c.release
	return len(p), nil
}

func (c *blockedConn) Close() error { return nil }

// TestCorkQueueBounded: however the writes come (TLS's own small records
// between frames, or small frames behind a large one that is stuck), the
// buffers waiting for a peer that reads nothing stay within the bound, and
// the writer is held back instead.
func TestCorkQueueBounded(t *testing.T) {
	for _, tc := range []struct {
		name  string
		write func(c *corkConn)
	}{
		{"records of TLS's own", func(c *corkConn) { c.Write(make([]byte, 27)) }},
		{"small frames", func(c *corkConn) {
			c.cork(12)
			c.Write(make([]byte, 12+22))
			c.uncork()
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			conn := &blockedConn{release: make(chan struct{})}
			cork := newCorkConn(conn)
			cork.startAsync()
			cork.cork(200 << 10) // a large frame first, stuck in the flusher
			cork.Write(make([]byte, 200<<10))
			cork.uncork()

			const n = 100000
			done := make(chan int)
			go func() {
				i := 0
				for ; i < n; i++ {
					tc.write(cork)
				}
				done <- i
			}()
			time.Sleep(200 * time.Millisecond)
			cork.mu.Lock()
			held := 0 // what the queue holds, counted afresh
			for _, b := range cork.queue {
				held += cap(*b)
			}
			cork.mu.Unlock()
			if bound := maxQueued + corkBufSize; held > bound {
				t.Fatalf("%d bytes of buffers queued, bound %d", held, bound)
			}
			close(conn.release)
			select {
			case got := <-done:
				if got != n {
					t.Fatalf("%d writes", got)
				}
			case <-time.After(10 * time.Second):
				t.Fatal("the writer stayed blocked after the peer read again")
			}
		})
	}
}

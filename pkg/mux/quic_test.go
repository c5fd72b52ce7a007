package mux

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/quic-go/quic-go"
)

func TestQUICConfig(t *testing.T) {
	c := (&Config{}).withDefaults()
	q := quicConfig(c)
	if q.MaxIncomingStreams < 10_001 {
		t.Errorf("MaxIncomingStreams %d: fewer than the server's default per-agent sessions plus the control stream", q.MaxIncomingStreams)
	}
	if q.MaxIncomingUniStreams >= 0 {
		t.Errorf("MaxIncomingUniStreams %d, want none", q.MaxIncomingUniStreams)
	}
	if q.MaxStreamReceiveWindow != DefaultStreamWindow {
		t.Errorf("MaxStreamReceiveWindow %d, want StreamWindow", q.MaxStreamReceiveWindow)
	}
	if q.MaxConnectionReceiveWindow < 4*q.MaxStreamReceiveWindow {
		t.Errorf("connection window %d is less than 4 stream windows", q.MaxConnectionReceiveWindow)
	}
	if q.KeepAlivePeriod != DefaultKeepAlive || q.MaxIdleTimeout != DefaultIdleTimeout {
		t.Errorf("keep-alive %v, idle timeout %v", q.KeepAlivePeriod, q.MaxIdleTimeout)
	}
	if q.HandshakeIdleTimeout*2 != DefaultHandshakeTimeout {
		t.Errorf("handshake idle timeout %v: quic-go allows twice that, which must be HandshakeTimeout", q.HandshakeIdleTimeout)
	}
	if q := quicConfig((&Config{KeepAlive: -1}).withDefaults()); q.KeepAlivePeriod != 0 {
		t.Errorf("negative KeepAlive gives a keep-alive every %v", q.KeepAlivePeriod)
	}
	if err := (&Config{MaxStreams: -1}).Validate(); err == nil {
		t.Error("negative MaxStreams accepted")
	}
}

// quicPair returns a QUIC session pair with cfg on both sides.
func quicPair(t testing.TB, cfg *Config) (client, server Session, ln *QUICListener) {
	t.Helper()
	stls, ctls := testTLS(t)
	ln, err := ListenQUIC("127.0.0.1:0", stls, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	client, server = dialPair(t, ln, func(ctx context.Context) (Session, error) {
		return DialQUIC(ctx, ln.Addr().String(), ctls, cfg)
	})
	return client, server, ln
}

// TestQUICCloseReturnsStreamCredit: a stream the server closes stops
// counting against the client's stream limit at once, even though the
// client never ends its side; else a peer that holds streams open would
// lock new ones out.
func TestQUICCloseReturnsStreamCredit(t *testing.T) {
	cfg := testConfig()
	cfg.MaxStreams = 4
	client, server, _ := quicPair(t, cfg)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for i := range 5 * cfg.MaxStreams {
		octx, ocancel := context.WithTimeout(ctx, 2*time.Second)
		st, err := client.OpenStream(octx)
		ocancel()
		if err != nil {
			t.Fatalf("stream %d: %v", i+1, err)
		}
		defer st.Close() // only at the end: the client holds every stream
		st.Write([]byte("x"))
		peer, err := server.AcceptStream(ctx)
		if err != nil {
			t.Fatal(err)
		}
		peer.Close()
	}
}

// TestQUICWriteAfterPeerClose: once the peer has closed a stream, writing
// to it fails like writing to a TCP connection the peer has closed, and
// passing an end on with CloseWrite is no error.
func TestQUICWriteAfterPeerClose(t *testing.T) {
	client, server, _ := quicPair(t, testConfig())
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	st, err := client.OpenStream(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	st.Write([]byte("x"))
	peer, err := server.AcceptStream(ctx)
	if err != nil {
		t.Fatal(err)
	}
	peer.Close()
	deadline := time.Now().Add(3 * time.Second)
	for {
		_, err := st.Write([]byte("y"))
		if err != nil {
			if !errors.Is(err, syscall.EPIPE) {
				t.Fatalf("write to a stream the peer closed: %v, want EPIPE", err)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("writes still succeed after the peer closed the stream")
		}
		time.Sleep(5 * time.Millisecond)
	}
	if err := st.CloseWrite(); err != nil {
		t.Fatalf("CloseWrite after the peer closed: %v", err)
	}
	if _, err := io.ReadAll(st); err != nil {
		t.Fatalf("reading the peer's end: %v", err)
	}
}

// TestQUICHalfCloseTimeout: a stream whose write side is closed is reset
// if the peer never ends its own.
func TestQUICHalfCloseTimeout(t *testing.T) {
	cfg := testConfig()
	cfg.HalfCloseTimeout = 100 * time.Millisecond
	client, server, _ := quicPair(t, cfg)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	st, err := client.OpenStream(ctx)
	if err != nil {
		t.Fatal(err)
	}
	st.Write([]byte("x"))
	peer, err := server.AcceptStream(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer peer.Close()
	st.CloseWrite()
	io.ReadFull(peer, make([]byte, 1))
	peer.SetReadDeadline(time.Now().Add(3 * time.Second))
	if _, err := peer.Read(make([]byte, 1)); err != io.EOF {
		t.Fatalf("peer read %v, want EOF", err)
	}
	// The peer keeps its side open; the opener gives up on it.
	if _, err := peer.Write(bytes.Repeat([]byte("z"), 100)); err != nil {
		t.Fatal(err)
	}
	waitNumStreams(t, "client", client, 0)
	waitNumStreams(t, "server", server, 0)
	if _, err := st.Read(make([]byte, 1000)); !errors.Is(err, net.ErrClosed) && err != nil {
		// Data the peer sent before the reset may still be read.
		t.Fatalf("read after the half-close timeout: %v", err)
	}
}

// TestQUICListenerCloseKeepsSessions: closing the listener leaves accepted
// sessions working; the UDP socket they share is closed after the last.
func TestQUICListenerCloseKeepsSessions(t *testing.T) {
	client, server, ln := quicPair(t, testConfig())
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	addr := ln.Addr().String()
	if err := ln.Close(); err != nil {
		t.Fatal(err)
	}
	st, err := client.OpenStream(ctx)
	if err != nil {
		t.Fatal(err)
	}
	st.Write([]byte("still here"))
	peer, err := server.AcceptStream(ctx)
	if err != nil {
		t.Fatalf("session after its listener closed: %v", err)
	}
	if _, err := io.ReadFull(peer, make([]byte, 10)); err != nil {
		t.Fatal(err)
	}
	// The socket is still held...
	if pc, err := net.ListenPacket("udp", addr); err == nil {
		pc.Close()
		t.Fatal("the listener's UDP port was free while a session used it")
	}
	// ...until the last session ends.
	server.Close()
	deadline := time.Now().Add(3 * time.Second)
	for {
		pc, err := net.ListenPacket("udp", addr)
		if err == nil {
			pc.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("UDP port still taken after the last session ended: %v", err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestDialQUICSilentServer: a server that never answers fails the dial
// within the handshake timeout, and the dial leaves nothing behind.
func TestDialQUICSilentServer(t *testing.T) {
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	_, ctls := testTLS(t)
	base := runtime.NumGoroutine()
	cfg := testConfig()
	cfg.HandshakeTimeout = 300 * time.Millisecond
	start := time.Now()
	s, err := DialQUIC(context.Background(), pc.LocalAddr().String(), ctls, cfg)
	if err == nil {
		s.Close()
		t.Fatal("dial succeeded against a silent server")
	}
	if el := time.Since(start); el > 2*time.Second {
		t.Fatalf("dial gave up after %v, handshake timeout is 300ms", el)
	}
	waitGoroutines(t, base)

	// The caller's context ends a dial sooner.
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if _, err := DialQUIC(ctx, pc.LocalAddr().String(), ctls, testConfig()); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("dial with an ended context: %v", err)
	}
}

// blindConn is a UDP socket whose socket option calls do nothing, so its
// buffers look too small to quic-go and to udpBuffers alike: the case of a
// host whose limits cannot be raised, on a machine where they can.
type blindConn struct{ *net.UDPConn }

func (c blindConn) SyscallConn() (syscall.RawConn, error) {
	rc, err := c.UDPConn.SyscallConn()
	return blindRawConn{rc}, err
}

type blindRawConn struct{ syscall.RawConn }

func (blindRawConn) Control(func(uintptr)) error { return nil }

func newBlindConn(t testing.TB) blindConn {
	t.Helper()
	pc, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	return blindConn{pc}
}

// recordHandler keeps the records logged through it.
type recordHandler struct {
	mu      sync.Mutex
	records []slog.Record
}

func (h *recordHandler) Enabled(context.Context, slog.Level) bool { return true }
func (h *recordHandler) WithAttrs([]slog.Attr) slog.Handler       { return h }
func (h *recordHandler) WithGroup(string) slog.Handler            { return h }
func (h *recordHandler) Handle(_ context.Context, r slog.Record) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.records = append(h.records, r)
	return nil
}

func TestUDPBufferWarningOnce(t *testing.T) {
	t.Setenv(quicBufferWarningEnv, "") // restored afterwards
	h := &recordHandler{}
	log := slog.New(h)
	b := &udpBuffers{want: quicUDPBuffer}
	for range 3 {
		pc := newBlindConn(t)
		if b.prepare(pc) {
			t.Fatal("prepare saw big enough buffers on a socket that hides them")
		}
		b.check(pc, log)
	}
	if len(h.records) != 1 {
		t.Fatalf("%d log records for 3 sockets, want 1", len(h.records))
	}
	r := h.records[0]
	if r.Level < slog.LevelInfo || !strings.Contains(r.Message, "sysctl -w net.core.rmem_max=7500000 net.core.wmem_max=7500000") {
		t.Errorf("warning %s %q lacks the fix", r.Level, r.Message)
	}
	if v := os.Getenv(quicBufferWarningEnv); v != "true" {
		t.Errorf("quic-go's own warning not silenced: %s=%q", quicBufferWarningEnv, v)
	}

	// Buffers that are big enough: no line, and quic-go is left alone.
	t.Setenv(quicBufferWarningEnv, "")
	small := &udpBuffers{want: 64 << 10}
	pc, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	if !small.prepare(pc) {
		t.Fatal("64 KiB buffers were refused")
	}
	small.check(pc, log)
	if len(h.records) != 1 || os.Getenv(quicBufferWarningEnv) != "" {
		t.Errorf("%d records, %s=%q after a socket with big enough buffers", len(h.records), quicBufferWarningEnv, os.Getenv(quicBufferWarningEnv))
	}
}

// TestQUICGoBufferWarningSilenced: quic-go prints its own buffer warning
// through the standard log package once per process, so each case runs in
// a child process: quic-go alone prints it; after udpBuffers.prepare only
// our line appears.
func TestQUICGoBufferWarningSilenced(t *testing.T) {
	const childEnv = "MUX_TEST_BUFFER_WARNING_CHILD"
	if mode := os.Getenv(childEnv); mode != "" {
		bufferWarningChild(t, mode)
		return
	}
	const quicGoLine = "UDP-Buffer-Sizes"
	for _, tc := range []struct {
		mode                string
		wantQUICGo, wantOur bool
	}{
		{"quic-go alone", true, false},
		{"prepared", false, true},
	} {
		t.Run(tc.mode, func(t *testing.T) {
			cmd := exec.Command(os.Args[0], "-test.run=^TestQUICGoBufferWarningSilenced$", "-test.count=1", "-test.v")
			for _, kv := range os.Environ() {
				if !strings.HasPrefix(kv, quicBufferWarningEnv+"=") {
					cmd.Env = append(cmd.Env, kv)
				}
			}
			cmd.Env = append(cmd.Env, childEnv+"="+tc.mode)
			out, err := cmd.CombinedOutput()
			if err != nil {
				t.Fatalf("child: %v\n%s", err, out)
			}
			if got := bytes.Contains(out, []byte(quicGoLine)); got != tc.wantQUICGo {
				t.Errorf("quic-go's warning printed: %v, want %v; output:\n%s", got, tc.wantQUICGo, out)
			}
			if got := bytes.Contains(out, []byte("sysctl -w")); got != tc.wantOur {
				t.Errorf("our warning printed: %v, want %v; output:\n%s", got, tc.wantOur, out)
			}
		})
	}
}

// bufferWarningChild starts a QUIC listener on a socket whose buffers
// look too small, with or without udpBuffers first.
func bufferWarningChild(t *testing.T, mode string) {
	stls, _ := testTLS(t)
	pc := newBlindConn(t)
	b := &udpBuffers{want: quicUDPBuffer}
	prepared := mode == "prepared"
	if prepared {
		b.prepare(pc)
	}
	tr := &quic.Transport{Conn: pc}
	defer tr.Close()
	ln, err := tr.Listen(quicTLSConfig(stls), quicConfig((&Config{}).withDefaults()))
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	if prepared {
		b.check(pc, slog.New(slog.NewTextHandler(os.Stdout, nil)))
	}
}

// Benchmarks of the hot path over both transports: one bulk stream, and
// small request/response exchanges on one stream.

func BenchmarkStreamThroughput(b *testing.B) {
	for _, tr := range transportCases {
		b.Run(tr.name, func(b *testing.B) {
			client, server := tr.pair(b)
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			st, err := client.OpenStream(ctx)
			if err != nil {
				b.Fatal(err)
			}
			defer st.Close()
			st.Write([]byte{0})
			received := make(chan error, 1)
			go func() {
				peer, err := server.AcceptStream(ctx)
				if err != nil {
					received <- err
					return
				}
				defer peer.Close()
				buf := make([]byte, 64<<10)
				for {
					if _, err := peer.Read(buf); err != nil {
						if err == io.EOF {
							err = nil
						}
						received <- err
						return
					}
				}
			}()
			chunk := make([]byte, 64<<10)
			b.SetBytes(int64(len(chunk)))
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				if _, err := st.Write(chunk); err != nil {
					b.Fatal(err)
				}
			}
			st.CloseWrite()
			if err := <-received; err != nil {
				b.Fatal(err)
			}
		})
	}
}

func BenchmarkStreamRoundTrip(b *testing.B) {
	const size = 64
	for _, tr := range transportCases {
		b.Run(tr.name, func(b *testing.B) {
			client, server := tr.pair(b)
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			st, err := client.OpenStream(ctx)
			if err != nil {
				b.Fatal(err)
			}
			defer st.Close()
			echoed := make(chan error, 1)
			go func() {
				peer, err := server.AcceptStream(ctx)
				if err != nil {
					echoed <- err
					return
				}
				defer peer.Close()
				buf := make([]byte, size)
				for {
					if _, err := io.ReadFull(peer, buf); err != nil {
						echoed <- nil
						return
					}
					if _, err := peer.Write(buf); err != nil {
						echoed <- err
						return
					}
				}
			}()
			req, resp := make([]byte, size), make([]byte, size)
			b.SetBytes(2 * size)
			b.ReportAllocs()
			b.ResetTimer()
			for i := range b.N {
				req[0] = byte(i)
				if _, err := st.Write(req); err != nil {
					b.Fatal(err)
				}
				if _, err := io.ReadFull(st, resp); err != nil || resp[0] != byte(i) {
					b.Fatal(fmt.Sprint("response: ", err))
				}
			}
			b.StopTimer()
			st.CloseWrite()
			if err := <-echoed; err != nil {
				b.Fatal(err)
			}
		})
	}
}

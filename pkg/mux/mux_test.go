package mux

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net"
	"runtime"
	"sync"
	"testing"
	"time"
)

// testTLS returns a server config and a client config that trusts it, with
// client certificates required and presented.
func testTLS(t testing.TB) (server, client *tls.Config) {
	t.Helper()
	cert := func(name string, isServer bool) (tls.Certificate, *x509.Certificate) {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		tmpl := &x509.Certificate{
			SerialNumber: big.NewInt(time.Now().UnixNano()),
			Subject:      pkix.Name{CommonName: name},
			NotBefore:    time.Now().Add(-time.Hour),
			NotAfter:     time.Now().Add(time.Hour),
			KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
			ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
			IsCA:         true,

			BasicConstraintsValid: true,
		}
		if isServer {
			tmpl.IPAddresses = []net.IP{net.ParseIP("127.0.0.1")}
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
		if err != nil {
			t.Fatal(err)
		}
		leaf, _ := x509.ParseCertificate(der)
		return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, leaf
	}
	srvCert, srvLeaf := cert("server", true)
	cliCert, _ := cert("agent", false)
	pool := x509.NewCertPool()
	pool.AddCert(srvLeaf)
	server = &tls.Config{Certificates: []tls.Certificate{srvCert}, ClientAuth: tls.RequireAnyClientCert}
	client = &tls.Config{Certificates: []tls.Certificate{cliCert}, RootCAs: pool, ServerName: "127.0.0.1"}
	return server, client
}

func testConfig() *Config {
	return &Config{HandshakeTimeout: 500 * time.Millisecond, Logger: slog.New(slog.DiscardHandler)}
}

// transportCase is one implementation of Session and Listener under test.
type transportCase struct {
	name   string
	listen func(addr string, tlsConf *tls.Config, cfg *Config) (Listener, error)
	dial   func(ctx context.Context, addr string, tlsConf *tls.Config, cfg *Config) (Session, error)
}

var transportCases = []transportCase{
	{
		name: TransportTLS,
		listen: func(addr string, tlsConf *tls.Config, cfg *Config) (Listener, error) {
			l, err := ListenTLS(addr, tlsConf, cfg)
			if err != nil {
				return nil, err
			}
			return l, nil
		},
		dial: DialTLS,
	},
	{
		name: TransportQUIC,
		listen: func(addr string, tlsConf *tls.Config, cfg *Config) (Listener, error) {
			l, err := ListenQUIC(addr, tlsConf, cfg)
			if err != nil {
				return nil, err
			}
			return l, nil
		},
		dial: DialQUIC,
	},
}

// forEachTransport runs f once per transport, as a subtest.
func forEachTransport(t *testing.T, f func(t *testing.T, tr transportCase)) {
	for _, tr := range transportCases {
		t.Run(tr.name, func(t *testing.T) { f(t, tr) })
	}
}

// pair returns a connected client and server session over loopback.
func (tr transportCase) pair(t testing.TB) (client, server Session) {
	t.Helper()
	stls, ctls := testTLS(t)
	ln, err := tr.listen("127.0.0.1:0", stls, testConfig())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	return dialPair(t, ln, func(ctx context.Context) (Session, error) {
		return tr.dial(ctx, ln.Addr().String(), ctls, testConfig())
	})
}

// dialPair dials ln with dial and returns both ends, closed at cleanup.
func dialPair(t testing.TB, ln Listener, dial func(context.Context) (Session, error)) (client, server Session) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	errc := make(chan error, 1)
	go func() {
		var err error
		client, err = dial(ctx)
		errc <- err
	}()
	server, err := ln.Accept(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := <-errc; err != nil {
		server.Close()
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Close(); server.Close() })
	return client, server
}

// pair returns a connected client and server session over TLS.
func pair(t testing.TB) (client, server Session) {
	t.Helper()
	return transportCases[0].pair(t)
}

func TestOpenAcceptBothWays(t *testing.T) {
	forEachTransport(t, func(t *testing.T, tr transportCase) {
		client, server := tr.pair(t)
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()

		for _, tc := range []struct {
			name         string
			opener, peer Session
		}{
			{"client opens", client, server},
			{"server opens", server, client},
		} {
			t.Run(tc.name, func(t *testing.T) {
				st, err := tc.opener.OpenStream(ctx)
				if err != nil {
					t.Fatal(err)
				}
				defer st.Close()
				if _, err := st.Write([]byte("hello")); err != nil {
					t.Fatal(err)
				}
				got, err := tc.peer.AcceptStream(ctx)
				if err != nil {
					t.Fatal(err)
				}
				defer got.Close()
				buf := make([]byte, 5)
				if _, err := io.ReadFull(got, buf); err != nil || string(buf) != "hello" {
					t.Fatalf("read %q, %v", buf, err)
				}
			})
		}
		if client.Transport() != tr.name || server.Transport() != tr.name {
			t.Errorf("Transport() = %q", client.Transport())
		}
		if v := server.ConnectionState().Version; v != tls.VersionTLS13 {
			t.Errorf("TLS version %x, want 1.3", v)
		}
		if n := len(server.ConnectionState().PeerCertificates); n != 1 {
			t.Errorf("server sees %d peer certificates, want 1", n)
		}
	})
}

// TestHalfClose: the client sends a request and closes its write side; the
// server reads it to EOF and still sends the whole response back.
func TestHalfClose(t *testing.T) {
	forEachTransport(t, func(t *testing.T, tr transportCase) {
		client, server := tr.pair(t)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()

		request := bytes.Repeat([]byte("q"), 100_000)
		response := bytes.Repeat([]byte("r"), 3<<20)

		st, err := client.OpenStream(ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer st.Close()
		srvErr := make(chan error, 1)
		go func() {
			s, err := server.AcceptStream(ctx)
			if err != nil {
				srvErr <- err
				return
			}
			defer s.Close()
			got, err := io.ReadAll(s)
			if err != nil {
				srvErr <- err
				return
			}
			if !bytes.Equal(got, request) {
				srvErr <- errors.New("request differs")
				return
			}
			if _, err := s.Write(response); err != nil {
				srvErr <- err
				return
			}
			srvErr <- s.CloseWrite()
		}()
		if _, err := st.Write(request); err != nil {
			t.Fatal(err)
		}
		if err := st.CloseWrite(); err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(st)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, response) {
			t.Fatalf("response: got %d bytes, want %d", len(got), len(response))
		}
		if err := <-srvErr; err != nil {
			t.Fatal(err)
		}
	})
}

func TestCloseUnblocksRead(t *testing.T) {
	forEachTransport(t, func(t *testing.T, tr transportCase) {
		client, server := tr.pair(t)
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

		readErr := make(chan error, 1)
		go func() {
			_, err := st.Read(make([]byte, 10))
			readErr <- err
		}()
		time.Sleep(20 * time.Millisecond)
		st.Close()
		select {
		case err := <-readErr:
			if !errors.Is(err, net.ErrClosed) {
				t.Fatalf("read after Close: %v, want net.ErrClosed", err)
			}
		case <-time.After(2 * time.Second):
			t.Fatal("Read still blocked after Close")
		}
		// The peer sees the end of the stream.
		peer.SetReadDeadline(time.Now().Add(2 * time.Second))
		buf := make([]byte, 10)
		n, _ := io.ReadFull(peer, buf[:1])
		if n != 1 {
			t.Fatal("lost the byte written before Close")
		}
		if _, err := peer.Read(buf); err != io.EOF {
			t.Fatalf("peer read after Close: %v, want EOF", err)
		}
	})
}

func TestAcceptHonoursContext(t *testing.T) {
	forEachTransport(t, func(t *testing.T, tr transportCase) {
		_, server := tr.pair(t)
		ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
		defer cancel()
		if _, err := server.AcceptStream(ctx); !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("AcceptStream: %v, want deadline exceeded", err)
		}
		cctx, ccancel := context.WithCancel(context.Background())
		ccancel()
		if _, err := server.OpenStream(cctx); !errors.Is(err, context.Canceled) {
			t.Fatalf("OpenStream: %v, want canceled", err)
		}
	})
}

func TestSessionCloseEndsStreams(t *testing.T) {
	forEachTransport(t, func(t *testing.T, tr transportCase) {
		client, server := tr.pair(t)
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		st, err := client.OpenStream(ctx)
		if err != nil {
			t.Fatal(err)
		}
		st.Write([]byte("x"))
		if _, err := server.AcceptStream(ctx); err != nil {
			t.Fatal(err)
		}
		server.Close()
		select {
		case <-client.Done():
		case <-time.After(3 * time.Second):
			t.Fatal("client session not done after the server closed")
		}
		st.SetReadDeadline(time.Now().Add(2 * time.Second))
		if _, err := st.Read(make([]byte, 1)); err == nil {
			t.Fatalf("read on a dead session: %v", err)
		}
		if _, err := client.OpenStream(ctx); !errors.Is(err, ErrSessionClosed) {
			t.Fatalf("OpenStream after close: %v, want ErrSessionClosed", err)
		}
	})
}

func TestBulkChecksum(t *testing.T) {
	forEachTransport(t, func(t *testing.T, tr transportCase) {
		client, server := tr.pair(t)
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		const size = 32 << 20
		st, err := client.OpenStream(ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer st.Close()
		sum := make(chan [32]byte, 1)
		go func() {
			s, err := server.AcceptStream(ctx)
			if err != nil {
				sum <- [32]byte{}
				return
			}
			defer s.Close()
			h := sha256.New()
			io.Copy(h, s)
			var out [32]byte
			copy(out[:], h.Sum(nil))
			sum <- out
		}()
		h := sha256.New()
		src := io.TeeReader(io.LimitReader(rand.Reader, size), h)
		if _, err := io.CopyBuffer(struct{ io.Writer }{st}, src, make([]byte, 40_000)); err != nil {
			t.Fatal(err)
		}
		st.CloseWrite()
		var want [32]byte
		copy(want[:], h.Sum(nil))
		if got := <-sum; got != want {
			t.Fatal("checksum differs")
		}
	})
}

// TestHandshakeFailures: a peer that sends garbage, or nothing, is closed
// within the handshake timeout and leaves no goroutine behind.
func TestHandshakeFailures(t *testing.T) {
	stls, _ := testTLS(t)
	base := runtime.NumGoroutine()
	ln, err := ListenTLS("127.0.0.1:0", stls, testConfig())
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		send []byte
	}{
		{"garbage", bytes.Repeat([]byte("GET / HTTP/1.1\r\n"), 64)},
		{"stalled", nil},
		{"half a hello", []byte{0x16, 0x03, 0x01, 0x02, 0x00, 0x01}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := net.Dial("tcp", ln.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			start := time.Now()
			c.Write(tc.send)
			c.SetReadDeadline(time.Now().Add(5 * time.Second))
			_, err = io.Copy(io.Discard, c)
			if ne, ok := err.(net.Error); ok && ne.Timeout() {
				t.Fatal("server kept the connection open past its handshake timeout")
			}
			if d := time.Since(start); d > 2*time.Second {
				t.Errorf("closed after %v, handshake timeout is 500ms", d)
			}
		})
	}
	ln.Close()
	waitGoroutines(t, base)
}

// TestListenerCloseAbortsHandshakes: peers stalled in the middle of their
// handshakes do not hold Close up, and leave nothing running behind.
func TestListenerCloseAbortsHandshakes(t *testing.T) {
	forEachTransport(t, func(t *testing.T, tr transportCase) {
		const peers = 5
		stls, ctls := testTLS(t)
		base := runtime.NumGoroutine()
		cfg := testConfig()
		cfg.HandshakeTimeout = time.Minute
		ln, err := tr.listen("127.0.0.1:0", stls, cfg)
		if err != nil {
			t.Fatal(err)
		}
		// Each client stops when asked for its certificate: the server
		// has sent its whole flight and waits for the client's.
		stalled := ctls.Clone()
		stalled.Certificates = nil
		entered := make(chan struct{}, peers)
		release := make(chan struct{})
		stalled.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			entered <- struct{}{}
			<-release
			return &ctls.Certificates[0], nil
		}
		dctx, dcancel := context.WithCancel(context.Background())
		var dials sync.WaitGroup
		endDials := sync.OnceFunc(func() {
			close(release)
			dcancel()
			dials.Wait()
		})
		defer endDials()
		for range peers {
			dials.Go(func() {
				ccfg := testConfig()
				ccfg.HandshakeTimeout = time.Minute
				if s, err := tr.dial(dctx, ln.Addr().String(), stalled, ccfg); err == nil {
					s.Close()
				}
			})
		}
		for i := range peers {
			select {
			case <-entered:
			case <-time.After(5 * time.Second):
				t.Fatalf("%d of %d handshakes started", i, peers)
			}
		}
		done := make(chan struct{})
		go func() { ln.Close(); close(done) }()
		select {
		case <-done:
		case <-time.After(3 * time.Second):
			t.Fatal("Close waited for stalled handshakes")
		}
		if _, err := ln.Accept(context.Background()); !errors.Is(err, ErrListenerClosed) {
			t.Fatalf("Accept after Close: %v", err)
		}
		endDials()
		waitGoroutines(t, base)
	})
}

// TestManyConcurrentStreams: 300 streams are open at once (QUIC's default
// would stop at 100), each then echoes its own message, and afterwards no
// stream is left open on either side.
func TestManyConcurrentStreams(t *testing.T) {
	forEachTransport(t, func(t *testing.T, tr transportCase) {
		const n = 300
		client, server := tr.pair(t)
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()

		accepted := make(chan Stream, n)
		go func() {
			for range n {
				s, err := server.AcceptStream(ctx)
				if err != nil {
					return
				}
				accepted <- s
			}
		}()
		streams := make([]Stream, n)
		for i := range streams {
			octx, ocancel := context.WithTimeout(ctx, 2*time.Second)
			st, err := client.OpenStream(octx)
			ocancel()
			if err != nil {
				t.Fatalf("opening stream %d with %d open: %v", i+1, i, err)
			}
			defer st.Close()
			if _, err := st.Write([]byte{byte(i)}); err != nil {
				t.Fatal(err)
			}
			streams[i] = st
		}
		peers := make([]Stream, n)
		for i := range peers {
			select {
			case peers[i] = <-accepted:
			case <-ctx.Done():
				t.Fatalf("accepted %d of %d streams", i, n)
			}
		}
		if c, s := client.NumStreams(), server.NumStreams(); c != n || s != n {
			t.Fatalf("NumStreams: client %d, server %d; want %d", c, s, n)
		}

		var wg sync.WaitGroup
		for _, p := range peers { // echo
			wg.Go(func() {
				defer p.Close()
				io.Copy(p, p)
				p.CloseWrite()
			})
		}
		errs := make(chan error, n)
		for i, st := range streams {
			msg := bytes.Repeat([]byte{byte(i)}, 10_000+i)
			wg.Go(func() {
				if _, err := st.Write(msg); err != nil {
					errs <- err
					return
				}
				st.CloseWrite()
			})
			wg.Go(func() {
				defer st.Close()
				got, err := io.ReadAll(st)
				if err != nil {
					errs <- err
					return
				}
				if !bytes.Equal(got, append([]byte{byte(i)}, msg...)) {
					errs <- fmt.Errorf("stream %d: echo differs", i)
				}
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatal(err)
		}
		waitNumStreams(t, "client", client, 0)
		waitNumStreams(t, "server", server, 0)
	})
}

// waitNumStreams waits for s.NumStreams to reach want.
func waitNumStreams(t *testing.T, side string, s Session, want int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for s.NumStreams() != want && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if got := s.NumStreams(); got != want {
		t.Fatalf("%s NumStreams = %d, want %d", side, got, want)
	}
}

// TestNumStreams: a stream counts until both of its directions have ended,
// however they end, on each side.
func TestNumStreams(t *testing.T) {
	forEachTransport(t, func(t *testing.T, tr transportCase) {
		client, server := tr.pair(t)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		open := func(t *testing.T) (st, peer Stream) {
			t.Helper()
			st, err := client.OpenStream(ctx)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { st.Close() })
			st.Write([]byte("x"))
			peer, err = server.AcceptStream(ctx)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { peer.Close() })
			if _, err := io.ReadFull(peer, make([]byte, 1)); err != nil {
				t.Fatal(err)
			}
			waitNumStreams(t, "client", client, 1)
			waitNumStreams(t, "server", server, 1)
			return st, peer
		}

		t.Run("half closes both ways", func(t *testing.T) {
			st, peer := open(t)
			st.CloseWrite()
			if _, err := peer.Read(make([]byte, 1)); err != io.EOF {
				t.Fatalf("peer read %v, want EOF", err)
			}
			// One direction is still open.
			if c, s := client.NumStreams(), server.NumStreams(); c != 1 || s != 1 {
				t.Fatalf("after one half-close: client %d, server %d streams; want 1 and 1", c, s)
			}
			peer.CloseWrite()
			if _, err := st.Read(make([]byte, 1)); err != io.EOF {
				t.Fatalf("read %v, want EOF", err)
			}
			waitNumStreams(t, "client", client, 0)
			waitNumStreams(t, "server", server, 0)
		})
		t.Run("close", func(t *testing.T) {
			st, peer := open(t)
			st.Close()
			peer.Close()
			waitNumStreams(t, "client", client, 0)
			waitNumStreams(t, "server", server, 0)
		})
		t.Run("reset", func(t *testing.T) {
			st, peer := open(t)
			st.Reset()
			// The peer forgets a reset stream without closing it.
			waitNumStreams(t, "server", server, 0)
			peer.Close()
			if tr.name == TransportQUIC {
				// yamux holds the resetting side for HalfCloseTimeout.
				waitNumStreams(t, "client", client, 0)
			}
		})
	})
}

// TestCloseUnblocksWrite: Close wakes a write blocked on a peer that does
// not read.
func TestCloseUnblocksWrite(t *testing.T) {
	forEachTransport(t, func(t *testing.T, tr transportCase) {
		client, server := tr.pair(t)
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
		writeErr := make(chan error, 1)
		go func() {
			_, err := st.Write(make([]byte, 64<<20)) // far more than any window
			writeErr <- err
		}()
		time.Sleep(50 * time.Millisecond)
		st.Close()
		select {
		case err := <-writeErr:
			if !errors.Is(err, net.ErrClosed) {
				t.Fatalf("write after Close: %v, want net.ErrClosed", err)
			}
		case <-time.After(2 * time.Second):
			t.Fatal("Write still blocked after Close")
		}
	})
}

// TestDeadlines: read and write deadlines time blocked calls out with a
// timeout error, and a cleared deadline lets the stream go on.
func TestDeadlines(t *testing.T) {
	forEachTransport(t, func(t *testing.T, tr transportCase) {
		client, server := tr.pair(t)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
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
		defer peer.Close()
		isTimeout := func(err error) bool {
			var ne net.Error
			return errors.As(err, &ne) && ne.Timeout()
		}

		st.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
		if _, err := st.Read(make([]byte, 1)); !isTimeout(err) {
			t.Fatalf("read past its deadline: %v, want a timeout", err)
		}
		st.SetReadDeadline(time.Time{})
		peer.Write([]byte("y"))
		if _, err := io.ReadFull(st, make([]byte, 1)); err != nil {
			t.Fatalf("read after clearing the deadline: %v", err)
		}

		// The peer reads nothing, so the write runs out of window.
		st.SetWriteDeadline(time.Now().Add(100 * time.Millisecond))
		start := time.Now()
		n, err := st.Write(make([]byte, 64<<20))
		if !isTimeout(err) || n == 64<<20 {
			t.Fatalf("write past its deadline: %d bytes, %v; want a timeout", n, err)
		}
		// yamux looks at the deadline only while it waits for window, so
		// the window itself (up to 16 MiB) is written first: slow under
		// the race detector on a busy machine, hence the generous bound.
		if el := time.Since(start); el > 10*time.Second {
			t.Fatalf("write timed out after %v", el)
		}
	})
}

// TestHandshakeRejected: a client that does not trust the server, or has
// no certificate of its own, gets no working session, and the listener
// yields nothing for it; a proper client still gets in afterwards.
func TestHandshakeRejected(t *testing.T) {
	forEachTransport(t, func(t *testing.T, tr transportCase) {
		stls, ctls := testTLS(t)
		_, strangerTLS := testTLS(t)
		ln, err := tr.listen("127.0.0.1:0", stls, testConfig())
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		noCert := ctls.Clone()
		noCert.Certificates = nil
		wrongCA := ctls.Clone()
		wrongCA.RootCAs = strangerTLS.RootCAs
		for _, tc := range []struct {
			name       string
			conf       *tls.Config
			clientSees bool // the client itself rejects the handshake
		}{
			{"wrong CA", wrongCA, true},
			{"no client certificate", noCert, false},
		} {
			t.Run(tc.name, func(t *testing.T) {
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				defer cancel()
				s, err := tr.dial(ctx, ln.Addr().String(), tc.conf, testConfig())
				if tc.clientSees && err == nil {
					s.Close()
					t.Fatal("dial succeeded with a server certificate from an unknown CA")
				}
				if err == nil {
					// In TLS 1.3 the client finishes before the server
					// checks its certificate; the server then ends it.
					select {
					case <-s.Done():
					case <-time.After(3 * time.Second):
						t.Fatal("a session the server refused stayed up")
					}
					s.Close()
				}
				actx, acancel := context.WithTimeout(ctx, 200*time.Millisecond)
				defer acancel()
				if s, err := ln.Accept(actx); err == nil {
					s.Close()
					t.Fatal("the listener accepted a refused peer")
				}
			})
		}
		dialPair(t, ln, func(ctx context.Context) (Session, error) {
			return tr.dial(ctx, ln.Addr().String(), ctls, testConfig())
		})
	})
}

// TestCloseLeavesNoGoroutines: once the listener and both ends of a busy
// session are closed, every goroutine they started has returned.
func TestCloseLeavesNoGoroutines(t *testing.T) {
	forEachTransport(t, func(t *testing.T, tr transportCase) {
		stls, ctls := testTLS(t)
		base := runtime.NumGoroutine()
		ln, err := tr.listen("127.0.0.1:0", stls, testConfig())
		if err != nil {
			t.Fatal(err)
		}
		client, server := dialPair(t, ln, func(ctx context.Context) (Session, error) {
			return tr.dial(ctx, ln.Addr().String(), ctls, testConfig())
		})
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		// Streams in every state: open, half closed, reset, closed.
		for i, end := range []func(Stream) error{
			func(Stream) error { return nil },
			Stream.CloseWrite,
			Stream.Reset,
			Stream.Close,
		} {
			st, err := client.OpenStream(ctx)
			if err != nil {
				t.Fatal(err)
			}
			st.Write([]byte{byte(i)})
			if _, err := server.AcceptStream(ctx); err != nil {
				t.Fatal(err)
			}
			end(st)
		}
		ln.Close() // before the sessions: they outlive it
		client.Close()
		select {
		case <-server.Done():
		case <-time.After(3 * time.Second):
			t.Fatal("server session not done after the client closed")
		}
		server.Close()
		waitGoroutines(t, base)
	})
}

// recorder counts the writes that reach the connection.
type recorder struct {
	net.Conn
	writes [][]byte
}

func (r *recorder) Write(p []byte) (int, error) {
	r.writes = append(r.writes, append([]byte(nil), p...))
	return len(p), nil
}

func TestFrameConnCoalesces(t *testing.T) {
	hdr := func(typ byte, length uint32) []byte {
		return []byte{0, typ, 0, 0, 0, 0, 0, 1, byte(length >> 24), byte(length >> 16), byte(length >> 8), byte(length)}
	}
	for _, tc := range []struct {
		name       string
		writes     [][]byte
		wantWrites []int // sizes of the writes that reach the connection
	}{
		{"data frame", [][]byte{hdr(0, 100), make([]byte, 100)}, []int{112}},
		{"window update alone", [][]byte{hdr(1, 0)}, []int{12}},
		{"ping alone", [][]byte{hdr(2, 0)}, []int{12}},
		{"big data frame", [][]byte{hdr(0, 40000), make([]byte, 40000)}, []int{16384, 40000 - 16372}},
		{"two frames", [][]byte{hdr(0, 5), make([]byte, 5), hdr(1, 0), hdr(0, 7), make([]byte, 7)}, []int{17, 12, 19}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := &recorder{}
			fc := &frameConn{Conn: r, raw: newCorkConn(&recorder{})} // r stands for TLS
			for _, w := range tc.writes {
				if n, err := fc.Write(w); err != nil || n != len(w) {
					t.Fatalf("Write = %d, %v", n, err)
				}
			}
			var got []int
			for _, w := range r.writes {
				got = append(got, len(w))
			}
			if len(got) != len(tc.wantWrites) {
				t.Fatalf("writes %v, want %v", got, tc.wantWrites)
			}
			for i := range got {
				if got[i] != tc.wantWrites[i] {
					t.Fatalf("writes %v, want %v", got, tc.wantWrites)
				}
			}
		})
	}
}

func waitGoroutines(t *testing.T, base int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > base {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<16)
			t.Fatalf("%d goroutines, baseline %d:\n%s", runtime.NumGoroutine(), base, buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestWatchdog(t *testing.T) {
	forEachTransport(t, func(t *testing.T, tr transportCase) {
		client, server := tr.pair(t)
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		t0 := time.Now()
		w := NewWatchdog(server, t0)
		if idle := w.Idle(t0.Add(time.Second)); idle != time.Second {
			t.Fatalf("idle %v with no traffic, want 1s", idle)
		}
		st, err := client.OpenStream(ctx)
		if err != nil {
			t.Fatal(err)
		}
		st.Write([]byte("x"))
		if _, err := server.AcceptStream(ctx); err != nil {
			t.Fatal(err)
		}
		if idle := w.Idle(t0.Add(2 * time.Second)); idle != 0 {
			t.Fatalf("idle %v right after traffic, want 0", idle)
		}
		if idle := w.Idle(t0.Add(5 * time.Second)); idle != 3*time.Second {
			t.Fatalf("idle %v, want 3s", idle)
		}
		// What one side sends the other receives, once it has arrived.
		deadline := time.Now().Add(2 * time.Second)
		for client.Stats().BytesSent != server.Stats().BytesReceived && time.Now().Before(deadline) {
			time.Sleep(5 * time.Millisecond)
		}
		if s := client.Stats(); s.BytesSent == 0 || s.BytesSent != server.Stats().BytesReceived {
			t.Errorf("client sent %d, server received %d", s.BytesSent, server.Stats().BytesReceived)
		}
	})
}

// TestReset: a reset reaches the peer as an error, not a clean end, even
// with data in flight; and it frees the peer's stream.
func TestReset(t *testing.T) {
	forEachTransport(t, func(t *testing.T, tr transportCase) {
		client, server := tr.pair(t)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		for _, tc := range []struct {
			name  string
			write int // bytes the resetting side writes first
		}{
			{"idle stream", 1},
			{"with data in flight", 8 << 20},
		} {
			t.Run(tc.name, func(t *testing.T) {
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
				writeDone := make(chan struct{})
				go func() {
					defer close(writeDone)
					st.Write(make([]byte, tc.write))
				}()
				time.Sleep(20 * time.Millisecond)
				if err := st.Reset(); err != nil {
					t.Fatal(err)
				}
				<-writeDone
				peer.SetReadDeadline(time.Now().Add(5 * time.Second))
				_, err = io.Copy(io.Discard, peer)
				if !errors.Is(err, ErrStreamReset) {
					t.Fatalf("peer read ended with %v, want ErrStreamReset", err)
				}
				if _, err := peer.Write([]byte("y")); !errors.Is(err, ErrStreamReset) {
					t.Fatalf("peer write after reset: %v, want ErrStreamReset", err)
				}
				if _, err := st.Read(make([]byte, 1)); !errors.Is(err, net.ErrClosed) {
					t.Fatalf("local read after Reset: %v, want net.ErrClosed", err)
				}
			})
		}
		// The peer's streams are freed (the control stream of the test aside).
		deadline := time.Now().Add(2 * time.Second)
		for server.NumStreams() > 0 && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
		if n := server.NumStreams(); n != 0 {
			t.Errorf("server still holds %d streams after the resets", n)
		}
	})
}

// TestMaxHandshakes: at the limit the listener stops accepting, and takes
// connections again once handshakes end.
func TestMaxHandshakes(t *testing.T) {
	stls, ctls := testTLS(t)
	cfg := testConfig()
	cfg.MaxHandshakes = 2
	cfg.HandshakeTimeout = 2 * time.Second
	ln, err := ListenTLS("127.0.0.1:0", stls, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	// Two silent peers take both places.
	for range 2 {
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
	}
	time.Sleep(50 * time.Millisecond)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	start := time.Now()
	errc := make(chan error, 1)
	go func() {
		ccfg := testConfig()
		ccfg.HandshakeTimeout = 5 * time.Second
		s, err := DialTLS(ctx, ln.Addr().String(), ctls, ccfg)
		if err == nil {
			s.Close()
		}
		errc <- err
	}()
	s, err := ln.Accept(ctx)
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	// The real agent waited for a silent peer's handshake to time out.
	if el := time.Since(start); el < time.Second {
		t.Fatalf("a third handshake ran after %v, with both places taken", el)
	}
}

// TestInjectBetweenFrames: an injected frame never lands inside a yamux
// frame: it waits for the body of a data frame whose header is held back.
func TestInjectBetweenFrames(t *testing.T) {
	hdr := []byte{0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 3}
	r := &recorder{}
	// r stands for the TLS connection.
	fc := &frameConn{Conn: r, raw: newCorkConn(&recorder{})}
	fc.inject(rstFrame(7)) // idle: written at once
	fc.Write(hdr)
	fc.inject(rstFrame(9)) // a data frame is half written: queued
	if len(r.writes) != 1 {
		t.Fatalf("%d writes, want the first RST only", len(r.writes))
	}
	fc.Write([]byte("abc"))
	want := [][]byte{rstFrame(7), append(append([]byte{}, hdr...), "abc"...), rstFrame(9)}
	if len(r.writes) != len(want) {
		t.Fatalf("writes %x, want %x", r.writes, want)
	}
	for i := range want {
		if !bytes.Equal(r.writes[i], want[i]) {
			t.Fatalf("write %d is %x, want %x", i, r.writes[i], want[i])
		}
	}
}

func TestBindDeadline(t *testing.T) {
	forEachTransport(t, func(t *testing.T, tr transportCase) {
		client, server := tr.pair(t)
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		st, err := client.OpenStream(ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer st.Close()
		st.Write([]byte("x"))
		if _, err := server.AcceptStream(ctx); err != nil {
			t.Fatal(err)
		}
		bctx, bcancel := context.WithCancel(ctx)
		stop := BindDeadline(bctx, st)
		defer stop()
		go func() { time.Sleep(50 * time.Millisecond); bcancel() }()
		start := time.Now()
		_, err = st.Read(make([]byte, 1))
		var ne net.Error
		if !errors.As(err, &ne) || !ne.Timeout() {
			t.Fatalf("read: %v, want a timeout once the context ended", err)
		}
		if el := time.Since(start); el > 2*time.Second {
			t.Fatalf("woke after %v", el)
		}
	})
}

// TestSessionDeathIsNoCleanEnd: when the connection under a session ends,
// a stream's read fails; it never looks like the peer's clean end.
func TestSessionDeathIsNoCleanEnd(t *testing.T) {
	forEachTransport(t, func(t *testing.T, tr transportCase) {
		client, server := tr.pair(t)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		st, err := client.OpenStream(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := st.Write([]byte("hello")); err != nil {
			t.Fatal(err)
		}
		peer, err := server.AcceptStream(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := io.ReadFull(peer, make([]byte, 5)); err != nil {
			t.Fatal(err)
		}
		client.Close()
		peer.SetReadDeadline(time.Now().Add(5 * time.Second))
		_, err = io.ReadAll(peer)
		if err == nil {
			t.Fatal("the peer's stream read a clean end after the connection died")
		}
		if ne, ok := err.(net.Error); ok && ne.Timeout() {
			t.Fatal("the peer's stream read nothing until its deadline")
		}
	})
}

package mux

import (
	"context"
	"errors"
	"net"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestListenBothTransports: one port number, a TLS client and a QUIC client
// both get sessions, and Close leaves nothing running.
func TestListenBothTransports(t *testing.T) {
	stls, ctls := testTLS(t)
	base := runtime.NumGoroutine()
	ln, err := Listen("127.0.0.1:0", stls, testConfig())
	if err != nil {
		t.Fatal(err)
	}
	if got := ln.Transports(); !slices.Equal(got, []string{TransportTLS, TransportQUIC}) {
		t.Fatalf("Transports() = %v", got)
	}
	addrs := ln.Addrs()
	tcp, ok1 := addrs[0].(*net.TCPAddr)
	udp, ok2 := addrs[1].(*net.UDPAddr)
	if !ok1 || !ok2 || tcp.Port != udp.Port || tcp.Port == 0 {
		t.Fatalf("Addrs() = %v, want TCP and UDP on one port", addrs)
	}
	if ln.Addr().String() != tcp.String() {
		t.Errorf("Addr() = %v, want the TCP address %v", ln.Addr(), tcp)
	}

	addr := ln.Addr().String() // one address for both clients
	for _, tr := range transportCases {
		client, server := dialPair(t, ln, func(ctx context.Context) (Session, error) {
			return tr.dial(ctx, addr, ctls, testConfig())
		})
		if server.Transport() != tr.name {
			t.Errorf("%s client: server session over %q", tr.name, server.Transport())
		}
		if len(server.ConnectionState().PeerCertificates) != 1 {
			t.Errorf("%s: no client certificate on the server's session", tr.name)
		}
		client.Close()
		server.Close()
	}

	if err := ln.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := ln.Accept(context.Background()); !errors.Is(err, ErrListenerClosed) {
		t.Fatalf("Accept after Close: %v", err)
	}
	waitGoroutines(t, base)
}

func TestListenOneTransport(t *testing.T) {
	stls, ctls := testTLS(t)
	ln, err := Listen("127.0.0.1:0", stls, testConfig(), TransportQUIC)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	if got := ln.Transports(); !slices.Equal(got, []string{TransportQUIC}) {
		t.Fatalf("Transports() = %v", got)
	}
	if _, ok := ln.Addr().(*net.UDPAddr); !ok {
		t.Fatalf("Addr() = %v, want UDP", ln.Addr())
	}
	dialPair(t, ln, func(ctx context.Context) (Session, error) {
		return DialQUIC(ctx, ln.Addr().String(), ctls, testConfig())
	})
	// Nothing listens on TCP.
	if c, err := net.DialTimeout("tcp", ln.Addr().String(), time.Second); err == nil {
		c.Close()
		t.Error("a QUIC-only listener accepted a TCP connection")
	}
}

func TestListenErrors(t *testing.T) {
	stls, _ := testTLS(t)
	if _, err := Listen("127.0.0.1:0", stls, nil, "tcp"); err == nil || !strings.Contains(err.Error(), `"tcp"`) {
		t.Errorf("unknown transport: %v", err)
	}
	// A fixed port whose UDP side is taken fails, naming QUIC, and leaves
	// the TCP side free again. The same TCP port may be taken by another
	// test running at the same time: then try another port.
	var addr string
	for attempt := 0; ; attempt++ {
		pc, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer pc.Close()
		addr = pc.LocalAddr().String()
		ln, err := Listen(addr, stls, testConfig())
		if err == nil {
			ln.Close()
			t.Skipf("TCP and UDP port %s both free: cannot provoke the clash", addr)
		}
		if strings.Contains(err.Error(), "listen for "+TransportTLS) && attempt < 5 {
			continue
		}
		if !strings.Contains(err.Error(), TransportQUIC) {
			t.Fatalf("error %q does not name the transport", err)
		}
		break
	}
	tl, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("TCP port held after a failed Listen: %v", err)
	}
	tl.Close()
}

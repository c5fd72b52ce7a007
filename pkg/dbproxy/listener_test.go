package dbproxy

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// fakeUpstream records dials and either fails them or relays to an echo.
type fakeUpstream struct {
	dials atomic.Int32
	err   error
}

func (u *fakeUpstream) Dial(ctx context.Context, req *Request) (Backend, error) {
	u.dials.Add(1)
	if u.err != nil {
		return nil, u.err
	}
	a, b := net.Pipe()
	go func() { io.Copy(b, b); b.Close() }()
	return &pipeBackend{Conn: a}, nil
}

type pipeBackend struct{ net.Conn }

func (p *pipeBackend) Sibling(ctx context.Context) (net.Conn, error) {
	return nil, errors.New("no siblings")
}

func (p *pipeBackend) Relay(ctx context.Context, client net.Conn) {
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); io.Copy(p.Conn, client); p.Conn.Close() }()
	io.Copy(client, p.Conn)
	client.Close()
	wg.Wait()
}

func open(t *testing.T, up Upstream, allow ...string) *Listener {
	t.Helper()
	prefixes, err := ParseAllow(allow)
	if err != nil {
		t.Fatal(err)
	}
	l := &Listener{Addr: "127.0.0.1:0", Upstream: up, Logger: slog.New(slog.DiscardHandler)}
	l.SetRoutes([]Route{{Name: "r", Allow: prefixes, Default: true}})
	if err := l.Open(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close(); l.Wait() })
	return l
}

func TestListenerRelays(t *testing.T) {
	up := &fakeUpstream{}
	l := open(t, up)
	c, err := net.Dial("tcp", l.BoundAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.Write([]byte("ping"))
	buf := make([]byte, 4)
	c.SetReadDeadline(time.Now().Add(2 * time.Second))
	if _, err := io.ReadFull(c, buf); err != nil || string(buf) != "ping" {
		t.Fatalf("got %q, %v", buf, err)
	}
	if up.dials.Load() != 1 {
		t.Fatalf("%d dials, want 1", up.dials.Load())
	}
}

// TestAllowBeforeRead: a client outside Allow is closed and the upstream is
// never asked for a backend.
func TestAllowBeforeRead(t *testing.T) {
	for _, tc := range []struct {
		name  string
		allow []string
		dials int32
	}{
		{"outside", []string{"10.0.0.0/8", "::1"}, 0},
		{"inside, CIDR", []string{"127.0.0.0/8"}, 1},
		{"inside, single address", []string{"127.0.0.1"}, 1},
		{"no list", nil, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			up := &fakeUpstream{}
			l := open(t, up, tc.allow...)
			c, err := net.Dial("tcp", l.BoundAddr().String())
			if err == nil {
				c.Write([]byte("x"))
				c.SetReadDeadline(time.Now().Add(2 * time.Second))
				io.ReadFull(c, make([]byte, 1))
				c.Close()
			}
			deadline := time.Now().Add(time.Second)
			for up.dials.Load() != tc.dials && time.Now().Before(deadline) {
				time.Sleep(5 * time.Millisecond)
			}
			if got := up.dials.Load(); got != tc.dials {
				t.Fatalf("%d dials, want %d", got, tc.dials)
			}
		})
	}
}

func TestUpstreamErrorClosesClient(t *testing.T) {
	up := &fakeUpstream{err: &RouteError{Code: ErrAgentOffline, Agent: "a", Reason: "agent \"a\" is not connected"}}
	l := open(t, up)
	c, err := net.Dial("tcp", l.BoundAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetReadDeadline(time.Now().Add(2 * time.Second))
	n, err := c.Read(make([]byte, 1))
	var ne net.Error
	if n != 0 || errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("client not closed: %d, %v", n, err)
	}
}

// TestCloseKeepsSessions: Close stops accepting, sessions in progress go on.
func TestCloseKeepsSessions(t *testing.T) {
	l := open(t, &fakeUpstream{})
	c, err := net.Dial("tcp", l.BoundAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.Write([]byte("a"))
	io.ReadFull(c, make([]byte, 1))
	l.Close()
	if c2, err := net.DialTimeout("tcp", l.BoundAddr().String(), time.Second); err == nil {
		c2.Close()
		t.Fatal("still accepting after Close")
	}
	c.Write([]byte("b"))
	buf := make([]byte, 1)
	c.SetReadDeadline(time.Now().Add(2 * time.Second))
	if _, err := io.ReadFull(c, buf); err != nil || buf[0] != 'b' {
		t.Fatalf("session ended with the listener: %q %v", buf, err)
	}
}

func TestParseAllow(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want string
		err  bool
	}{
		{"10.0.0.0/8", "10.0.0.0/8", false},
		{"10.1.2.3/8", "10.0.0.0/8", false},
		{"192.0.2.7", "192.0.2.7/32", false},
		{"::1", "::1/128", false},
		{"10.0.0.0/99", "", true},
		{"db.internal", "", true},
		{"", "", true},
	} {
		t.Run(tc.in, func(t *testing.T) {
			got, err := ParseAllow([]string{tc.in})
			if tc.err {
				if err == nil {
					t.Fatalf("ParseAllow(%q) = %v, want an error", tc.in, got)
				}
				return
			}
			if err != nil || len(got) != 1 || got[0] != netip.MustParsePrefix(tc.want) {
				t.Fatalf("ParseAllow(%q) = %v, %v; want %s", tc.in, got, err, tc.want)
			}
		})
	}
}

func TestUnsupportedProtocol(t *testing.T) {
	l := &Listener{Addr: "127.0.0.1:0", Protocol: "smtp", Upstream: &fakeUpstream{}}
	if err := l.Open(context.Background()); err == nil {
		l.Close()
		t.Fatal("opened a listener for an unknown protocol")
	}
}

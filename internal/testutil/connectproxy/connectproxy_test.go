package connectproxy

import (
	"context"
	"errors"
	"io"
	"net"
	"net/url"
	"slices"
	"testing"
	"time"

	"github.com/tunnelrelay/tunnel/internal/testutil/tcptest"
	"github.com/tunnelrelay/tunnel/pkg/mux"
)

// TestProxy: CONNECT through a name only the proxy knows reaches the
// target, and is recorded; wrong credentials get 407, Refuse its status.
func TestProxy(t *testing.T) {
	_, port, _ := net.SplitHostPort(tcptest.Echo(t))
	target := net.JoinHostPort("tunnel.test", port)
	p := New(t, Options{User: "u", Password: "pw", Hosts: map[string]string{"tunnel.test": "127.0.0.1"}})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	dial := func(u *url.URL) (net.Conn, error) {
		return (&mux.HTTPProxy{URL: u}).DialContext(ctx, "tcp", target)
	}

	c, err := dial(p.URL())
	if err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(5 * time.Second))
	io.WriteString(c, "ping")
	c.(interface{ CloseWrite() error }).CloseWrite()
	if b, err := io.ReadAll(c); err != nil || string(b) != "ping" {
		t.Fatalf("echo %q, %v", b, err)
	}
	c.Close()

	var pe *mux.ProxyError
	wrong := p.URL()
	wrong.User = url.UserPassword("u", "nope")
	if _, err := dial(wrong); !errors.As(err, &pe) || pe.StatusCode != 407 {
		t.Fatalf("wrong credentials: %v, want 407", err)
	}
	p.Refuse("403 Forbidden")
	if _, err := dial(p.URL()); !errors.As(err, &pe) || pe.StatusCode != 403 {
		t.Fatalf("refusing: %v, want 403", err)
	}
	if got, want := p.Targets(), []string{target, target, target}; !slices.Equal(got, want) {
		t.Fatalf("targets %q, want %q", got, want)
	}
}

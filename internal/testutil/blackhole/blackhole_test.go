package blackhole

import (
	"errors"
	"net"
	"syscall"
	"testing"
	"time"

	"github.com/tunnelrelay/tunnel/internal/testutil/leakcheck"
)

func TestListenDialTimesOut(t *testing.T) {
	leakcheck.Check(t)
	addr := Listen(t)
	for i := range 3 { // every connect hangs, not just the first
		start := time.Now()
		c, err := net.DialTimeout("tcp", addr, 300*time.Millisecond)
		if err == nil {
			c.Close()
			t.Fatalf("dial %d to %s connected", i, addr)
		}
		if !IsTimeout(err) {
			t.Fatalf("dial %d to %s: %v, want a timeout", i, addr, err)
		}
		if took := time.Since(start); took < 300*time.Millisecond {
			t.Fatalf("dial %d timed out after %v, before its timeout", i, took)
		}
	}
}

func TestRefusedAddr(t *testing.T) {
	leakcheck.Check(t)
	addr := RefusedAddr(t)
	for i := range 3 {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			t.Fatalf("dial %d to %s connected", i, addr)
		}
		if !errors.Is(err, syscall.ECONNREFUSED) {
			t.Fatalf("dial %d to %s: %v, want connection refused", i, addr, err)
		}
	}
	if l, err := net.Listen("tcp", addr); err == nil {
		l.Close()
		t.Fatalf("another listener could bind the reserved %s", addr)
	}
}

func TestCloseReleases(t *testing.T) {
	leakcheck.Check(t)
	for name, open := range map[string]func() (*Port, error){"Open": Open, "OpenRefused": OpenRefused} {
		t.Run(name, func(t *testing.T) {
			p, err := open()
			if err != nil {
				t.Fatal(err)
			}
			if err := p.Close(); err != nil {
				t.Fatalf("Close: %v", err)
			}
			if err := p.Close(); err != nil {
				t.Fatalf("second Close: %v", err)
			}
			l, err := net.Listen("tcp", p.Addr())
			if err != nil {
				t.Fatalf("port not released: %v", err)
			}
			l.Close()
		})
	}
}

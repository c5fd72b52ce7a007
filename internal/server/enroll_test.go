package server

import (
	"net/netip"
	"testing"
	"time"
)

func TestFailLimiter(t *testing.T) {
	var l failLimiter
	a := netip.MustParseAddr("192.0.2.1")
	b := netip.MustParseAddr("192.0.2.2")
	now := time.Unix(1_000_000, 0)
	for i := range enrollFailLimit {
		if !l.allow(a, now) {
			t.Fatalf("attempt %d refused, want %d allowed", i+1, enrollFailLimit)
		}
		l.fail(a, now)
	}
	if l.allow(a, now.Add(enrollFailWindow-time.Second)) {
		t.Error("an address over the limit may try again within the window")
	}
	if !l.allow(b, now) {
		t.Error("another address is refused")
	}
	if !l.allow(a, now.Add(enrollFailWindow)) {
		t.Error("the address is still refused after the window")
	}
	l.fail(a, now.Add(enrollFailWindow))
	if !l.allow(a, now.Add(enrollFailWindow)) {
		t.Error("one failure in a new window refused the address")
	}

	t.Run("bounded", func(t *testing.T) {
		var l failLimiter
		for i := range 3 * enrollFailTrack {
			l.fail(netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}), now)
		}
		if n := len(l.fails); n > enrollFailTrack {
			t.Errorf("%d addresses tracked, want at most %d", n, enrollFailTrack)
		}
	})
}

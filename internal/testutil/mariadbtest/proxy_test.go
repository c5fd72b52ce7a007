package mariadbtest

import (
	"context"
	"database/sql"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"
)

// These tests back the package documentation's account of how MariaDB
// treats PROXY protocol headers. The headers are written by hand from the
// HAProxy specification (proxy-protocol.txt), so the tests depend on no
// PROXY implementation, ours included.

// v2Sig is the 12-byte signature that starts a v2 header.
const v2Sig = "\r\n\r\n\x00\r\nQUIT\n"

// Bytes 13 and 14 of a v2 header.
const (
	v2Local = 0x20 // version 2, command LOCAL
	v2Proxy = 0x21 // version 2, command PROXY

	famUnspec = 0x00
	famTCP4   = 0x11
	famTCP6   = 0x21
)

// v2Header builds a v2 header; src and dst are left out when invalid (for
// AF_UNSPEC), and their family picks TCP over IPv4 or IPv6 otherwise.
func v2Header(cmd byte, src, dst netip.AddrPort) []byte {
	h := []byte(v2Sig)
	var body []byte
	fam := byte(famUnspec)
	if src.IsValid() {
		fam = famTCP4
		if src.Addr().Is6() {
			fam = famTCP6
		}
		body = append(body, src.Addr().AsSlice()...)
		body = append(body, dst.Addr().AsSlice()...)
		body = binary.BigEndian.AppendUint16(body, src.Port())
		body = binary.BigEndian.AppendUint16(body, dst.Port())
	}
	h = append(h, cmd, fam)
	h = binary.BigEndian.AppendUint16(h, uint16(len(body)))
	return append(h, body...)
}

// v1Header builds a v1 "PROXY TCP4|TCP6 ..." line.
func v1Header(src, dst netip.AddrPort) []byte {
	proto := "TCP4"
	if src.Addr().Is6() {
		proto = "TCP6"
	}
	return fmt.Appendf(nil, "PROXY %s %s %s %d %d\r\n", proto, src.Addr(), dst.Addr(), src.Port(), dst.Port())
}

// headerDialer returns a go-sql-driver dial function that sends header on
// each new connection before the MySQL protocol starts, as a proxy would;
// when split > 0, in two writes 50 ms apart, the first of split bytes. Each
// connection's local address (what the server sees without a header) goes
// to locals.
func headerDialer(header []byte, split int, locals chan<- netip.AddrPort) func(ctx context.Context, network, addr string) (net.Conn, error) {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		var d net.Dialer
		c, err := d.DialContext(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		select {
		case locals <- c.LocalAddr().(*net.TCPAddr).AddrPort():
		default:
		}
		parts := [][]byte{header}
		if split > 0 {
			parts = [][]byte{header[:split], header[split:]}
		}
		c.SetWriteDeadline(time.Now().Add(5 * time.Second))
		for i, p := range parts {
			if i > 0 {
				time.Sleep(50 * time.Millisecond)
			}
			if _, err := c.Write(p); err != nil {
				c.Close()
				return nil, err
			}
		}
		c.SetWriteDeadline(time.Time{})
		return c, nil
	}
}

// connectWithHeader opens one connection to dsn that starts with header and
// returns it with the connection's own local address.
func connectWithHeader(t *testing.T, dsn string, header []byte, split int) (*sql.Conn, netip.AddrPort, error) {
	t.Helper()
	locals := make(chan netip.AddrPort, 1)
	db := openDB(t, dsn, headerDialer(header, split, locals))
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	conn, err := db.Conn(ctx)
	var local netip.AddrPort
	select {
	case local = <-locals:
	default:
	}
	if err != nil {
		return nil, local, err
	}
	t.Cleanup(func() { conn.Close() })
	return conn, local, nil
}

// refusal sends header to addr, in two writes when split > 0 (the first
// split bytes, then after the server's greeting and a pause the rest), and
// returns the number and message of the error packet the server answers
// with. MariaDB checks the header as soon as it reads it, before the
// client's handshake response, and then sends the error, so go-sql-driver
// (which finds the error behind the greeting and reports "busy buffer")
// cannot show it; this reads the packets by hand.
func refusal(t *testing.T, addr string, header []byte, split int) (uint16, string) {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	first, rest := header, []byte(nil)
	if split > 0 {
		first, rest = header[:split], header[split:]
	}
	if _, err := c.Write(first); err != nil {
		t.Fatal(err)
	}
	greeting, err := readPacket(c)
	if err != nil || len(greeting) == 0 || greeting[0] != 10 {
		t.Fatalf("server greeting: %q, %v", greeting, err)
	}
	if rest != nil {
		// The server reads once it has sent the greeting; let it read the
		// first part alone.
		time.Sleep(200 * time.Millisecond)
		if _, err := c.Write(rest); err != nil {
			t.Fatal(err)
		}
	}
	c.SetDeadline(time.Now().Add(5 * time.Second))
	p, err := readPacket(c)
	if err != nil {
		t.Fatalf("no answer to the header (the server waits for a handshake, so it took the header): %v", err)
	}
	// Error packet: 0xff, number (2 bytes), '#', SQLSTATE (5 bytes), message.
	if len(p) < 9 || p[0] != 0xff {
		t.Fatalf("answer to the header is not an error packet: %q", p)
	}
	return binary.LittleEndian.Uint16(p[1:3]), string(p[9:])
}

// readPacket reads one MySQL protocol packet: a 3-byte little-endian
// length, a sequence number, the payload.
func readPacket(r io.Reader) ([]byte, error) {
	var h [4]byte
	if _, err := io.ReadFull(r, h[:]); err != nil {
		return nil, err
	}
	p := make([]byte, int(h[0])|int(h[1])<<8|int(h[2])<<16)
	_, err := io.ReadFull(r, p)
	return p, err
}

var (
	claimed4 = netip.MustParseAddrPort("192.0.2.7:4567")
	claimed6 = netip.MustParseAddrPort("[2001:db8::5]:999")
	dst4     = netip.MustParseAddrPort("127.0.0.1:3306")
	dst6     = netip.MustParseAddrPort("[::1]:3306")
)

// mysqlErr returns the server's error number in err, or 0.
func mysqlErr(err error) uint16 {
	var merr *mysql.MySQLError
	if errors.As(err, &merr) {
		return merr.Number
	}
	return 0
}

func TestProxyProtocolTrusted(t *testing.T) {
	s := Start(t, Options{ProxyProtocolNetworks: "127.0.0.1/32"})
	if got := s.Query(t, "", "select @@proxy_protocol_networks"); got != "127.0.0.1/32" {
		t.Fatalf("proxy_protocol_networks = %q", got)
	}

	accepted := []struct {
		name   string
		header []byte
		split  int            // > 0: send the header in two writes, the first of split bytes
		want   netip.AddrPort // zero: the TCP peer address
	}{
		{name: "no header"},
		{name: "v1 TCP4", header: v1Header(claimed4, dst4), want: claimed4},
		{name: "v1 TCP6", header: v1Header(claimed6, dst6), want: claimed6},
		{name: "v1 in two writes", header: v1Header(claimed4, dst4), split: 20, want: claimed4},
		{name: "v1 UNKNOWN", header: []byte("PROXY UNKNOWN\r\n")},
		{name: "v2 TCP4", header: v2Header(v2Proxy, claimed4, dst4), want: claimed4},
		{name: "v2 TCP6", header: v2Header(v2Proxy, claimed6, dst6), want: claimed6},
		{name: "v2 split after 4 bytes", header: v2Header(v2Proxy, claimed4, dst4), split: 4, want: claimed4},
		{name: "v2 split after the fixed part", header: v2Header(v2Proxy, claimed4, dst4), split: 16, want: claimed4},
		{name: "v2 LOCAL with addresses", header: v2Header(v2Local, claimed4, dst4)},
		{name: "v2 LOCAL UNSPEC", header: v2Header(v2Local, netip.AddrPort{}, netip.AddrPort{})},
	}
	for _, tt := range accepted {
		t.Run(tt.name, func(t *testing.T) {
			conn, local, err := connectWithHeader(t, s.DSN(), tt.header, tt.split)
			if err != nil {
				t.Fatalf("connect: %v", err)
			}
			want := tt.want
			if !want.IsValid() {
				want = local
			}
			if got := ClientAddr(t, conn); got != want {
				t.Fatalf("server sees %v, want %v (TCP peer %v)", got, want, local)
			}
		})
	}

	refused := []struct {
		name   string
		header []byte
		split  int
	}{
		{name: "v2 PROXY UNSPEC", header: v2Header(v2Proxy, netip.AddrPort{}, netip.AddrPort{})},
		{name: "v2 split in the fixed part", header: v2Header(v2Proxy, claimed4, dst4), split: 8},
		{name: "not a header", header: []byte("PROXY NONSENSE\r\n")},
	}
	for _, tt := range refused {
		t.Run(tt.name, func(t *testing.T) {
			num, msg := refusal(t, s.Addr(), tt.header, tt.split)
			if num != 1105 || msg != "Failed to parse proxy header" {
				t.Fatalf("server answered %d %q, want 1105 \"Failed to parse proxy header\"", num, msg)
			}
		})
	}
}

func TestProxyProtocolUntrusted(t *testing.T) {
	tests := []struct {
		name     string
		networks string
	}{
		{"unset", ""},
		{"other network", "192.0.2.0/24"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := Start(t, Options{ProxyProtocolNetworks: tt.networks})
			for _, h := range []struct {
				name   string
				header []byte
			}{
				{"v1", v1Header(claimed4, dst4)},
				{"v2", v2Header(v2Proxy, claimed4, dst4)},
			} {
				num, msg := refusal(t, s.Addr(), h.header, 0)
				if want := "Proxy header is not accepted from 127.0.0.1"; num != 1130 || msg != want {
					t.Errorf("%s header from 127.0.0.1: server answered %d %q, want 1130 %q", h.name, num, msg, want)
				}
			}
			conn, local, err := connectWithHeader(t, s.DSN(), nil, 0)
			if err != nil {
				t.Fatalf("connect without a header: %v", err)
			}
			if got := ClientAddr(t, conn); got != local {
				t.Fatalf("server sees %v, want the TCP peer %v", got, local)
			}
		})
	}
}

// TestProxyProtocolAccount checks that the address from the header is the
// one accounts are matched against, not the TCP peer.
func TestProxyProtocolAccount(t *testing.T) {
	s := Start(t, Options{ProxyProtocolNetworks: "127.0.0.1"})
	s.Query(t, "", "CREATE USER 'local'@'127.0.0.1' IDENTIFIED BY 'pw'")
	dsn := "local:pw@tcp(" + s.Addr() + ")/"

	if _, _, err := connectWithHeader(t, dsn, nil, 0); err != nil {
		t.Fatalf("'local'@'127.0.0.1' without a header: %v", err)
	}
	_, _, err := connectWithHeader(t, dsn, v2Header(v2Proxy, claimed4, dst4), 0)
	if mysqlErr(err) != 1045 {
		t.Fatalf("'local'@'127.0.0.1' with a header from %v: %v, want access denied (1045)", claimed4.Addr(), err)
	}
}

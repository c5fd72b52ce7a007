package dbproxy

// Fuzz targets for everything the front door reads from a client before it
// trusts it: startup-phase packets, the route named in them, cancel keys,
// TLS server names, and the error packets it writes back. Run one with
//
//	go test -run='^$' -fuzz=FuzzReadStartupPacket -fuzztime=60s ./pkg/dbproxy/
//
// Plain go test runs the seeds only.

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"io"
	"log/slog"
	"net"
	"slices"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

// routePrefixes are the forms of an options word that names a route: bare,
// and as PostgreSQL writes a setting ("--NAME=VALUE", "-cNAME=VALUE"; the
// two-word "-c NAME=VALUE" ends in a bare one).
var routePrefixes = []string{RouteParameter + "=", "--" + RouteParameter + "=", "-c" + RouteParameter + "="}

// routeOf returns the route an options word, as written, names.
func routeOf(w string) (string, bool) {
	u := unescapeOption(w)
	for _, p := range routePrefixes {
		if v, ok := strings.CutPrefix(u, p); ok {
			return v, true
		}
	}
	return "", false
}

func isRouteWord(w string) bool {
	_, ok := routeOf(w)
	return ok
}

// withoutRoutes returns the words of an options value that must reach the
// database: all but the route words, and a "-c" just before a bare one.
func withoutRoutes(words []string) []string {
	var out []string
	for i, w := range words {
		if isRouteWord(w) {
			continue
		}
		if unescapeOption(w) == "-c" && i+1 < len(words) && strings.HasPrefix(unescapeOption(words[i+1]), RouteParameter+"=") {
			continue
		}
		out = append(out, w)
	}
	return out
}

func countRouteWords(opts string) int {
	n := 0
	for _, w := range splitOptions(opts) {
		if isRouteWord(w) {
			n++
		}
	}
	return n
}

// withoutSeparators returns opts without the characters that separate
// options words (white space as C's isspace, not escaped by a backslash): what
// the words of opts, put end to end, must spell.
func withoutSeparators(opts string) string {
	var b strings.Builder
	escaped := false
	for i := 0; i < len(opts); i++ {
		c := opts[i]
		if !escaped && strings.IndexByte(" \t\n\v\f\r", c) >= 0 {
			continue
		}
		escaped = !escaped && c == '\\'
		b.WriteByte(c)
	}
	return b.String()
}

func FuzzReadStartupPacket(f *testing.F) {
	f.Add(startupBytes("user", "u", "database", "d"))
	f.Add(startupBytes("user", "u", RouteParameter, "beta", "options", "-c geqo=off tunnel_route=beta"))
	f.Add(startupBytes("options", "tunnel_route=a tunnel_route=b", "options", `tunnel\_route=c`, RouteParameter, ""))
	f.Add(startupBytes())
	f.Add(startupHeader(8, pgSSLRequestCode))
	f.Add(startupHeader(8, pgGSSENCRequestCode))
	f.Add(cancelRequest{pid: 7, key: []byte{1, 2, 3, 4}}.encode())
	f.Add(startupHeader(0x7fffffff, 3<<16))
	f.Add(startupHeader(pgMaxStartupLen+1, 3<<16))
	f.Add(startupHeader(7, 3<<16))
	f.Add([]byte{0, 0, 0})
	f.Add(append(startupBytes("user", "u"), "trailing"...))
	f.Add(append(startupHeader(13, 3<<16), "user\x00"...))
	f.Add(append(startupHeader(0, 3<<16), "options\x00-c a=b\ttunnel_route=x\x00\x00"...))
	f.Add(append(startupHeader(0, 3<<16), "options\x00tunnel_route=\x00options\x00\x00\x00"...))
	f.Fuzz(func(t *testing.T, data []byte) {
		checkStartupPacket(t, data)
		// Random bytes rarely carry their own length; with it mended the
		// fuzzer can reach the parameters too.
		if n := len(data); n >= 8 && n <= pgMaxStartupLen && binary.BigEndian.Uint32(data) != uint32(n) {
			checkStartupPacket(t, append(binary.BigEndian.AppendUint32(nil, uint32(n)), data[4:]...))
		}
	})
}

// checkStartupPacket reads a client's first bytes, data, as the listener
// does, and checks the packet read, its parameters, and what is left of them
// once the route is taken out.
func checkStartupPacket(t *testing.T, data []byte) {
	t.Helper()
	r := bytes.NewReader(data)
	code, payload, err := readStartupPacket(r, nil)
	consumed := len(data) - r.Len()

	// The listener reads one byte first, to spot direct TLS; that must not
	// change the outcome.
	if len(data) > 0 {
		code1, payload1, err1 := readStartupPacket(bytes.NewReader(data[1:]), data[:1])
		if code1 != code || !bytes.Equal(payload1, payload) || (err1 == nil) != (err == nil) ||
			errors.Is(err1, errPgPacketLength) != errors.Is(err, errPgPacketLength) {
			t.Fatalf("with the first byte read apart: %d %q %v; without: %d %q %v", code1, payload1, err1, code, payload, err)
		}
	}
	if err != nil {
		if errors.Is(err, errPgPacketLength) && consumed != 8 {
			t.Fatalf("refused a length after reading %d bytes, want the 8 of the header", consumed)
		}
		return
	}
	if cap(payload) > pgMaxStartupLen-8 {
		t.Fatalf("payload of %d bytes (capacity %d), more than a startup packet may have", len(payload), cap(payload))
	}
	if want := binary.BigEndian.Uint32(data); consumed != 8+len(payload) || uint32(consumed) != want {
		t.Fatalf("read %d bytes for a packet of length %d with a %d-byte payload", consumed, want, len(payload))
	}
	packet := data[:consumed]

	if code == pgCancelRequestCode {
		if req, err := parseCancel(payload); err == nil && !bytes.Equal(req.encode(), packet) {
			t.Fatalf("cancel request %x encodes as %x", packet, req.encode())
		}
	}

	sm, err := parseStartup(code, payload)
	if err != nil {
		return
	}
	if got := sm.encode(); !bytes.Equal(got, packet) {
		t.Fatalf("parsed and encoded again:\n got %q\nwant %q", got, packet)
	}
	checkTakeRoute(t, sm, len(packet))
}

// checkTakeRoute takes the route out of sm and checks what is left, and
// that the rewritten message is no longer than the client's packet of
// size bytes (the database has the same limit on it).
func checkTakeRoute(t *testing.T, sm *startupMessage, size int) {
	t.Helper()
	orig := slices.Clone(sm.params)
	route, changed := sm.takeRoute()

	named := false // a route named anywhere in the packet
	var names []string
	var others, origOptions []pgParam
	for _, p := range orig {
		switch p.name {
		case RouteParameter:
			named = true
			names = append(names, p.value)
		case "options":
			origOptions = append(origOptions, p)
			for _, w := range splitOptions(p.value) {
				if v, ok := routeOf(w); ok {
					named = true
					names = append(names, v)
				}
			}
		default:
			others = append(others, p)
		}
	}
	if changed != named {
		t.Fatalf("takeRoute changed %v, but a route was named: %v (params %q)", changed, named, orig)
	}
	if route != "" && !slices.Contains(names, route) {
		t.Fatalf("route %q named nowhere in %q", route, orig)
	}

	var leftOthers, leftOptions []pgParam
	for _, p := range sm.params {
		switch p.name {
		case RouteParameter:
			t.Fatalf("%s left in %q", RouteParameter, sm.params)
		case "options":
			leftOptions = append(leftOptions, p)
		default:
			leftOthers = append(leftOthers, p)
		}
	}
	if !slices.Equal(leftOthers, others) {
		t.Fatalf("other parameters changed: %q, were %q", leftOthers, others)
	}
	// Each options parameter keeps its words but the first route word;
	// one left with no word is dropped.
	i := 0
	for _, p := range origOptions {
		if countRouteWords(p.value) == 0 {
			if i >= len(leftOptions) || leftOptions[i] != p {
				t.Fatalf("options %q without a route word changed: left %q", p.value, leftOptions)
			}
			i++
			continue
		}
		want := withoutRoutes(splitOptions(p.value))
		if len(want) == 0 {
			continue // dropped: it had nothing but routes
		}
		if i >= len(leftOptions) || !slices.Equal(splitOptions(leftOptions[i].value), want) {
			t.Fatalf("options %q: left %q, want the words %q", p.value, leftOptions, want)
		}
		i++
	}
	if i != len(leftOptions) {
		t.Fatalf("options left %q, from %q", leftOptions, origOptions)
	}

	out := sm.encode()
	if len(out) > size {
		t.Fatalf("rewritten startup message of %d bytes, from %d", len(out), size)
	}
	again, err := parseStartup(binary.BigEndian.Uint32(out[4:]), out[8:])
	if err != nil || !slices.Equal(again.params, sm.params) || binary.BigEndian.Uint32(out) != uint32(len(out)) {
		t.Fatalf("rewritten startup message %q does not parse back: %v", out, err)
	}
}

func FuzzRouteFromOptions(f *testing.F) {
	for _, s := range []string{
		"", "tunnel_route=a", "-c geqo=off tunnel_route=beta -c work_mem=1MB",
		`tunnel\_route=a\ b`, `tunnel_route=a\`, "\t\r\n tunnel_route=x \n",
		"tunnel_route=a tunnel_route=b", "-c tunnel_route=x", "--tunnel_route=x",
		`-c search_path=a\ b`, `\\\\ \`, "tunnel_route=\xff\x00",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, opts string) {
		words := splitOptions(opts)
		for _, w := range words {
			if w == "" {
				t.Fatalf("splitOptions(%q) has an empty word: %q", opts, words)
			}
		}
		if got, want := strings.Join(words, ""), withoutSeparators(opts); got != want {
			t.Fatalf("splitOptions(%q) = %q, which spell %q, want %q", opts, words, got, want)
		}

		route, rest, ok := routeFromOptions(opts)
		first := slices.IndexFunc(words, isRouteWord)
		if ok != (first >= 0) {
			t.Fatalf("routeFromOptions(%q) ok = %v, words %q", opts, ok, words)
		}
		if ok {
			if want, _ := routeOf(words[first]); route != want {
				t.Fatalf("routeFromOptions(%q) = %q, but the first route word is %q", opts, route, words[first])
			}
		} else if route != "" {
			t.Fatalf("routeFromOptions(%q) = %q without a route word", opts, route)
		}
		// rest is what the database gets: every other word, whole and in
		// order, and no route in any form.
		if got, want := splitOptions(rest), withoutRoutes(words); !slices.Equal(got, want) {
			t.Fatalf("routeFromOptions(%q) leaves %q, words %q; want %q", opts, rest, got, want)
		}
		if len(rest) > len(opts) {
			t.Fatalf("routeFromOptions(%q) leaves %q, longer", opts, rest)
		}
		if _, rest2, ok2 := routeFromOptions(rest); ok2 || rest2 != rest {
			t.Fatalf("routeFromOptions(%q) leaves %q, which still names a route", opts, rest)
		}
	})
}

func FuzzParseCancel(f *testing.F) {
	f.Add([]byte{0, 0, 0, 7, 1, 2, 3, 4})
	f.Add(append([]byte{0x7f, 0xff, 0xff, 0xff}, make([]byte, pgMaxCancelKeyLen)...))
	f.Add(append([]byte{0, 0, 0, 7}, make([]byte, pgMaxCancelKeyLen+1)...))
	f.Add([]byte{0, 0, 0, 7, 1, 2, 3})
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, payload []byte) {
		req, err := parseCancel(payload)
		if ok := len(payload) >= 8 && len(payload) <= 4+pgMaxCancelKeyLen; ok != (err == nil) {
			t.Fatalf("parseCancel of %d bytes: %v", len(payload), err)
		}
		if err != nil {
			return
		}
		if len(req.key) < 4 || len(req.key) > pgMaxCancelKeyLen {
			t.Fatalf("key of %d bytes", len(req.key))
		}
		enc := req.encode()
		code, back, err := readStartupPacket(bytes.NewReader(enc), nil)
		if err != nil || code != pgCancelRequestCode || !bytes.Equal(back, payload) {
			t.Fatalf("cancel request %x encodes as %x, which reads back as %d %x %v", payload, enc, code, back, err)
		}
	})
}

func FuzzParseBackendKeyData(f *testing.F) {
	f.Add([]byte{0, 0, 0x10, 0x92, 1, 2, 3, 4})
	f.Add(append([]byte{0xff, 0xff, 0xff, 0xff}, make([]byte, pgMaxCancelKeyLen)...))
	f.Add(append([]byte{0, 0, 0, 1}, make([]byte, pgMaxCancelKeyLen+1)...))
	f.Add([]byte{0, 0, 0, 1})
	f.Fuzz(func(t *testing.T, payload []byte) {
		k, err := parseBackendKeyData(payload)
		if ok := len(payload) >= 8 && len(payload) <= 4+pgMaxCancelKeyLen; ok != (err == nil) {
			t.Fatalf("parseBackendKeyData of %d bytes: %v", len(payload), err)
		}
		if err != nil {
			return
		}
		prefix := []byte("Z\x00\x00\x00\x05I")
		msg := appendBackendKeyData(slices.Clone(prefix), k)
		if !bytes.HasPrefix(msg, prefix) {
			t.Fatalf("the bytes before the message changed: %x", msg)
		}
		msg = msg[len(prefix):]
		if msg[0] != 'K' || binary.BigEndian.Uint32(msg[1:]) != uint32(len(msg)-1) || !bytes.Equal(msg[5:], payload) {
			t.Fatalf("BackendKeyData %x encodes as %x", payload, msg)
		}
		// The key outlives the buffer it was read from.
		want := bytes.Clone(k.key)
		for i := range payload {
			payload[i] ^= 0xff
		}
		if !bytes.Equal(k.key, want) {
			t.Fatal("the key shares memory with the message")
		}
	})
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= utf8.RuneSelf {
			return false
		}
	}
	return true
}

// lowerASCII folds case as DNS does (RFC 4343): A-Z only.
func lowerASCII(s string) string {
	b := []byte(s)
	for i, c := range b {
		if 'A' <= c && c <= 'Z' {
			b[i] = c + 'a' - 'A'
		}
	}
	return string(b)
}

func FuzzRouteFromServerName(f *testing.F) {
	for _, c := range [][2]string{
		{"sales.db.example.com", "db.example.com"},
		{"SALES.DB.EXAMPLE.COM.", ".db.example.com."},
		{"a.b.db.example.com", "db.example.com"},
		{"db.example.com", "db.example.com"},
		{".db.example.com", "db.example.com"},
		{"salesdb.example.com", "db.example.com"},
		{"x.", "."},
		{"..", ""},
		{"a..b", "b"},
		{".a.b", "b"},
		{"\xff.k", "\u212a"},
	} {
		f.Add(c[0], c[1])
	}
	f.Fuzz(func(t *testing.T, name, domain string) {
		label, ok := RouteFromServerName(name, domain)
		n := strings.TrimSuffix(name, ".")
		d := strings.TrimPrefix(strings.TrimSuffix(domain, "."), ".")
		if !ok {
			if label != "" {
				t.Fatalf("RouteFromServerName(%q, %q) = %q without ok", name, domain, label)
			}
		} else {
			if label == "" || strings.Contains(label, ".") {
				t.Fatalf("RouteFromServerName(%q, %q) = %q, not one label", name, domain, label)
			}
			if !strings.HasPrefix(n, label+".") {
				t.Fatalf("RouteFromServerName(%q, %q) = %q, not the first label", name, domain, label)
			}
			if d == "" || len(n) <= len(d) || !strings.EqualFold(n[len(n)-len(d)-1:], "."+d) {
				t.Fatalf("RouteFromServerName(%q, %q) = %q, but the name is not under the domain", name, domain, label)
			}
		}
		// For a DNS domain the answer is exact: any name under it whose
		// first label is not empty, with case folded as DNS does.
		if isASCII(d) {
			first, _, _ := strings.Cut(n, ".")
			want := d != "" && first != "" && len(n) > len(d)+1 && strings.HasSuffix(lowerASCII(n), "."+lowerASCII(d))
			if ok != want {
				t.Fatalf("RouteFromServerName(%q, %q) = %q, %v; want ok %v", name, domain, label, ok, want)
			}
		}
	})
}

func FuzzAppendErrorResponse(f *testing.F) {
	f.Add(sqlstateProtocolViolation, "invalid length of startup packet", "", "")
	f.Add(sqlstateInvalidCatalogName, "no route \"\xff\xfe\x00x\"", "d\x00", "\x00")
	f.Add("", "", "", "")
	f.Add("08\x0006", "\xc3\x00\xa9", "\xed\xa0\x80", "\xf4\x90\x80\x80")
	f.Add(sqlstateInternalError, strings.Repeat("\x00é\xff", 5000), strings.Repeat("x", 20000), "h")
	f.Fuzz(func(t *testing.T, code, msg, detail, hint string) {
		prefix := []byte("S\x00\x00\x00\x05x")
		b := appendErrorResponse(slices.Clone(prefix), &pgError{Code: code, Message: msg, Detail: detail, Hint: hint})
		if !bytes.HasPrefix(b, prefix) {
			t.Fatalf("the bytes before the message changed: %q", b[:len(prefix)])
		}
		fields, err := readErrorResponse(b[len(prefix):])
		if err != nil {
			t.Fatal(err)
		}
		if fields['S'] != "FATAL" || fields['V'] != "FATAL" {
			t.Fatalf("severity %q %q, want FATAL", fields['S'], fields['V'])
		}
		for _, fl := range []struct {
			typ byte
			in  string
		}{{'C', code}, {'M', msg}, {'D', detail}, {'H', hint}} {
			got, present := fields[fl.typ]
			if present != (fl.in != "") {
				t.Fatalf("field %q present %v for %q", fl.typ, present, fl.in)
			}
			// NULs are dropped; what else is kept must be the input,
			// or, where that is not UTF-8, no longer than it.
			clean := strings.ReplaceAll(fl.in, "\x00", "")
			if (utf8.ValidString(clean) && got != clean) || len(got) > len(clean) {
				t.Fatalf("field %q = %q for %q", fl.typ, got, fl.in)
			}
		}
		if len(fields) != 2+len(slices.DeleteFunc([]string{code, msg, detail, hint}, func(s string) bool { return s == "" })) {
			t.Fatalf("unexpected fields %q", fields)
		}
	})
}

func FuzzAppendMySQLErr(f *testing.F) {
	f.Add(uint16(mysqlErUnknownError), mysqlStateConnFailure, "tunnel: route \"a\" cannot be served")
	f.Add(uint16(mysqlErConCount), mysqlStateConnRejected, strings.Repeat("é", 300))
	f.Add(uint16(0xffff), "", strings.Repeat("\x80", 600))
	f.Add(uint16(0), "HY000-and-more", "nul\x00inside")
	f.Add(uint16(mysqlErHostNotPrivileged), mysqlStateGeneral, strings.Repeat("x", 511)+"\xf0\x9f\x98\x80")
	f.Fuzz(func(t *testing.T, code uint16, state, msg string) {
		// Callers pass a 5-character SQLSTATE; a shorter one is their bug
		// (appendMySQLErr would panic), so pad it here.
		state += "HY000"[min(len(state), 5):]
		prefix := []byte{0xfe}
		b := appendMySQLErr(slices.Clone(prefix), code, state, msg)
		if !bytes.HasPrefix(b, prefix) {
			t.Fatalf("the bytes before the packet changed: %x", b[:len(prefix)])
		}
		gotCode, gotState, got, err := readMySQLErr(b[len(prefix):])
		if err != nil {
			t.Fatal(err)
		}
		if gotCode != code || gotState != state[:5] {
			t.Fatalf("ERR %d %q, want %d %q", gotCode, gotState, code, state[:5])
		}
		if !strings.HasPrefix(msg, got) || len(got) > mysqlMaxErrMessage {
			t.Fatalf("message %q from %q", got, msg)
		}
		if len(msg) <= mysqlMaxErrMessage && got != msg {
			t.Fatalf("message %q cut to %q", msg, got)
		}
		// A UTF-8 message loses at most one character, whole.
		if utf8.ValidString(msg) && (!utf8.ValidString(got) || len(got) < min(len(msg), mysqlMaxErrMessage-utf8.UTFMax+1)) {
			t.Fatalf("UTF-8 message cut to %q (%d bytes)", got, len(got))
		}
	})
}

// frontDoorTimeout is the handshake timeout of the fuzzed front door; the
// client waits that long and frontDoorSlack more for the server to close.
const (
	frontDoorTimeout = 300 * time.Millisecond
	frontDoorSlack   = 2 * time.Second
)

// fuzzUpstream is an Upstream for fuzzing the front door: a database like
// fakePG's, except that it keeps nothing (fakePG records every startup
// message it is sent), so a fuzzing run stays in bounded memory. A startup
// with user "sasl" is offered SCRAM-SHA-256-PLUS, user "refuse" gets an
// ErrorResponse, anyone else is trusted and gets a BackendKeyData.
type fuzzUpstream struct{ fake *fakePG }

func (u fuzzUpstream) Dial(ctx context.Context, req *Request) (Backend, error) {
	a, b := net.Pipe()
	go serveFuzzDatabase(b)
	return &fakePGBackend{Conn: a, f: u.fake}, nil
}

func serveFuzzDatabase(c net.Conn) {
	defer c.Close()
	code, payload, err := readStartupPacket(c, nil)
	if err != nil {
		return
	}
	sm, err := parseStartup(code, payload)
	if err != nil {
		return
	}
	var out []byte
	switch user, _ := sm.get("user"); user {
	case "sasl":
		out = appendMsg(out, 'R', binary.BigEndian.AppendUint32(nil, pgAuthSASL), []byte(scramPlus+"\x00SCRAM-SHA-256\x00\x00"))
	case "refuse":
		out = appendErrorResponse(out, &pgError{Code: sqlstateInvalidAuthSpec, Message: "refused"})
	default:
		out = appendMsg(out, 'R', []byte{0, 0, 0, 0})
		out = appendMsg(out, 'K', []byte{0, 0, 0x10, 0x92, 1, 2, 3, 4})
		out = appendMsg(out, 'Z', []byte{'I'})
	}
	if _, err := c.Write(out); err != nil {
		return
	}
	io.Copy(io.Discard, c)
}

// frontDoor opens a PostgreSQL listener with a short handshake timeout,
// routes "alpha" (the default) and "beta", and domain db.test.
func frontDoor(tb testing.TB, tlsConf *tls.Config) *Listener {
	tb.Helper()
	l := &Listener{Addr: "127.0.0.1:0", Protocol: ProtocolPostgres, Upstream: fuzzUpstream{newFakePG()},
		TLS: tlsConf, Domain: "db.test", HandshakeTimeout: frontDoorTimeout, Logger: slog.New(slog.DiscardHandler)}
	l.SetRoutes([]Route{{Name: "alpha", Default: true}, {Name: "beta"}})
	if err := l.Open(tb.Context()); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { l.Close(); l.Wait() })
	return l
}

// clientHello returns the first TLS record a PostgreSQL 17 client sends for
// direct TLS to serverName.
func clientHello(tb testing.TB, serverName string) []byte {
	tb.Helper()
	a, b := net.Pipe()
	done := make(chan struct{})
	go func() {
		defer close(done)
		tls.Client(a, &tls.Config{ServerName: serverName, NextProtos: []string{PostgresALPN}}).Handshake()
	}()
	defer func() { a.Close(); b.Close(); <-done }()
	b.SetReadDeadline(time.Now().Add(5 * time.Second))
	hdr := make([]byte, 5)
	if _, err := io.ReadFull(b, hdr); err != nil {
		tb.Fatal(err)
	}
	body := make([]byte, binary.BigEndian.Uint16(hdr[3:]))
	if _, err := io.ReadFull(b, body); err != nil {
		tb.Fatal(err)
	}
	return append(hdr, body...)
}

func FuzzPostgresFrontDoor(f *testing.F) {
	plain, withTLS := frontDoor(f, nil), frontDoor(f, testCert(f, "*.db.test"))

	ssl := startupHeader(8, pgSSLRequestCode)
	gss := startupHeader(8, pgGSSENCRequestCode)
	startup := startupBytes("user", "u", "database", "d")
	query := appendMsg(nil, 'Q', []byte("select 1\x00"))
	for _, seed := range [][]byte{
		nil,
		startup,
		append(slices.Clone(startup), query...),
		ssl,
		append(slices.Clone(ssl), startup...),
		append(slices.Clone(gss), startup...),
		append(append(slices.Clone(gss), ssl...), startup...),
		append(append(slices.Clone(ssl), ssl...), ssl...),
		cancelRequest{pid: 0x1092, key: []byte{1, 2, 3, 4}}.encode(),
		{tlsRecordHandshake, 3, 1, 0, 5, 1, 0, 0, 1, 0},
		clientHello(f, "beta.db.test"),
		startupHeader(0x7fffffff, 3<<16),
		startupBytes("user", "u", RouteParameter, "beta", "options", "-c geqo=off tunnel_route=beta"),
		startupBytes("user", "u", "options", "tunnel_route=nope"),
		startupBytes("user", "refuse"),
		append(startupBytes("user", "sasl"), appendMsg(nil, 'p', []byte(scramPlus+"\x00"), []byte{0, 0, 0, 0})...),
		// A message whose length leaves nothing, then one that claims 2 GiB.
		append(slices.Clone(startup), 'Q', 0, 0, 0, 0, 'Q', 0x7f, 0xff, 0xff, 0xff),
		append(startupHeader(12, 2<<16), 0, 0, 0, 0), // protocol 2.0
	} {
		f.Add(seed, false)
		f.Add(seed, true)
	}
	f.Fuzz(func(t *testing.T, data []byte, useTLS bool) {
		l := plain
		if useTLS {
			l = withTLS
		}
		c, err := net.Dial("tcp", l.BoundAddr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		start := time.Now()
		c.SetDeadline(start.Add(frontDoorTimeout + frontDoorSlack))
		// The server may close before it has read everything; a write
		// error then is its answer, not a failure.
		c.Write(data)
		c.(*net.TCPConn).CloseWrite()
		if _, err := io.Copy(io.Discard, c); isTimeout(err) {
			t.Fatalf("the server did not close the connection within %v", time.Since(start))
		}
		for l.Active() != 0 {
			if time.Since(start) > frontDoorTimeout+frontDoorSlack {
				t.Fatalf("%d connections still served %v after the client came", l.Active(), time.Since(start))
			}
			time.Sleep(time.Millisecond)
		}
		if n := l.Cancels.Len(); n != 0 {
			t.Fatalf("%d cancel keys outlive their sessions", n)
		}
	})
}

package dbproxy

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"runtime"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"
)

// startupHeader returns the 8 bytes that open a startup-phase packet.
func startupHeader(length, code uint32) []byte {
	return binary.BigEndian.AppendUint32(binary.BigEndian.AppendUint32(nil, length), code)
}

// startupBytes returns a StartupMessage of protocol 3.0 with params, built
// by hand rather than by encode, which it is used to check.
func startupBytes(params ...string) []byte {
	var body []byte
	for _, p := range params {
		body = append(append(body, p...), 0)
	}
	body = append(body, 0)
	return append(startupHeader(uint32(8+len(body)), 3<<16), body...)
}

func TestReadStartupPacket(t *testing.T) {
	startup := startupBytes("user", "u", "database", "d")
	for _, tc := range []struct {
		name    string
		first   []byte
		in      []byte
		code    uint32
		payload []byte
		err     error // nil, or what errors.Is must match
		left    int   // bytes that must remain unread
	}{
		{name: "startup", in: startup, code: 3 << 16, payload: startup[8:]},
		{name: "startup, first byte already read", first: startup[:1], in: startup[1:], code: 3 << 16, payload: startup[8:]},
		{name: "SSLRequest, then more", in: append(startupHeader(8, pgSSLRequestCode), "more"...),
			code: pgSSLRequestCode, payload: []byte{}, left: 4},
		{name: "largest length", in: append(startupHeader(pgMaxStartupLen, 3<<16), make([]byte, pgMaxStartupLen-8)...),
			code: 3 << 16, payload: make([]byte, pgMaxStartupLen-8)},
		{name: "length one past the largest", in: append(startupHeader(pgMaxStartupLen+1, 3<<16), make([]byte, pgMaxStartupLen-7)...),
			err: errPgPacketLength, left: pgMaxStartupLen - 7},
		{name: "huge length", in: append(startupHeader(0x7fffffff, 3<<16), "body"...), err: errPgPacketLength, left: 4},
		{name: "largest uint32 length", in: startupHeader(0xffffffff, 3<<16), err: errPgPacketLength},
		{name: "length smaller than the header", in: append(startupHeader(7, 3<<16), "x"...), err: errPgPacketLength, left: 1},
		{name: "zero length", in: startupHeader(0, 0), err: errPgPacketLength},
		{name: "empty", in: nil, err: io.EOF},
		{name: "short header", in: []byte{0, 0, 0}, err: io.ErrUnexpectedEOF},
		{name: "short body", in: startup[:len(startup)-1], err: io.ErrUnexpectedEOF},
		{name: "no body", in: startup[:8], err: io.EOF},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := bytes.NewReader(tc.in)
			code, payload, err := readStartupPacket(r, tc.first)
			if tc.err != nil {
				if !errors.Is(err, tc.err) {
					t.Fatalf("err = %v, want %v", err, tc.err)
				}
			} else if err != nil || code != tc.code || !bytes.Equal(payload, tc.payload) {
				t.Fatalf("got %d %q %v, want %d %q", code, payload, err, tc.code, tc.payload)
			}
			if r.Len() != tc.left {
				t.Errorf("%d bytes left unread, want %d", r.Len(), tc.left)
			}
		})
	}
}

// headerOnlyReader yields an 8-byte header and counts any read after it.
type headerOnlyReader struct {
	hdr        []byte
	extraReads int
}

func (r *headerOnlyReader) Read(p []byte) (int, error) {
	if len(r.hdr) == 0 {
		r.extraReads++
		return 0, errors.New("read past the header")
	}
	n := copy(p, r.hdr)
	r.hdr = r.hdr[n:]
	return n, nil
}

// TestReadStartupPacketRefusesBeforeAllocating: a length out of bounds is
// refused from the header alone, before the body is allocated or read.
func TestReadStartupPacketRefusesBeforeAllocating(t *testing.T) {
	for _, length := range []uint32{0x7fffffff, 0xffffffff, 1 << 24, pgMaxStartupLen + 1, 7, 0} {
		t.Run(fmt.Sprint(length), func(t *testing.T) {
			r := &headerOnlyReader{hdr: startupHeader(length, 3<<16)}
			if _, _, err := readStartupPacket(r, nil); !errors.Is(err, errPgPacketLength) {
				t.Fatalf("err = %v, want %v", err, errPgPacketLength)
			}
			if r.extraReads != 0 {
				t.Fatalf("%d reads after the header", r.extraReads)
			}
		})
	}

	// A body claimed, not sent, must cost nothing: a hundred refusals
	// allocate far less than one body of the claimed length would.
	const runs = 100
	hdr := startupHeader(0x7fffffff, 3<<16)
	r := bytes.NewReader(nil)
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	for range runs {
		r.Reset(hdr)
		readStartupPacket(r, nil)
	}
	runtime.ReadMemStats(&after)
	if n := after.TotalAlloc - before.TotalAlloc; n > runs*1024 {
		t.Fatalf("%d refusals allocated %d bytes", runs, n)
	}
}

func TestParseStartup(t *testing.T) {
	for _, tc := range []struct {
		name    string
		payload string
		params  []pgParam // nil with ok false: an error
		ok      bool
	}{
		{"no parameters", "\x00", nil, true},
		{"two parameters", "user\x00u\x00database\x00d\x00\x00", []pgParam{{"user", "u"}, {"database", "d"}}, true},
		{"empty value", "user\x00\x00\x00", []pgParam{{"user", ""}}, true},
		{"duplicate names kept in order", "a\x001\x00a\x002\x00\x00", []pgParam{{"a", "1"}, {"a", "2"}}, true},
		{"empty payload", "", nil, false},
		{"no terminator", "user\x00u\x00", nil, false},
		{"name without value", "user\x00", nil, false},
		{"unterminated value", "user\x00u", nil, false},
		{"bytes after the terminator", "user\x00u\x00\x00x", nil, false},
		{"second terminator", "\x00\x00", nil, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sm, err := parseStartup(3<<16, []byte(tc.payload))
			if !tc.ok {
				if !errors.Is(err, errPgLayout) {
					t.Fatalf("parseStartup(%q) = %+v, %v; want %v", tc.payload, sm, err, errPgLayout)
				}
				return
			}
			if err != nil || !slices.Equal(sm.params, tc.params) || sm.version != 3<<16 {
				t.Fatalf("parseStartup(%q) = %+v, %v; want %v", tc.payload, sm, err, tc.params)
			}
			packet := append(startupHeader(uint32(8+len(tc.payload)), 3<<16), tc.payload...)
			if got := sm.encode(); !bytes.Equal(got, packet) {
				t.Fatalf("encode = %q, want %q", got, packet)
			}
		})
	}
}

func TestTakeRoute(t *testing.T) {
	for _, tc := range []struct {
		name    string
		params  []pgParam
		route   string
		changed bool
		left    []pgParam
	}{
		{"nothing named", []pgParam{{"user", "u"}}, "", false, []pgParam{{"user", "u"}}},
		{"parameter", []pgParam{{"user", "u"}, {RouteParameter, "beta"}, {"database", "d"}}, "beta", true,
			[]pgParam{{"user", "u"}, {"database", "d"}}},
		{"options, the only word", []pgParam{{"options", "tunnel_route=beta"}, {"user", "u"}}, "beta", true,
			[]pgParam{{"user", "u"}}},
		{"options, among others", []pgParam{{"options", "-c geqo=off tunnel_route=beta\t-c work_mem=1MB"}}, "beta", true,
			[]pgParam{{"options", "-c geqo=off -c work_mem=1MB"}}},
		{"options, escaped word", []pgParam{{"options", `tunnel\_route=be\ ta -c a=b`}}, "be ta", true,
			[]pgParam{{"options", "-c a=b"}}},
		{"options, escapes of other words kept", []pgParam{{"options", `-c search_path=a\ b tunnel_route=x`}}, "x", true,
			[]pgParam{{"options", `-c search_path=a\ b`}}},
		{"options without the word unchanged", []pgParam{{"options", "  -c  a=b  "}}, "", false,
			[]pgParam{{"options", "  -c  a=b  "}}},
		{"options, as a -c setting", []pgParam{{"options", "-ctunnel_route=x -c geqo=off"}}, "x", true,
			[]pgParam{{"options", "-c geqo=off"}}},
		{"options, empty name", []pgParam{{"options", "tunnel_route="}}, "", true, []pgParam{}},
		{"parameter wins over an earlier options word", []pgParam{{"options", "tunnel_route=a"}, {RouteParameter, "b"}}, "b", true, []pgParam{}},
		{"parameter wins over a later options word", []pgParam{{RouteParameter, "b"}, {"options", "tunnel_route=a"}}, "b", true, []pgParam{}},
		{"every parameter removed, the last wins", []pgParam{{RouteParameter, "a"}, {RouteParameter, "b"}}, "b", true, []pgParam{}},
		{"first options parameter wins", []pgParam{{"options", "tunnel_route=a"}, {"options", "tunnel_route=b"}}, "a", true, []pgParam{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sm := &startupMessage{version: 3 << 16, params: slices.Clone(tc.params)}
			route, changed := sm.takeRoute()
			if route != tc.route || changed != tc.changed {
				t.Errorf("takeRoute = %q, %v; want %q, %v", route, changed, tc.route, tc.changed)
			}
			if !slices.Equal(sm.params, tc.left) {
				t.Errorf("params left %q, want %q", sm.params, tc.left)
			}
		})
	}
}

func TestRouteFromOptions(t *testing.T) {
	for _, tc := range []struct {
		opts  string
		route string
		rest  string
		ok    bool
	}{
		{"", "", "", false},
		{"tunnel_route=a", "a", "", true},
		{" \t\r\ntunnel_route=a\n", "a", "", true},
		{"-c x=1 tunnel_route=a", "a", "-c x=1", true},
		{`tunnel_route=a\`, "a", "", true},
		{`tunnel_route=a\\b`, `a\b`, "", true},
		{`tunnel_route\=a`, "a", "", true},
		{`\tunnel_route=a`, "a", "", true},
		{`-c x=a\ tunnel_route=b`, "", `-c x=a\ tunnel_route=b`, false},
		{"TUNNEL_ROUTE=a", "", "TUNNEL_ROUTE=a", false},
		{"tunnel_route", "", "tunnel_route", false},
		{"--tunnel_route=a", "a", "", true},
		{"-ctunnel_route=a", "a", "", true},
		{"-c tunnel_route=a", "a", "", true},
		{"-c x=1 -c tunnel_route=a -c y=2", "a", "-c x=1 -c y=2", true},
		{"tunnel_route=a tunnel_route=b", "a", "", true},
		{"x\vtunnel_route=a", "a", "x", true},
		{"-c", "", "-c", false},
	} {
		t.Run(tc.opts, func(t *testing.T) {
			route, rest, ok := routeFromOptions(tc.opts)
			if route != tc.route || rest != tc.rest || ok != tc.ok {
				t.Fatalf("routeFromOptions(%q) = %q, %q, %v; want %q, %q, %v", tc.opts, route, rest, ok, tc.route, tc.rest, tc.ok)
			}
		})
	}
}

func TestCancelRequestBounds(t *testing.T) {
	for _, tc := range []struct {
		name   string
		keyLen int
		ok     bool
	}{
		{"no key", 0, false},
		{"3-byte key", 3, false},
		{"protocol 3.0 key", 4, true},
		{"longest key", pgMaxCancelKeyLen, true},
		{"key too long", pgMaxCancelKeyLen + 1, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			key := bytes.Repeat([]byte{0xa5}, tc.keyLen)
			payload := append([]byte{0, 0, 0x10, 0x92}, key...)

			req, err := parseCancel(payload)
			if (err == nil) != tc.ok {
				t.Fatalf("parseCancel of a %d-byte key: %v", tc.keyLen, err)
			}
			if tc.ok {
				want := append(startupHeader(uint32(8+len(payload)), pgCancelRequestCode), payload...)
				if req.pid != 0x1092 || !bytes.Equal(req.encode(), want) {
					t.Errorf("cancel request %+v encodes as %x, want %x", req, req.encode(), want)
				}
			}

			k, err := parseBackendKeyData(payload)
			if (err == nil) != tc.ok {
				t.Fatalf("parseBackendKeyData of a %d-byte key: %v", tc.keyLen, err)
			}
			if tc.ok {
				want := append([]byte{'K'}, binary.BigEndian.AppendUint32(nil, uint32(4+len(payload)))...)
				want = append(want, payload...)
				if got := appendBackendKeyData(nil, k); k.pid != 0x1092 || !bytes.Equal(got, want) {
					t.Errorf("BackendKeyData %+v encodes as %x, want %x", k, got, want)
				}
				payload[4] = 0
				if tc.keyLen > 0 && k.key[0] != 0xa5 {
					t.Error("BackendKeyData key shares memory with the message it came from")
				}
			}
		})
	}
}

// readErrorResponse reads b as a client reads an ErrorResponse: it checks
// the framing and returns the fields by type. A field must hold valid UTF-8
// and appear once.
func readErrorResponse(b []byte) (map[byte]string, error) {
	if len(b) < 6 || b[0] != 'E' {
		return nil, fmt.Errorf("not an ErrorResponse: %q", b)
	}
	if n := binary.BigEndian.Uint32(b[1:]); int64(n) != int64(len(b)-1) {
		return nil, fmt.Errorf("length field %d, message of %d bytes after the type", n, len(b)-1)
	}
	fields := map[byte]string{}
	p := b[5:]
	for len(p) > 0 {
		typ := p[0]
		p = p[1:]
		if typ == 0 {
			if len(p) != 0 {
				return nil, fmt.Errorf("%d bytes after the terminator", len(p))
			}
			return fields, nil
		}
		end := bytes.IndexByte(p, 0)
		if end < 0 {
			return nil, fmt.Errorf("field %q not terminated", typ)
		}
		v := string(p[:end])
		if !utf8.ValidString(v) {
			return nil, fmt.Errorf("field %q is not UTF-8: %q", typ, v)
		}
		if _, dup := fields[typ]; dup {
			return nil, fmt.Errorf("field %q twice", typ)
		}
		fields[typ] = v
		p = p[end+1:]
	}
	return nil, errors.New("no terminator")
}

func TestAppendErrorResponse(t *testing.T) {
	for _, tc := range []struct {
		name string
		e    pgError
		want map[byte]string
	}{
		{"message only", pgError{Code: "08P01", Message: "bad"},
			map[byte]string{'S': "FATAL", 'V': "FATAL", 'C': "08P01", 'M': "bad"}},
		{"every field", pgError{Code: "3D000", Message: "m", Detail: "d", Hint: "h"},
			map[byte]string{'S': "FATAL", 'V': "FATAL", 'C': "3D000", 'M': "m", 'D': "d", 'H': "h"}},
		{"NULs dropped", pgError{Code: "XX000", Message: "a\x00b\x00", Hint: "\x00"},
			map[byte]string{'S': "FATAL", 'V': "FATAL", 'C': "XX000", 'M': "ab", 'H': ""}},
		{"invalid UTF-8 replaced", pgError{Code: "XX000", Message: "route \"\xff\xfe\" é"},
			map[byte]string{'S': "FATAL", 'V': "FATAL", 'C': "XX000", 'M': "route \"?\" é"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			prefix := []byte("N")
			b := appendErrorResponse(slices.Clone(prefix), &tc.e)
			if !bytes.HasPrefix(b, prefix) {
				t.Fatalf("the bytes before the message changed: %q", b)
			}
			fields, err := readErrorResponse(b[len(prefix):])
			if err != nil {
				t.Fatal(err)
			}
			if fmt.Sprint(fields) != fmt.Sprint(tc.want) {
				t.Fatalf("fields %q, want %q", fields, tc.want)
			}
		})
	}
}

// mysqlErrMaxPayload is the largest ERR payload the front door may send:
// header byte, code, '#', SQLSTATE and the message kept.
const mysqlErrMaxPayload = 1 + 2 + 1 + 5 + mysqlMaxErrMessage

// readMySQLErr reads b as one ERR packet of sequence id 0.
func readMySQLErr(b []byte) (code uint16, state, msg string, err error) {
	if len(b) < mysqlPacketHeaderLen+9 {
		return 0, "", "", fmt.Errorf("ERR packet of %d bytes", len(b))
	}
	n := int(b[0]) | int(b[1])<<8 | int(b[2])<<16
	payload := b[mysqlPacketHeaderLen:]
	switch {
	case n != len(payload):
		return 0, "", "", fmt.Errorf("length field %d, payload of %d bytes", n, len(payload))
	case n > mysqlErrMaxPayload:
		return 0, "", "", fmt.Errorf("payload of %d bytes, more than %d", n, mysqlErrMaxPayload)
	case b[3] != 0:
		return 0, "", "", fmt.Errorf("sequence id %d", b[3])
	case payload[0] != 0xff || payload[3] != '#':
		return 0, "", "", fmt.Errorf("not an ERR payload: %q", payload)
	}
	return binary.LittleEndian.Uint16(payload[1:]), string(payload[4:9]), string(payload[9:]), nil
}

func TestAppendMySQLErr(t *testing.T) {
	long := strings.Repeat("x", mysqlMaxErrMessage-1)
	for _, tc := range []struct {
		name, msg, want string
	}{
		{"short", "tunnel: no route", "tunnel: no route"},
		{"empty", "", ""},
		{"longest kept whole", long + "y", long + "y"},
		{"one byte too long", long + "yz", long + "y"},
		{"character not split", long + "é", long},
		{"character ending at the limit kept", long[1:] + "é", long[1:] + "é"},
		{"much too long", strings.Repeat("€", 1000), strings.Repeat("€", mysqlMaxErrMessage/3)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			prefix := []byte("earlier")
			b := appendMySQLErr(slices.Clone(prefix), mysqlErConCount, mysqlStateConnRejected, tc.msg)
			if !bytes.HasPrefix(b, prefix) {
				t.Fatalf("the bytes before the packet changed: %q", b)
			}
			code, state, msg, err := readMySQLErr(b[len(prefix):])
			if err != nil {
				t.Fatal(err)
			}
			if code != mysqlErConCount || state != mysqlStateConnRejected || msg != tc.want {
				t.Fatalf("ERR %d %s %q, want %d %s %q", code, state, msg, mysqlErConCount, mysqlStateConnRejected, tc.want)
			}
		})
	}
}

func TestRouteFromServerName(t *testing.T) {
	for _, tc := range []struct {
		name, domain, route string
		ok                  bool
	}{
		{"sales.db.example.com", "db.example.com", "sales", true},
		{"sales.db.example.com.", "db.example.com", "sales", true},
		{"sales.db.example.com", ".db.example.com.", "sales", true},
		{"Sales.DB.Example.COM", "db.example.com", "Sales", true},
		{"a.b.db.example.com", "db.example.com", "a", true},
		{"db.example.com", "db.example.com", "", false},
		{".db.example.com", "db.example.com", "", false},
		{".sales.db.example.com", "db.example.com", "", false},
		{"a..db.example.com", "db.example.com", "a", true},
		{"salesdb.example.com", "db.example.com", "", false},
		{"sales.db.example.org", "db.example.com", "", false},
		{"sales.db.example.com", "", "", false},
		{"sales.db.example.com", ".", "", false},
		{"", "db.example.com", "", false},
		{"sales", "db.example.com", "", false},
	} {
		t.Run(tc.name+"/"+tc.domain, func(t *testing.T) {
			route, ok := RouteFromServerName(tc.name, tc.domain)
			if route != tc.route || ok != tc.ok {
				t.Fatalf("RouteFromServerName(%q, %q) = %q, %v; want %q, %v", tc.name, tc.domain, route, ok, tc.route, tc.ok)
			}
		})
	}
}

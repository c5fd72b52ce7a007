package dbproxy

// The PostgreSQL wire protocol, as much as the front door needs: the
// startup-phase packets a client sends first (SSLRequest, GSSENCRequest,
// CancelRequest, StartupMessage), the backend's BackendKeyData, and the
// ErrorResponse the proxy writes itself.
//
// Startup packets have no type byte: Int32 length (itself included), Int32
// code, payload. Every other message is Byte1 type, Int32 length (itself
// included, not the type), payload. Lengths are checked before a body is
// read, and bodies are read with exact-length reads, never buffered past the
// packet: bytes after an SSLRequest must still be in the socket when the TLS
// handshake starts.

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"strings"
)

// Startup-phase request codes, in the place of a protocol version.
const (
	pgSSLRequestCode    = 80877103 // 1234.5679
	pgGSSENCRequestCode = 80877104 // 1234.5680
	pgCancelRequestCode = 80877102 // 1234.5678
)

// Bounds of what the front door reads.
const (
	// pgMaxStartupLen is the largest startup packet accepted, as
	// PostgreSQL's own MAX_STARTUP_PACKET_LENGTH.
	pgMaxStartupLen = 10000
	// pgMaxCancelKeyLen is the longest cancel key protocol 3.2 allows.
	pgMaxCancelKeyLen = 256
	// pgMaxAuthMessageLen bounds a message read whole during
	// authentication (PostgreSQL's PG_MAX_AUTH_TOKEN_LENGTH plus room).
	pgMaxAuthMessageLen = 65535 + 1024
)

// pgProtocolMajor is the only protocol major version served; minor versions
// (3.0, 3.2, later ones) pass through for the database to negotiate.
const pgProtocolMajor = 3

// RouteParameter is the startup parameter that names a route on a shared
// PostgreSQL port, for clients that send no TLS SNI name. It may also appear
// as a "tunnel_route=NAME" word inside the "options" parameter, which is
// what libpq and JDBC can send. Either is removed before the startup message
// goes on to the database.
const RouteParameter = "tunnel_route"

var (
	errPgPacketLength = errors.New("invalid length of startup packet")
	errPgLayout       = errors.New("invalid startup packet layout")
)

// readStartupPacket reads one startup-phase packet from r and returns its
// code and payload (after the code). It reads the length, then exactly the
// rest, so nothing after the packet is consumed.
func readStartupPacket(r io.Reader, first []byte) (code uint32, payload []byte, err error) {
	var hdr [8]byte
	n := copy(hdr[:], first)
	if _, err := io.ReadFull(r, hdr[n:]); err != nil {
		return 0, nil, err
	}
	length := binary.BigEndian.Uint32(hdr[:4])
	if length < 8 || length > pgMaxStartupLen {
		return 0, nil, errPgPacketLength
	}
	code = binary.BigEndian.Uint32(hdr[4:])
	payload = make([]byte, length-8)
	if _, err := io.ReadFull(r, payload); err != nil {
		return 0, nil, err
	}
	return code, payload, nil
}

// pgParam is one name/value pair of a StartupMessage.
type pgParam struct{ name, value string }

// startupMessage is a parsed StartupMessage. The parameters keep their order.
type startupMessage struct {
	version uint32
	params  []pgParam
}

func (m *startupMessage) get(name string) (string, bool) {
	for _, p := range m.params {
		if p.name == name {
			return p.value, true
		}
	}
	return "", false
}

// parseStartup parses the payload of a StartupMessage: pairs of
// NUL-terminated strings ending in an empty name.
func parseStartup(version uint32, payload []byte) (*startupMessage, error) {
	m := &startupMessage{version: version}
	p := payload
	for {
		name, rest, ok := cutCString(p)
		if !ok {
			return nil, errPgLayout
		}
		if name == "" {
			if len(rest) != 0 {
				return nil, errPgLayout
			}
			return m, nil
		}
		value, rest, ok := cutCString(rest)
		if !ok {
			return nil, errPgLayout
		}
		m.params = append(m.params, pgParam{name, value})
		p = rest
	}
}

func cutCString(p []byte) (string, []byte, bool) {
	i := bytes.IndexByte(p, 0)
	if i < 0 {
		return "", nil, false
	}
	return string(p[:i]), p[i+1:], true
}

// encode returns the StartupMessage as sent on the wire.
func (m *startupMessage) encode() []byte {
	n := 9
	for _, p := range m.params {
		n += len(p.name) + len(p.value) + 2
	}
	b := make([]byte, 0, n)
	b = binary.BigEndian.AppendUint32(b, uint32(n))
	b = binary.BigEndian.AppendUint32(b, m.version)
	for _, p := range m.params {
		b = append(b, p.name...)
		b = append(b, 0)
		b = append(b, p.value...)
		b = append(b, 0)
	}
	return append(b, 0)
}

// takeRoute removes the route named in m, if any, and returns it: the
// RouteParameter itself, or a "tunnel_route=NAME" word of "options" (the
// options parameter is dropped if nothing else is left in it). It reports
// whether m changed.
func (m *startupMessage) takeRoute() (route string, changed bool) {
	out := m.params[:0]
	for _, p := range m.params {
		switch p.name {
		case RouteParameter:
			route, changed = p.value, true
			continue
		case "options":
			if name, rest, ok := routeFromOptions(p.value); ok {
				if route == "" {
					route = name
				}
				changed = true
				if rest == "" {
					continue
				}
				p.value = rest
			}
		}
		out = append(out, p)
	}
	m.params = out
	return route, changed
}

// routeFromOptions finds the words of a startup options value that name a
// route and returns the first route named and the options without any of
// them. PostgreSQL reads "-c NAME=VALUE", "-cNAME=VALUE" and
// "--NAME=VALUE" as a setting; each of those forms names a route here too,
// as does a bare "tunnel_route=NAME". Words are separated by white space,
// and a backslash escapes the next character, as PostgreSQL reads them.
func routeFromOptions(opts string) (route, rest string, ok bool) {
	words := splitOptions(opts)
	kept := words[:0]
	for i := 0; i < len(words); i++ {
		w := unescapeOption(words[i])
		setting := w
		switch {
		case w == "-c" && i+1 < len(words):
			setting = unescapeOption(words[i+1])
			if _, found := strings.CutPrefix(setting, RouteParameter+"="); found {
				i++ // the "-c" goes with it
			}
		case strings.HasPrefix(w, "-c"):
			setting = w[2:]
		case strings.HasPrefix(w, "--"):
			setting = w[2:]
		}
		if v, found := strings.CutPrefix(setting, RouteParameter+"="); found {
			if !ok {
				route, ok = v, true
			}
			continue
		}
		kept = append(kept, words[i])
	}
	return route, strings.Join(kept, " "), ok
}

// splitOptions splits opts at unescaped white space (as C's isspace),
// keeping escapes in the words.
func splitOptions(opts string) []string {
	var words []string
	var cur strings.Builder
	escaped := false
	for i := 0; i < len(opts); i++ {
		c := opts[i]
		switch {
		case escaped:
			escaped = false
		case c == '\\':
			escaped = true
		case c == ' ' || c >= '\t' && c <= '\r':
			if cur.Len() > 0 {
				words = append(words, cur.String())
				cur.Reset()
			}
			continue
		}
		cur.WriteByte(c)
	}
	if cur.Len() > 0 {
		words = append(words, cur.String())
	}
	return words
}

func unescapeOption(w string) string {
	if !strings.Contains(w, `\`) {
		return w
	}
	var b strings.Builder
	escaped := false
	for i := 0; i < len(w); i++ {
		if w[i] == '\\' && !escaped {
			escaped = true
			continue
		}
		escaped = false
		b.WriteByte(w[i])
	}
	return b.String()
}

// cancelRequest is a parsed CancelRequest: the process id and secret key of
// the session to cancel (4 bytes in protocol 3.0, up to 256 in 3.2).
type cancelRequest struct {
	pid uint32
	key []byte
}

func parseCancel(payload []byte) (cancelRequest, error) {
	if len(payload) < 8 || len(payload)-4 > pgMaxCancelKeyLen {
		return cancelRequest{}, fmt.Errorf("cancel request of %d bytes", len(payload)+8)
	}
	return cancelRequest{pid: binary.BigEndian.Uint32(payload), key: payload[4:]}, nil
}

func (c cancelRequest) encode() []byte {
	b := make([]byte, 0, 12+len(c.key))
	b = binary.BigEndian.AppendUint32(b, uint32(12+len(c.key)))
	b = binary.BigEndian.AppendUint32(b, pgCancelRequestCode)
	b = binary.BigEndian.AppendUint32(b, c.pid)
	return append(b, c.key...)
}

// parseBackendKeyData parses the payload of a BackendKeyData ('K') message.
func parseBackendKeyData(payload []byte) (cancelRequest, error) {
	if len(payload) < 8 || len(payload)-4 > pgMaxCancelKeyLen {
		return cancelRequest{}, fmt.Errorf("BackendKeyData of %d bytes", len(payload))
	}
	return cancelRequest{pid: binary.BigEndian.Uint32(payload), key: bytes.Clone(payload[4:])}, nil
}

// appendBackendKeyData appends a BackendKeyData message for k.
func appendBackendKeyData(b []byte, k cancelRequest) []byte {
	b = append(b, 'K')
	b = binary.BigEndian.AppendUint32(b, uint32(8+len(k.key)))
	b = binary.BigEndian.AppendUint32(b, k.pid)
	return append(b, k.key...)
}

// pgError is an ErrorResponse the proxy sends a client.
type pgError struct {
	Code    string // SQLSTATE
	Message string
	Detail  string
	Hint    string
}

// SQLSTATEs the front door uses.
const (
	sqlstateProtocolViolation   = "08P01"
	sqlstateConnectionFailure   = "08006"
	sqlstateInvalidCatalogName  = "3D000"
	sqlstateTooManyConnections  = "53300"
	sqlstateInvalidAuthSpec     = "28000"
	sqlstateFeatureNotSupported = "0A000"
	sqlstateInternalError       = "XX000"
)

// appendErrorResponse appends e as a FATAL ErrorResponse.
func appendErrorResponse(b []byte, e *pgError) []byte {
	start := len(b)
	b = append(b, 'E', 0, 0, 0, 0)
	field := func(t byte, v string) {
		if v != "" {
			b = append(b, t)
			b = append(b, strings.ToValidUTF8(strings.ReplaceAll(v, "\x00", ""), "?")...)
			b = append(b, 0)
		}
	}
	field('S', "FATAL")
	field('V', "FATAL")
	field('C', e.Code)
	field('M', e.Message)
	field('D', e.Detail)
	field('H', e.Hint)
	b = append(b, 0)
	binary.BigEndian.PutUint32(b[start+1:], uint32(len(b)-start-1))
	return b
}

// saslMechanism returns the mechanism a SASLInitialResponse ('p' payload)
// names.
func saslMechanism(payload []byte) string {
	name, _, ok := cutCString(payload)
	if !ok {
		return ""
	}
	return name
}

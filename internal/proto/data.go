package proto

import (
	"encoding/binary"
	"fmt"
	"io"
	"strings"
	"unicode/utf8"
)

// Open is the header of a data stream.
type Open struct {
	// SessionID identifies the client session in both sides' logs.
	SessionID uint64
	// Target is the name of one of the agent's declared targets.
	Target string
	// Client is the address of the client connected to the route.
	Client string
	// Route is the name of the route the client connected to, for the
	// agent's logs.
	Route string
}

// Append appends the payload of an Open frame to b.
func (o *Open) Append(b []byte) ([]byte, error) {
	if len(o.Target) == 0 || len(o.Target) > 255 || len(o.Client) > 255 || len(o.Route) > 255 {
		return b, fmt.Errorf("%w: open: a field is empty or too long", ErrMalformed)
	}
	// ParseOpen refuses invalid UTF-8; never write what the peer refuses.
	if !utf8.ValidString(o.Target) || !utf8.ValidString(o.Client) || !utf8.ValidString(o.Route) {
		return b, fmt.Errorf("%w: open: a field is not valid UTF-8", ErrMalformed)
	}
	b = binary.BigEndian.AppendUint64(b, o.SessionID)
	for _, s := range []string{o.Target, o.Client, o.Route} {
		b = append(b, byte(len(s)))
		b = append(b, s...)
	}
	return b, nil
}

// ParseOpen parses the payload of an Open frame.
func ParseOpen(p []byte) (Open, error) {
	var o Open
	if len(p) < 8 {
		return o, fmt.Errorf("%w: open: %d bytes", ErrMalformed, len(p))
	}
	o.SessionID = binary.BigEndian.Uint64(p)
	p = p[8:]
	target, p, ok := cutString(p)
	if !ok || target == "" {
		return Open{}, fmt.Errorf("%w: open: bad target", ErrMalformed)
	}
	client, p, ok := cutString(p)
	if !ok {
		return Open{}, fmt.Errorf("%w: open: bad client address", ErrMalformed)
	}
	route, _, ok := cutString(p)
	if !ok {
		return Open{}, fmt.Errorf("%w: open: bad route name", ErrMalformed)
	}
	o.Target, o.Client, o.Route = target, client, route
	return o, nil
}

func cutString(p []byte) (s string, rest []byte, ok bool) {
	if len(p) < 1 || len(p) < 1+int(p[0]) {
		return "", nil, false
	}
	n := int(p[0])
	b := p[1 : 1+n]
	if !utf8.Valid(b) {
		return "", nil, false
	}
	return string(b), p[1+n:], true
}

// WriteOpen writes an Open frame.
func WriteOpen(w io.Writer, o *Open) error {
	payload, err := o.Append(make([]byte, 0, 11+len(o.Target)+len(o.Client)+len(o.Route)))
	if err != nil {
		return err
	}
	return WriteFrame(w, FrameOpen, payload)
}

// ReadOpen reads the Open frame that starts a data stream.
func ReadOpen(r io.Reader, max int) (Open, error) {
	t, p, err := ReadFrame(r, max)
	if err != nil {
		return Open{}, err
	}
	if t != FrameOpen {
		return Open{}, fmt.Errorf("%w: %s, want open", ErrUnexpected, t)
	}
	return ParseOpen(p)
}

// ReplyCode is the agent's answer to Open.
type ReplyCode uint8

const (
	// ReplyOK: the target is connected; bytes flow from now on.
	ReplyOK ReplyCode = 0
	// ReplyUnknownTarget: the agent declares no target of that name.
	ReplyUnknownTarget ReplyCode = 1
	// ReplyDialFailed: the target refused, timed out or did not resolve.
	ReplyDialFailed ReplyCode = 2
	// ReplyLimitReached: the agent is at its session limit.
	ReplyLimitReached ReplyCode = 3
	// ReplyBadRequest: the Open frame did not parse.
	ReplyBadRequest ReplyCode = 4
	// ReplyShuttingDown: the agent is stopping and takes no new sessions.
	ReplyShuttingDown ReplyCode = 5
)

func (c ReplyCode) String() string {
	switch c {
	case ReplyOK:
		return "ok"
	case ReplyUnknownTarget:
		return "unknown target"
	case ReplyDialFailed:
		return "dial failed"
	case ReplyLimitReached:
		return "limit reached"
	case ReplyBadRequest:
		return "bad request"
	case ReplyShuttingDown:
		return "shutting down"
	}
	return fmt.Sprintf("reply code %d", uint8(c))
}

// Reply is the agent's answer to Open.
type Reply struct {
	Code    ReplyCode
	Message string
}

// maxReplyMessage keeps a reason within one small frame.
const maxReplyMessage = 1024

// WriteReply writes a Reply frame; a long message is cut.
func WriteReply(w io.Writer, r *Reply) error {
	// Invalid bytes become U+FFFD first, so that the cut below only has to
	// step back to the start of a rune (cutting until the prefix was valid
	// threw away the whole reason when it held one bad byte).
	msg := strings.ToValidUTF8(r.Message, "\uFFFD")
	if len(msg) > maxReplyMessage {
		cut := maxReplyMessage
		for cut > 0 && !utf8.RuneStart(msg[cut]) {
			cut--
		}
		msg = msg[:cut]
	}
	payload := append([]byte{byte(r.Code)}, msg...)
	return WriteFrame(w, FrameReply, payload)
}

// ReadReply reads the Reply frame that answers Open.
func ReadReply(r io.Reader, max int) (Reply, error) {
	t, p, err := ReadFrame(r, max)
	if err != nil {
		return Reply{}, err
	}
	if t != FrameReply {
		return Reply{}, fmt.Errorf("%w: %s, want reply", ErrUnexpected, t)
	}
	if len(p) < 1 {
		return Reply{}, fmt.Errorf("%w: empty reply", ErrMalformed)
	}
	// The reason may be shown to a database client: keep it valid text.
	return Reply{Code: ReplyCode(p[0]), Message: strings.ToValidUTF8(string(p[1:]), "\uFFFD")}, nil
}

// Error describes a failed Reply as an error.
func (r *Reply) Error() string {
	if r.Message == "" {
		return r.Code.String()
	}
	return r.Code.String() + ": " + r.Message
}

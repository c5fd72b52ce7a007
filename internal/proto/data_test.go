package proto

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"
	"unicode/utf8"
)

// openPayload builds an Open payload by hand, so tests can write what
// Open.Append refuses to.
func openPayload(id uint64, fields ...string) []byte {
	b := AppendSeq(nil, id)
	for _, f := range fields {
		b = append(b, byte(len(f)))
		b = append(b, f...)
	}
	return b
}

func TestOpenRoundTrip(t *testing.T) {
	long := strings.Repeat("x", 255)
	tests := []struct {
		name string
		open Open
	}{
		{name: "typical", open: Open{SessionID: 0x0102030405060708, Target: "warehouse", Client: "10.1.2.3:50000", Route: "bi"}},
		{name: "ipv6 client", open: Open{SessionID: 1, Target: "db", Client: "[2001:db8::1]:65535", Route: "r"}},
		{name: "empty client and route", open: Open{Target: "t"}},
		{name: "largest session id", open: Open{SessionID: ^uint64(0), Target: "t"}},
		{name: "longest fields", open: Open{SessionID: 7, Target: long, Client: long, Route: long}},
		{name: "utf-8 names", open: Open{Target: "entrepôt", Client: "1.2.3.4:5", Route: "δρόμος"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			payload, err := tt.open.Append([]byte("prefix"))
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.HasPrefix(payload, []byte("prefix")) {
				t.Fatalf("Append dropped what b held")
			}
			payload = payload[len("prefix"):]
			if want := 8 + 3 + len(tt.open.Target) + len(tt.open.Client) + len(tt.open.Route); len(payload) != want {
				t.Errorf("payload of %d bytes, want %d", len(payload), want)
			}
			got, err := ParseOpen(payload)
			if err != nil || got != tt.open {
				t.Errorf("ParseOpen = %+v, %v; want %+v", got, err, tt.open)
			}

			var buf bytes.Buffer
			if err := WriteOpen(&buf, &tt.open); err != nil {
				t.Fatal(err)
			}
			got, err = ReadOpen(&buf, MaxPayload)
			if err != nil || got != tt.open {
				t.Errorf("ReadOpen = %+v, %v; want %+v", got, err, tt.open)
			}
		})
	}
}

func TestOpenAppendRefuses(t *testing.T) {
	long := strings.Repeat("x", 256)
	tests := []struct {
		name string
		open Open
	}{
		{name: "empty target", open: Open{Client: "1.2.3.4:5", Route: "r"}},
		{name: "target too long", open: Open{Target: long}},
		{name: "client too long", open: Open{Target: "t", Client: long}},
		{name: "route too long", open: Open{Target: "t", Route: long}},
		{name: "target not utf-8", open: Open{Target: "t\xff"}},
		{name: "client not utf-8", open: Open{Target: "t", Client: "\xc3"}},
		{name: "route not utf-8", open: Open{Target: "t", Route: "\xed\xa0\x80"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := tt.open.Append([]byte("keep"))
			if !errors.Is(err, ErrMalformed) {
				t.Errorf("Append err = %v, want ErrMalformed", err)
			}
			if string(b) != "keep" {
				t.Errorf("Append changed b on error: %q", b)
			}
			var buf bytes.Buffer
			if err := WriteOpen(&buf, &tt.open); !errors.Is(err, ErrMalformed) || buf.Len() != 0 {
				t.Errorf("WriteOpen wrote %d bytes, err = %v; want nothing and ErrMalformed", buf.Len(), err)
			}
		})
	}
}

func TestParseOpenRejects(t *testing.T) {
	tests := []struct {
		name    string
		payload []byte
	}{
		{name: "empty", payload: nil},
		{name: "short session id", payload: []byte{1, 2, 3, 4, 5, 6, 7}},
		{name: "no target length", payload: openPayload(1)},
		{name: "empty target", payload: openPayload(1, "", "1.2.3.4:5", "r")},
		{name: "target past the end", payload: openPayload(1, "warehouse")[:8+5]},
		{name: "no client length", payload: openPayload(1, "db")},
		{name: "client past the end", payload: append(openPayload(1, "db"), 20, '1')},
		{name: "no route length", payload: openPayload(1, "db", "1.2.3.4:5")},
		{name: "route past the end", payload: append(openPayload(1, "db", "1.2.3.4:5"), 3, 'b', 'i')},
		{name: "target not utf-8", payload: openPayload(1, "db\xff", "1.2.3.4:5", "r")},
		{name: "client not utf-8", payload: openPayload(1, "db", "\xc0\xaf", "r")},
		{name: "route not utf-8", payload: openPayload(1, "db", "1.2.3.4:5", "\xed\xa0\x80")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseOpen(tt.payload)
			if !errors.Is(err, ErrMalformed) {
				t.Errorf("err = %v, want ErrMalformed", err)
			}
			if got != (Open{}) {
				t.Errorf("got %+v with the error, want the zero Open", got)
			}
		})
	}
}

// A newer server may append fields to Open; this reader must ignore them.
func TestParseOpenIgnoresTrailingBytes(t *testing.T) {
	want := Open{SessionID: 9, Target: "db", Client: "1.2.3.4:5", Route: "r"}
	tests := []struct {
		name  string
		extra []byte
	}{
		{name: "one byte", extra: []byte{0}},
		{name: "a future field", extra: []byte{4, 'x', 'y', 'z', 'w'}},
		{name: "not utf-8", extra: []byte{0xff, 0xfe}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseOpen(append(openPayload(9, "db", "1.2.3.4:5", "r"), tt.extra...))
			if err != nil || got != want {
				t.Errorf("ParseOpen = %+v, %v; want %+v", got, err, want)
			}
		})
	}
}

func TestReadOpenRejects(t *testing.T) {
	good := encode(t, FrameOpen, openPayload(1, "db", "1.2.3.4:5", "r"))
	tests := []struct {
		name string
		data []byte
		max  int
		want error
	}{
		{name: "wrong frame", data: encode(t, FramePing, AppendSeq(nil, 1)), max: 64, want: ErrUnexpected},
		{name: "over the limit", data: good, max: len(good) - headerLen - 1, want: ErrFrameTooLarge},
		{name: "bad payload", data: encode(t, FrameOpen, []byte{1}), max: 64, want: ErrMalformed},
		{name: "truncated", data: good[:len(good)-1], max: 64, want: io.ErrUnexpectedEOF},
		{name: "nothing", data: nil, max: 64, want: io.EOF},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := ReadOpen(bytes.NewReader(tt.data), tt.max); !errors.Is(err, tt.want) {
				t.Errorf("err = %v, want %v", err, tt.want)
			}
		})
	}
}

func TestReplyRoundTrip(t *testing.T) {
	tests := []struct {
		name  string
		reply Reply
	}{
		{name: "ok", reply: Reply{Code: ReplyOK}},
		{name: "unknown target", reply: Reply{Code: ReplyUnknownTarget, Message: `agent "a" declares no target "x"`}},
		{name: "dial failed", reply: Reply{Code: ReplyDialFailed, Message: "connection refused"}},
		{name: "limit reached", reply: Reply{Code: ReplyLimitReached, Message: "100 open sessions"}},
		{name: "bad request", reply: Reply{Code: ReplyBadRequest, Message: "bad header"}},
		{name: "shutting down", reply: Reply{Code: ReplyShuttingDown}},
		{name: "utf-8 message", reply: Reply{Code: ReplyDialFailed, Message: "délai dépassé ⏱"}},
		{name: "longest message", reply: Reply{Code: ReplyDialFailed, Message: strings.Repeat("m", maxReplyMessage)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var buf bytes.Buffer
			if err := WriteReply(&buf, &tt.reply); err != nil {
				t.Fatal(err)
			}
			buf.WriteString("client bytes")
			got, err := ReadReply(&buf, 4096)
			if err != nil || got != tt.reply {
				t.Errorf("ReadReply = %+v, %v; want %+v", got, err, tt.reply)
			}
			if buf.String() != "client bytes" {
				t.Errorf("left %q after the reply", buf.String())
			}
		})
	}
}

func TestWriteReplyCutsLongMessages(t *testing.T) {
	tests := []struct {
		name    string
		message string
		want    string
	}{
		{name: "ascii", message: strings.Repeat("a", 5000), want: strings.Repeat("a", maxReplyMessage)},
		{name: "one over", message: strings.Repeat("a", maxReplyMessage+1), want: strings.Repeat("a", maxReplyMessage)},
		{name: "2-byte rune across the cut", message: strings.Repeat("a", maxReplyMessage-1) + "é", want: strings.Repeat("a", maxReplyMessage-1)},
		{name: "3-byte rune across the cut", message: strings.Repeat("a", maxReplyMessage-2) + "€€", want: strings.Repeat("a", maxReplyMessage-2)},
		{name: "4-byte rune across the cut", message: strings.Repeat("a", maxReplyMessage-1) + "🐘", want: strings.Repeat("a", maxReplyMessage-1)},
		{name: "rune ends at the cut", message: strings.Repeat("a", maxReplyMessage-2) + "é" + "tail", want: strings.Repeat("a", maxReplyMessage-2) + "é"},
		{name: "all multibyte", message: strings.Repeat("€", 400), want: strings.Repeat("€", maxReplyMessage/3)},
		// A bad byte early on used to make the cut loop eat the whole
		// message.
		{name: "invalid byte, long", message: "\xff" + strings.Repeat("a", 2000), want: "\uFFFD" + strings.Repeat("a", maxReplyMessage-3)},
		{name: "invalid byte, short", message: "bad \xc3 byte", want: "bad \uFFFD byte"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var buf bytes.Buffer
			if err := WriteReply(&buf, &Reply{Code: ReplyDialFailed, Message: tt.message}); err != nil {
				t.Fatal(err)
			}
			got, err := ReadReply(&buf, MaxPayload)
			if err != nil {
				t.Fatal(err)
			}
			if len(got.Message) > maxReplyMessage || !utf8.ValidString(got.Message) {
				t.Errorf("message of %d bytes, valid UTF-8 %v", len(got.Message), utf8.ValidString(got.Message))
			}
			if got.Message != tt.want {
				t.Errorf("message of %d bytes %.20q..., want %d bytes %.20q...", len(got.Message), got.Message, len(tt.want), tt.want)
			}
		})
	}
}

func TestReadReplyRejects(t *testing.T) {
	tests := []struct {
		name string
		data []byte
		want error
	}{
		{name: "empty payload", data: encode(t, FrameReply, nil), want: ErrMalformed},
		{name: "wrong frame", data: encode(t, FrameOpen, openPayload(1, "db", "", "")), want: ErrUnexpected},
		{name: "over the limit", data: encode(t, FrameReply, make([]byte, 65)), want: ErrFrameTooLarge},
		{name: "truncated", data: encode(t, FrameReply, []byte("\x02msg"))[:4], want: io.ErrUnexpectedEOF},
		{name: "nothing", data: nil, want: io.EOF},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := ReadReply(bytes.NewReader(tt.data), 64); !errors.Is(err, tt.want) {
				t.Errorf("err = %v, want %v", err, tt.want)
			}
		})
	}
}

// A newer agent may answer with a code this server does not know; it must
// still reach the server's logic (as a failure) rather than break the stream.
func TestReplyUnknownCode(t *testing.T) {
	got, err := ReadReply(bytes.NewReader(encode(t, FrameReply, []byte("\xc8try later"))), 64)
	if err != nil {
		t.Fatal(err)
	}
	if got.Code != 200 || got.Message != "try later" {
		t.Errorf("got %+v", got)
	}
	if s := got.Code.String(); s != "reply code 200" {
		t.Errorf("String() = %q", s)
	}
	if s := got.Error(); s != "reply code 200: try later" {
		t.Errorf("Error() = %q", s)
	}
}

func TestReplyCodeString(t *testing.T) {
	tests := []struct {
		code ReplyCode
		want string
	}{
		{ReplyOK, "ok"},
		{ReplyUnknownTarget, "unknown target"},
		{ReplyDialFailed, "dial failed"},
		{ReplyLimitReached, "limit reached"},
		{ReplyBadRequest, "bad request"},
		{ReplyShuttingDown, "shutting down"},
		{ReplyCode(6), "reply code 6"},
		{ReplyCode(255), "reply code 255"},
	}
	for _, tt := range tests {
		t.Run(tt.want, func(t *testing.T) {
			if got := tt.code.String(); got != tt.want {
				t.Errorf("String() = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestReplyError(t *testing.T) {
	tests := []struct {
		name  string
		reply Reply
		want  string
	}{
		{name: "no message", reply: Reply{Code: ReplyLimitReached}, want: "limit reached"},
		{name: "message", reply: Reply{Code: ReplyDialFailed, Message: "timeout"}, want: "dial failed: timeout"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.reply.Error(); got != tt.want {
				t.Errorf("Error() = %q, want %q", got, tt.want)
			}
		})
	}
}

func FuzzParseOpen(f *testing.F) {
	f.Add(openPayload(0x0102030405060708, "warehouse", "10.1.2.3:50000", "bi"))
	f.Add(openPayload(1, "db", "", ""))
	f.Add(append(openPayload(1, "db", "[::1]:5", "r"), 1, 2, 3))
	f.Add(openPayload(1, "", "x", "y"))
	f.Add(openPayload(1, "db\xff", "x", "y"))
	f.Add([]byte{1, 2, 3})
	f.Fuzz(func(t *testing.T, payload []byte) {
		o, err := ParseOpen(payload)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("error %v is not ErrMalformed", err)
			}
			return
		}
		again, err := o.Append(nil)
		if err != nil {
			t.Fatalf("parsed %+v but cannot encode it: %v", o, err)
		}
		// Trailing bytes are ignored, so the encoding is a prefix.
		if !bytes.HasPrefix(payload, again) {
			t.Fatalf("re-encoded %x is not a prefix of %x", again, payload)
		}
	})
}

func FuzzReadReply(f *testing.F) {
	for _, r := range []Reply{
		{Code: ReplyOK},
		{Code: ReplyDialFailed, Message: "connection refused"},
		{Code: ReplyUnknownTarget, Message: "déclaré"},
		{Code: 200, Message: "future"},
	} {
		var buf bytes.Buffer
		if err := WriteReply(&buf, &r); err != nil {
			f.Fatal(err)
		}
		f.Add(buf.Bytes())
	}
	f.Add(encode(f, FrameReply, nil))
	f.Add(encode(f, FrameReply, []byte("\x02\xff\xfe")))
	// One bad byte used to make WriteReply drop a long reason entirely.
	f.Add(encode(f, FrameReply, []byte("\x02\xff"+strings.Repeat("a", 1100))))
	f.Add(encode(f, FrameOpen, []byte("\x00")))
	f.Fuzz(func(t *testing.T, data []byte) {
		const max = 2048
		r := bytes.NewReader(data)
		reply, err := ReadReply(r, max)
		if err != nil {
			return
		}
		read := len(data) - r.Len()
		var buf bytes.Buffer
		if err := WriteReply(&buf, &reply); err != nil {
			t.Fatalf("cannot write back %+v: %v", reply, err)
		}
		// What WriteReply sends is always within bounds and valid.
		back, err := ReadReply(bytes.NewReader(buf.Bytes()), max)
		if err != nil {
			t.Fatalf("cannot read back: %v", err)
		}
		if back.Code != reply.Code || len(back.Message) > maxReplyMessage || !utf8.ValidString(back.Message) {
			t.Fatalf("wrote %+v, read back %+v", reply, back)
		}
		// The reason survives: whole, or cut no more than needed.
		if whole := strings.ToValidUTF8(reply.Message, "\uFFFD"); back.Message != whole &&
			(len(back.Message) <= maxReplyMessage-utf8.UTFMax || !strings.HasPrefix(whole, back.Message)) {
			t.Fatalf("message %.40q... came back as %d bytes %.40q...", reply.Message, len(back.Message), back.Message)
		}
		// A message WriteReply would send unchanged re-encodes to the
		// same bytes.
		if len(reply.Message) <= maxReplyMessage && utf8.Valid(data[headerLen+1:read]) {
			if !bytes.Equal(buf.Bytes(), data[:read]) {
				t.Fatalf("re-encoded %x, read %x", buf.Bytes(), data[:read])
			}
		}
	})
}

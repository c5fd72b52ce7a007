package proto

import (
	"bytes"
	"errors"
	"io"
	"reflect"
	"testing"
)

// encode builds one frame with AppendFrame, failing the test on error.
func encode(t testing.TB, ft FrameType, payload []byte) []byte {
	t.Helper()
	b, err := AppendFrame(nil, ft, payload)
	if err != nil {
		t.Fatalf("AppendFrame(%s, %d bytes): %v", ft, len(payload), err)
	}
	return b
}

// openBytes is the payload of a valid Open.
func openBytes(t testing.TB, o Open) []byte {
	t.Helper()
	b, err := o.Append(nil)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestFrameRoundTrip(t *testing.T) {
	open := Open{SessionID: 0x0102030405060708, Target: "warehouse", Client: "10.1.2.3:50000", Route: "bi"}
	tests := []struct {
		name  string
		write func(io.Writer) error
		ft    FrameType
		// check decodes the payload and compares it with what was written.
		check func(t *testing.T, payload []byte)
	}{
		{
			name:  "hello",
			write: func(w io.Writer) error { return WriteJSON(w, FrameHello, testHello()) },
			ft:    FrameHello,
			check: func(t *testing.T, p []byte) {
				var got Hello
				if err := DecodeJSON(FrameHello, p, &got); err != nil {
					t.Fatal(err)
				}
				if want := testHello(); !reflect.DeepEqual(&got, want) {
					t.Errorf("got %+v, want %+v", got, *want)
				}
			},
		},
		{
			name:  "welcome",
			write: func(w io.Writer) error { return WriteJSON(w, FrameWelcome, testWelcome()) },
			ft:    FrameWelcome,
			check: func(t *testing.T, p []byte) {
				var got Welcome
				if err := DecodeJSON(FrameWelcome, p, &got); err != nil {
					t.Fatal(err)
				}
				if want := testWelcome(); got != *want {
					t.Errorf("got %+v, want %+v", got, *want)
				}
			},
		},
		{
			name:  "refuse",
			write: func(w io.Writer) error { return WriteJSON(w, FrameRefuse, testRefuse()) },
			ft:    FrameRefuse,
			check: func(t *testing.T, p []byte) {
				var got Refuse
				if err := DecodeJSON(FrameRefuse, p, &got); err != nil {
					t.Fatal(err)
				}
				if want := testRefuse(); got != *want {
					t.Errorf("got %+v, want %+v", got, *want)
				}
			},
		},
		{
			name:  "ping",
			write: func(w io.Writer) error { return WriteFrame(w, FramePing, AppendSeq(nil, 42)) },
			ft:    FramePing,
			check: func(t *testing.T, p []byte) {
				if seq, err := ParseSeq(p); err != nil || seq != 42 {
					t.Errorf("ParseSeq = %d, %v; want 42", seq, err)
				}
			},
		},
		{
			name:  "pong",
			write: func(w io.Writer) error { return WriteFrame(w, FramePong, AppendSeq(nil, 1<<63+7)) },
			ft:    FramePong,
			check: func(t *testing.T, p []byte) {
				if seq, err := ParseSeq(p); err != nil || seq != 1<<63+7 {
					t.Errorf("ParseSeq = %d, %v; want %d", seq, err, uint64(1<<63+7))
				}
			},
		},
		{
			name:  "open",
			write: func(w io.Writer) error { return WriteOpen(w, &open) },
			ft:    FrameOpen,
			check: func(t *testing.T, p []byte) {
				got, err := ParseOpen(p)
				if err != nil || got != open {
					t.Errorf("ParseOpen = %+v, %v; want %+v", got, err, open)
				}
			},
		},
		{
			name: "reply",
			write: func(w io.Writer) error {
				return WriteReply(w, &Reply{Code: ReplyDialFailed, Message: "connection refused"})
			},
			ft: FrameReply,
			check: func(t *testing.T, p []byte) {
				if want := "\x02connection refused"; string(p) != want {
					t.Errorf("payload %q, want %q", p, want)
				}
			},
		},
		{
			name:  "empty payload",
			write: func(w io.Writer) error { return WriteFrame(w, FrameType(0x7f), nil) },
			ft:    FrameType(0x7f),
			check: func(t *testing.T, p []byte) {
				if len(p) != 0 {
					t.Errorf("payload %q, want empty", p)
				}
			},
		},
		{
			name:  "largest payload",
			write: func(w io.Writer) error { return WriteFrame(w, FrameReply, bytes.Repeat([]byte{'x'}, MaxPayload)) },
			ft:    FrameReply,
			check: func(t *testing.T, p []byte) {
				if len(p) != MaxPayload || p[0] != 'x' || p[MaxPayload-1] != 'x' {
					t.Errorf("payload of %d bytes, want %d", len(p), MaxPayload)
				}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := &countingWriter{}
			if err := tt.write(w); err != nil {
				t.Fatal(err)
			}
			if w.writes != 1 {
				t.Errorf("frame written in %d Writes, want 1", w.writes)
			}
			r := bytes.NewReader(w.buf.Bytes())
			ft, payload, err := ReadFrame(r, MaxPayload)
			if err != nil {
				t.Fatal(err)
			}
			if ft != tt.ft {
				t.Errorf("type %s, want %s", ft, tt.ft)
			}
			if r.Len() != 0 {
				t.Errorf("%d bytes left after the frame", r.Len())
			}
			if got := headerLen + len(payload); got != w.buf.Len() {
				t.Errorf("frame is %d bytes, header says %d", w.buf.Len(), got)
			}
			tt.check(t, payload)
		})
	}
}

// countingWriter records the bytes and how many Write calls brought them.
type countingWriter struct {
	buf    bytes.Buffer
	writes int
}

func (w *countingWriter) Write(p []byte) (int, error) {
	w.writes++
	return w.buf.Write(p)
}

// headerOnlyReader serves a frame but fails the test if anything asks for
// more than its header.
type headerOnlyReader struct {
	t    *testing.T
	data []byte
	off  int
}

func (r *headerOnlyReader) Read(p []byte) (int, error) {
	if r.off+len(p) > headerLen {
		r.t.Errorf("read of %d bytes at offset %d: past the %d-byte header", len(p), r.off, headerLen)
		return 0, errors.New("read past the header")
	}
	n := copy(p, r.data[r.off:])
	r.off += n
	return n, nil
}

func TestReadFrameTooLarge(t *testing.T) {
	tests := []struct {
		name     string
		length   int
		max      int
		wantType FrameType
	}{
		{name: "one over the limit", length: 4097, max: 4096, wantType: FrameHello},
		{name: "largest length, small limit", length: MaxPayload, max: 16, wantType: FrameOpen},
		{name: "any length, zero limit", length: 1, max: 0, wantType: FramePing},
		{name: "negative limit", length: 0, max: -1, wantType: FrameReply},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			data := append([]byte{byte(tt.wantType), byte(tt.length >> 8), byte(tt.length)}, make([]byte, tt.length)...)
			ft, payload, err := ReadFrame(&headerOnlyReader{t: t, data: data}, tt.max)
			if !errors.Is(err, ErrFrameTooLarge) {
				t.Fatalf("err = %v, want ErrFrameTooLarge", err)
			}
			if payload != nil {
				t.Errorf("payload of %d bytes returned with the error", len(payload))
			}
			if ft != tt.wantType {
				t.Errorf("type %s, want %s (for the error message)", ft, tt.wantType)
			}
		})
	}
}

func TestReadFrameAtLimit(t *testing.T) {
	data := encode(t, FrameHello, bytes.Repeat([]byte{'a'}, 100))
	_, payload, err := ReadFrame(bytes.NewReader(data), 100)
	if err != nil || len(payload) != 100 {
		t.Fatalf("ReadFrame = %d bytes, %v; want 100 bytes", len(payload), err)
	}
}

func TestReadFrameLeavesTheRest(t *testing.T) {
	tests := []struct {
		name string
		rest []byte
	}{
		{name: "next frame", rest: encode(t, FramePong, AppendSeq(nil, 9))},
		{name: "raw data after reply", rest: []byte("SELECT 1;")},
		{name: "nothing", rest: nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			first := encode(t, FramePing, AppendSeq(nil, 7))
			r := bytes.NewReader(append(append([]byte{}, first...), tt.rest...))
			ft, payload, err := ReadFrame(r, 64)
			if err != nil {
				t.Fatal(err)
			}
			if ft != FramePing || !bytes.Equal(payload, AppendSeq(nil, 7)) {
				t.Errorf("got %s %x, want ping %x", ft, payload, AppendSeq(nil, 7))
			}
			rest, _ := io.ReadAll(r)
			if !bytes.Equal(rest, tt.rest) {
				t.Errorf("left %x in the reader, want %x", rest, tt.rest)
			}
		})
	}
}

func TestReadFrameTruncated(t *testing.T) {
	full := encode(t, FrameReply, []byte("\x02refused"))
	tests := []struct {
		name string
		data []byte
		want error
	}{
		{name: "empty", data: nil, want: io.EOF},
		{name: "one header byte", data: full[:1], want: io.ErrUnexpectedEOF},
		{name: "two header bytes", data: full[:2], want: io.ErrUnexpectedEOF},
		{name: "header only", data: full[:headerLen], want: io.ErrUnexpectedEOF},
		{name: "half the payload", data: full[:headerLen+4], want: io.ErrUnexpectedEOF},
		{name: "one byte short", data: full[:len(full)-1], want: io.ErrUnexpectedEOF},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, payload, err := ReadFrame(bytes.NewReader(tt.data), 64)
			if err != tt.want {
				t.Errorf("err = %v, want %v", err, tt.want)
			}
			if payload != nil {
				t.Errorf("payload %q returned with the error", payload)
			}
		})
	}
}

func TestReadFrameReaderError(t *testing.T) {
	boom := errors.New("boom")
	r := io.MultiReader(bytes.NewReader(encode(t, FrameReply, []byte("\x00"))[:headerLen]), errReader{boom})
	if _, _, err := ReadFrame(r, 64); err != boom {
		t.Errorf("err = %v, want the reader's error", err)
	}
}

type errReader struct{ err error }

func (r errReader) Read([]byte) (int, error) { return 0, r.err }

func TestFrameTooLargeToWrite(t *testing.T) {
	tests := []struct {
		name    string
		size    int
		wantErr bool
	}{
		{name: "largest", size: MaxPayload},
		{name: "one over", size: MaxPayload + 1, wantErr: true},
		{name: "far over", size: 1 << 20, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			payload := make([]byte, tt.size)
			prefix := []byte("keep")
			b, err := AppendFrame(prefix, FrameReply, payload)
			if tt.wantErr {
				if !errors.Is(err, ErrFrameTooLarge) {
					t.Errorf("AppendFrame err = %v, want ErrFrameTooLarge", err)
				}
				if string(b) != "keep" {
					t.Errorf("AppendFrame changed b on error: %d bytes", len(b))
				}
			} else if err != nil || len(b) != len(prefix)+headerLen+tt.size {
				t.Errorf("AppendFrame = %d bytes, %v", len(b), err)
			}

			w := &countingWriter{}
			err = WriteFrame(w, FrameReply, payload)
			if tt.wantErr {
				if !errors.Is(err, ErrFrameTooLarge) {
					t.Errorf("WriteFrame err = %v, want ErrFrameTooLarge", err)
				}
				if w.writes != 0 {
					t.Errorf("WriteFrame wrote %d bytes of a frame it refused", w.buf.Len())
				}
			} else if err != nil {
				t.Errorf("WriteFrame: %v", err)
			}
		})
	}
}

func TestFrameTypeString(t *testing.T) {
	tests := []struct {
		ft   FrameType
		want string
	}{
		{FrameHello, "hello"},
		{FrameWelcome, "welcome"},
		{FrameRefuse, "refuse"},
		{FramePing, "ping"},
		{FramePong, "pong"},
		{FrameOpen, "open"},
		{FrameReply, "reply"},
		{FrameType(0), "frame(0x00)"},
		{FrameType(0xab), "frame(0xab)"},
	}
	for _, tt := range tests {
		t.Run(tt.want, func(t *testing.T) {
			if got := tt.ft.String(); got != tt.want {
				t.Errorf("String() = %q, want %q", got, tt.want)
			}
		})
	}
}

// limitedReader counts what ReadFrame takes from it.
type limitedReader struct {
	r    io.Reader
	read int
}

func (r *limitedReader) Read(p []byte) (int, error) {
	n, err := r.r.Read(p)
	r.read += n
	return n, err
}

func FuzzReadFrame(f *testing.F) {
	f.Add(encode(f, FramePing, AppendSeq(nil, 42)), uint16(16))
	f.Add(encode(f, FrameReply, []byte("\x00")), uint16(16))
	f.Add(encode(f, FrameReply, []byte("\x02dial failed")), uint16(8))
	f.Add(encode(f, FrameOpen, openBytes(f, Open{SessionID: 1, Target: "db", Client: "1.2.3.4:5", Route: "r"})), uint16(64))
	f.Add(encode(f, FrameHello, []byte(`{"version":1,"targets":["db"]}`)), uint16(64))
	f.Add([]byte{0x01, 0xff, 0xff}, uint16(64))
	f.Add([]byte{0x04, 0x00}, uint16(64))
	f.Add([]byte{}, uint16(0))
	f.Fuzz(func(t *testing.T, data []byte, max16 uint16) {
		max := int(max16 % 512) // small limits, so oversize frames are common
		r := &limitedReader{r: bytes.NewReader(data)}
		ft, payload, err := ReadFrame(r, max)
		if r.read > headerLen+max {
			t.Fatalf("read %d bytes with a limit of %d", r.read, max)
		}
		if err != nil {
			if payload != nil {
				t.Fatalf("payload with error %v", err)
			}
			if errors.Is(err, ErrFrameTooLarge) && r.read != headerLen {
				t.Fatalf("read %d bytes before refusing an oversize frame", r.read)
			}
			return
		}
		if len(payload) > max || cap(payload) > max {
			t.Fatalf("payload len %d cap %d over the limit %d", len(payload), cap(payload), max)
		}
		if r.read != headerLen+len(payload) {
			t.Fatalf("read %d bytes for a frame of %d", r.read, headerLen+len(payload))
		}
		again, err := AppendFrame(nil, ft, payload)
		if err != nil {
			t.Fatalf("re-encode: %v", err)
		}
		if !bytes.Equal(again, data[:r.read]) {
			t.Fatalf("re-encoded %x, read %x", again, data[:r.read])
		}
	})
}

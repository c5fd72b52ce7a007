package proto

import (
	"bytes"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"
)

func testHello() *Hello {
	return &Hello{
		Version:      1,
		AgentVersion: "1.4.2",
		Targets:      []string{"warehouse", "crm"},
		Capabilities: []string{"half-close"},
		Instance:     "6f1c2a9e",
		Probe:        true,
	}
}

func testWelcome() *Welcome {
	return &Welcome{Version: 1, HeartbeatIntervalMS: 5000, HeartbeatTimeoutMS: 15000, ServerVersion: "1.5.0"}
}

func testRefuse() *Refuse {
	return &Refuse{Code: RefuseAgentDisabled, Message: `agent "acme" is disabled on this server`}
}

func TestControlJSONRoundTrip(t *testing.T) {
	tests := []struct {
		name string
		ft   FrameType
		in   any
		out  func() any // a fresh value of the same type to decode into
	}{
		{name: "hello", ft: FrameHello, in: testHello(), out: func() any { return new(Hello) }},
		{name: "minimal hello", ft: FrameHello, in: &Hello{Version: 1, Targets: []string{}}, out: func() any { return new(Hello) }},
		{name: "welcome", ft: FrameWelcome, in: testWelcome(), out: func() any { return new(Welcome) }},
		{name: "refuse", ft: FrameRefuse, in: testRefuse(), out: func() any { return new(Refuse) }},
		{name: "refuse with an unknown code", ft: FrameRefuse, in: &Refuse{Code: "new_reason", Message: "m"}, out: func() any { return new(Refuse) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var buf bytes.Buffer
			if err := WriteJSON(&buf, tt.ft, tt.in); err != nil {
				t.Fatal(err)
			}
			ft, payload, err := ReadFrame(&buf, 4096)
			if err != nil {
				t.Fatal(err)
			}
			if ft != tt.ft {
				t.Errorf("type %s, want %s", ft, tt.ft)
			}
			got := tt.out()
			if err := DecodeJSON(ft, payload, got); err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tt.in) {
				t.Errorf("got %+v, want %+v", got, tt.in)
			}
		})
	}
}

// Newer peers may add fields; older readers must not choke on them.
func TestDecodeJSONIgnoresUnknownFields(t *testing.T) {
	tests := []struct {
		name    string
		payload string
		into    any
		want    any
	}{
		{
			name:    "hello",
			payload: `{"version":2,"targets":["db"],"region":"eu","limits":{"sessions":5},"instance":"i"}`,
			into:    new(Hello),
			want:    &Hello{Version: 2, Targets: []string{"db"}, Instance: "i"},
		},
		{
			name:    "welcome",
			payload: `{"version":1,"heartbeat_interval_ms":5000,"heartbeat_timeout_ms":15000,"replicas":["a","b"]}`,
			into:    new(Welcome),
			want:    &Welcome{Version: 1, HeartbeatIntervalMS: 5000, HeartbeatTimeoutMS: 15000},
		},
		{
			name:    "refuse",
			payload: `{"code":"unknown_agent","message":"m","retry_after_ms":1000}`,
			into:    new(Refuse),
			want:    &Refuse{Code: RefuseUnknownAgent, Message: "m"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := DecodeJSON(FrameHello, []byte(tt.payload), tt.into); err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(tt.into, tt.want) {
				t.Errorf("got %+v, want %+v", tt.into, tt.want)
			}
		})
	}
}

func TestDecodeJSONRejects(t *testing.T) {
	tests := []struct {
		name    string
		payload string
	}{
		{name: "empty", payload: ``},
		{name: "not json", payload: `hello`},
		{name: "truncated", payload: `{"version":1,"targets":["db"`},
		{name: "wrong type", payload: `{"version":"1"}`},
		{name: "array", payload: `[1]`},
		{name: "trailing garbage", payload: `{"version":1} x`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := DecodeJSON(FrameHello, []byte(tt.payload), new(Hello))
			if !errors.Is(err, ErrMalformed) {
				t.Errorf("err = %v, want ErrMalformed", err)
			}
			if err != nil && !strings.Contains(err.Error(), "hello") {
				t.Errorf("error %q does not name the frame", err)
			}
		})
	}
}

func TestHelloValidate(t *testing.T) {
	many := make([]string, maxTargets+1)
	for i := range many {
		many[i] = "t"
	}
	tests := []struct {
		name    string
		hello   Hello
		wantErr bool
	}{
		{name: "typical", hello: *testHello()},
		{name: "no targets", hello: Hello{Version: 1}},
		{name: "newer version", hello: Hello{Version: Version + 5, Targets: []string{"db"}}},
		{name: "most targets", hello: Hello{Version: 1, Targets: many[:maxTargets]}},
		{name: "longest name", hello: Hello{Version: 1, Targets: []string{strings.Repeat("n", maxNameLen)}}},
		{name: "version zero", hello: Hello{Targets: []string{"db"}}, wantErr: true},
		{name: "negative version", hello: Hello{Version: -1}, wantErr: true},
		{name: "too many targets", hello: Hello{Version: 1, Targets: many}, wantErr: true},
		{name: "empty target name", hello: Hello{Version: 1, Targets: []string{"db", ""}}, wantErr: true},
		{name: "target name too long", hello: Hello{Version: 1, Targets: []string{strings.Repeat("n", maxNameLen+1)}}, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.hello.Validate()
			if tt.wantErr && !errors.Is(err, ErrMalformed) {
				t.Errorf("err = %v, want ErrMalformed", err)
			}
			if !tt.wantErr && err != nil {
				t.Errorf("err = %v, want nil", err)
			}
		})
	}
}

func TestRefuseCodePermanent(t *testing.T) {
	tests := []struct {
		code RefuseCode
		want bool
	}{
		{RefuseUnknownAgent, true},
		{RefuseAgentDisabled, true},
		{RefuseKeyMismatch, true},
		{RefuseUnsupportedVersion, true},
		{RefuseAlreadyConnected, false},
		{RefuseBadHello, true},
		{RefuseShuttingDown, false},
		{RefuseInternal, false},
		// A code from a newer server: keep trying rather than give up.
		{RefuseCode("some_future_reason"), false},
		{RefuseCode(""), false},
	}
	for _, tt := range tests {
		t.Run(string(tt.code), func(t *testing.T) {
			if got := tt.code.Permanent(); got != tt.want {
				t.Errorf("Permanent() = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestRefuseError(t *testing.T) {
	r := testRefuse()
	if got, want := r.Error(), `refused by server: agent "acme" is disabled on this server`; got != want {
		t.Errorf("Error() = %q, want %q", got, want)
	}
}

func TestWelcomeDurations(t *testing.T) {
	w := testWelcome()
	if got := w.HeartbeatInterval(); got != 5*time.Second {
		t.Errorf("HeartbeatInterval() = %v", got)
	}
	if got := w.HeartbeatTimeout(); got != 15*time.Second {
		t.Errorf("HeartbeatTimeout() = %v", got)
	}
}

func TestParseSeq(t *testing.T) {
	tests := []struct {
		name    string
		payload []byte
		want    uint64
		wantErr bool
	}{
		{name: "zero", payload: AppendSeq(nil, 0), want: 0},
		{name: "42", payload: AppendSeq(nil, 42), want: 42},
		{name: "largest", payload: AppendSeq(nil, ^uint64(0)), want: ^uint64(0)},
		{name: "trailing bytes ignored", payload: append(AppendSeq(nil, 7), 1, 2, 3), want: 7},
		{name: "empty", payload: nil, wantErr: true},
		{name: "seven bytes", payload: AppendSeq(nil, 42)[:7], wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseSeq(tt.payload)
			if tt.wantErr {
				if !errors.Is(err, ErrMalformed) {
					t.Errorf("err = %v, want ErrMalformed", err)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Errorf("ParseSeq = %d, %v; want %d", got, err, tt.want)
			}
		})
	}
}

func TestAppendSeqBigEndian(t *testing.T) {
	if got := AppendSeq([]byte{0xaa}, 0x0102030405060708); !bytes.Equal(got, []byte{0xaa, 1, 2, 3, 4, 5, 6, 7, 8}) {
		t.Errorf("AppendSeq = %x", got)
	}
}

func FuzzDecodeHello(f *testing.F) {
	for _, h := range []*Hello{testHello(), {Version: 1, Targets: []string{}}} {
		var buf bytes.Buffer
		if err := WriteJSON(&buf, FrameHello, h); err != nil {
			f.Fatal(err)
		}
		f.Add(buf.Bytes()[headerLen:])
	}
	f.Add([]byte(`{"version":0,"targets":[""]}`))
	f.Add([]byte(`{"version":1,"targets":null,"future":{"a":[1,2,3]}}`))
	f.Add([]byte(`{"version":1e400}`))
	f.Add([]byte("{\"targets\":[\"\\ud800\",\"\xff\"]}"))
	f.Add([]byte(`[[[[[[[[[[`))
	f.Fuzz(func(t *testing.T, payload []byte) {
		var h Hello
		if err := DecodeJSON(FrameHello, payload, &h); err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("error %v is not ErrMalformed", err)
			}
			return
		}
		verr := h.Validate()
		if verr != nil && !errors.Is(verr, ErrMalformed) {
			t.Fatalf("Validate error %v is not ErrMalformed", verr)
		}
		// What decodes must survive a trip through the encoder unchanged
		// (up to empty versus absent lists) and validate the same way.
		var buf bytes.Buffer
		if err := WriteJSON(&buf, FrameHello, &h); err != nil {
			// Only a Hello too large for one frame may fail to encode.
			if !errors.Is(err, ErrFrameTooLarge) {
				t.Fatalf("cannot encode %+v: %v", h, err)
			}
			return
		}
		var again Hello
		if err := DecodeJSON(FrameHello, buf.Bytes()[headerLen:], &again); err != nil {
			t.Fatalf("cannot decode what was encoded: %v", err)
		}
		if !reflect.DeepEqual(normalizeHello(h), normalizeHello(again)) {
			t.Fatalf("round trip changed %+v to %+v", h, again)
		}
		if (again.Validate() == nil) != (verr == nil) {
			t.Fatalf("Validate gave %v, then %v after a round trip", verr, again.Validate())
		}
	})
}

func normalizeHello(h Hello) Hello {
	if len(h.Targets) == 0 {
		h.Targets = nil
	}
	if len(h.Capabilities) == 0 {
		h.Capabilities = nil
	}
	return h
}

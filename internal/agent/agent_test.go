package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/tunnelrelay/tunnel/internal/logging"
	"github.com/tunnelrelay/tunnel/internal/proto"
	"github.com/tunnelrelay/tunnel/pkg/mux"
)

// noDial stands in for the dialers of an agent whose connection the test
// never makes.
func noDial(context.Context) (mux.Session, error) { return nil, errors.New("unused") }

// TestBackoff: full jitter under an exponential ceiling: the first retry is
// well under a second, the ceiling doubles, and it stops at BackoffMax.
func TestBackoff(t *testing.T) {
	a, err := New(Options{DialTLS: noDial, DialQUIC: noDial})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		attempt int
		ceiling time.Duration
	}{
		{0, 500 * time.Millisecond},
		{1, time.Second},
		{3, 4 * time.Second},
		{6, 30 * time.Second},
		{40, 30 * time.Second},
		{1000, 30 * time.Second},
	} {
		t.Run(fmt.Sprint(tc.attempt), func(t *testing.T) {
			var lo, hi time.Duration = time.Hour, 0
			for range 2000 {
				d := a.backoff(tc.attempt)
				lo, hi = min(lo, d), max(hi, d)
			}
			if hi > tc.ceiling+time.Millisecond {
				t.Errorf("longest wait %v, ceiling %v", hi, tc.ceiling)
			}
			// Full jitter: the waits spread over the whole range.
			if lo > tc.ceiling/10 || hi < tc.ceiling*8/10 {
				t.Errorf("waits from %v to %v do not spread over [0, %v)", lo, hi, tc.ceiling)
			}
		})
	}
}

// TestConnErrDetail: check's line for a server it could not use says why
// once.
func TestConnErrDetail(t *testing.T) {
	ref := &proto.Refuse{Code: proto.RefuseUnknownAgent, Message: `agent "a1" is not registered on this server (was it removed?)`}
	if got, want := connErrDetail("srv:7443", fmt.Errorf("hello: %w", ref)), `srv:7443: refused by server: agent "a1" is not registered on this server (was it removed?)`; got != want {
		t.Errorf("refused: got %q, want %q", got, want)
	}
	if got, want := connErrDetail("srv:7443", errors.New("dial tcp: connection refused")), "srv:7443: cannot connect to server: dial tcp: connection refused"; got != want {
		t.Errorf("unreachable: got %q, want %q", got, want)
	}
}

func TestDescribeDialErr(t *testing.T) {
	for _, tc := range []struct {
		name string
		err  error
		want string
	}{
		{"refused", &net.OpError{Op: "dial", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}, `target "db" refused the connection`},
		{"timeout", fmt.Errorf("dial: %w", context.DeadlineExceeded), `target "db" did not answer within 10s`},
		{"dns", &net.OpError{Op: "dial", Err: &net.DNSError{Err: "no such host", Name: "db.internal"}}, `target "db": its host name does not resolve`},
		{"unreachable", &net.OpError{Op: "dial", Err: os.NewSyscallError("connect", syscall.EHOSTUNREACH)}, `target "db": no route to its host`},
		{"other", errors.New("dial tcp 10.0.0.5:5432: something odd"), `cannot connect to target "db"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := describeDialErr("db", tc.err, 10*time.Second)
			if got != tc.want {
				t.Fatalf("got %q, want %q", got, tc.want)
			}
		})
	}
}

// pipeStream is one end of a net.Pipe posing as a mux.Stream.
type pipeStream struct{ net.Conn }

func (p pipeStream) CloseWrite() error { return p.Conn.Close() }
func (p pipeStream) Reset() error      { return p.Conn.Close() }

// TestOnlyDeclaredTargets: whatever the server asks, the agent dials only
// the addresses its own config declares, by name.
func TestOnlyDeclaredTargets(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan struct{}, 10)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			accepted <- struct{}{}
			c.Close()
		}
	}()
	a, err := New(Options{
		Name:     "a1",
		Targets:  []Target{{Name: "db", Address: ln.Addr().String()}},
		DialTLS:  noDial,
		DialQUIC: noDial,
		Logger:   logging.Discard(),
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name   string
		target string
		want   proto.ReplyCode
	}{
		{"undeclared name", "other", proto.ReplyUnknownTarget},
		{"an address instead of a name", ln.Addr().String(), proto.ReplyUnknownTarget},
		{"declared", "db", proto.ReplyOK},
	} {
		t.Run(tc.name, func(t *testing.T) {
			server, agentEnd := net.Pipe()
			defer server.Close()
			done := make(chan struct{})
			go func() { a.serveStream(context.Background(), pipeStream{agentEnd}); close(done) }()
			server.SetDeadline(time.Now().Add(5 * time.Second))
			if err := proto.WriteOpen(server, &proto.Open{SessionID: 1, Target: tc.target, Client: "192.0.2.1:5000", Route: "r"}); err != nil {
				t.Fatal(err)
			}
			reply, err := proto.ReadReply(server, 4096)
			if err != nil {
				t.Fatal(err)
			}
			if reply.Code != tc.want {
				t.Fatalf("reply %v, want %v", reply.Code, tc.want)
			}
			server.Close()
			<-done
			select {
			case <-accepted:
				if tc.want != proto.ReplyOK {
					t.Fatal("the agent dialed for a target it does not declare")
				}
			case <-time.After(100 * time.Millisecond):
				if tc.want == proto.ReplyOK {
					t.Fatal("the agent did not dial its declared target")
				}
			}
		})
	}
}

// TestFallbackReason: the reason told to the server fits the protocol's
// limit in whole characters, so a JSON round trip keeps it within the limit.
func TestFallbackReason(t *testing.T) {
	long := errors.New(strings.Repeat("é", 400)) // 2 bytes each
	r := fallbackReason(long)
	if len(r) > proto.MaxFallbackLen || !utf8.ValidString(r) {
		t.Fatalf("reason of %d bytes, valid UTF-8 %v", len(r), utf8.ValidString(r))
	}
	b, err := json.Marshal(proto.Hello{Version: 1, Targets: []string{}, Fallback: r})
	if err != nil {
		t.Fatal(err)
	}
	var h proto.Hello
	if err := json.Unmarshal(b, &h); err != nil {
		t.Fatal(err)
	}
	if h.Fallback != r {
		t.Fatalf("the reason changed in a JSON round trip: %d bytes became %d", len(r), len(h.Fallback))
	}
	if short := fallbackReason(errors.New("timeout")); short != "QUIC failed: timeout" {
		t.Fatalf("short reason %q", short)
	}
}

package e2e

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tunnelrelay/tunnel/internal/admin"
	"github.com/tunnelrelay/tunnel/internal/agent"
	"github.com/tunnelrelay/tunnel/internal/harness"
	"github.com/tunnelrelay/tunnel/internal/logging"
	"github.com/tunnelrelay/tunnel/internal/server"
)

// logBuffer collects log lines for assertions and prints them when a test
// fails.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

// waitFor waits until the log has a line containing every one of parts.
func (l *logBuffer) waitFor(t *testing.T, within time.Duration, parts ...string) string {
	t.Helper()
	return l.waitForNth(t, within, 1, parts...)
}

// waitForNth waits until the log has n lines containing every one of
// parts, and returns the nth.
func (l *logBuffer) waitForNth(t *testing.T, within time.Duration, n int, parts ...string) string {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		seen := 0
		for line := range strings.SplitSeq(l.String(), "\n") {
			if containsAll(line, parts) {
				if seen++; seen == n {
					return line
				}
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d log lines with %q within %v, want %d", seen, parts, within, n)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func containsAll(s string, parts []string) bool {
	for _, p := range parts {
		if !strings.Contains(s, p) {
			return false
		}
	}
	return true
}

type env struct {
	t   *testing.T
	tr  transport // how agents started by agent and agentWith connect
	ctx context.Context
	srv *harness.Server
	log *logBuffer
	lg  *slog.Logger

	// wantTransport is the transport online expects each agent to be on:
	// the one it was started with, unless that is auto.
	wantTransport map[string]string
}

// Fast timings for tests: a dead tunnel is noticed within a few seconds,
// yet a busy machine running the race detector does not starve a healthy
// one into looking dead.
func testServerOptions() server.Options {
	return server.Options{
		HandshakeTimeout:  3 * time.Second,
		OpenTimeout:       5 * time.Second,
		HeartbeatInterval: 300 * time.Millisecond,
		HeartbeatTimeout:  3 * time.Second,
		HalfCloseTimeout:  5 * time.Second,
		LivenessTimeout:   time.Second,
	}
}

func testAgentOptions() agent.Options {
	return agent.Options{
		DialTimeout:      3 * time.Second,
		HandshakeTimeout: 2 * time.Second,
		HalfCloseTimeout: 5 * time.Second,
		BackoffBase:      50 * time.Millisecond,
		BackoffMax:       300 * time.Millisecond,
	}
}

// newEnv starts a server listening for agents over both transports, whose
// agents (see agent and agentWith) connect over tr.
func newEnv(t *testing.T, tr transport, opt server.Options) *env {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	lb := &logBuffer{}
	lg, err := logging.New(lb, "debug", false)
	if err != nil {
		t.Fatal(err)
	}
	opt.Logger = lg
	srv, err := harness.StartServer(ctx, harness.Config{Dir: t.TempDir(), Options: opt})
	if err != nil {
		t.Fatal(err)
	}
	e := &env{t: t, tr: tr, ctx: ctx, srv: srv, log: lb, lg: lg, wantTransport: map[string]string{}}
	t.Cleanup(func() {
		srv.Close(time.Second)
		if t.Failed() || testing.Verbose() && os.Getenv("E2E_LOGS") != "" {
			t.Logf("logs:\n%s", lb.String())
		}
	})
	return e
}

// agent starts a registered agent with the given targets (name=address),
// connecting over the env's transport.
func (e *env) agent(name string, targets ...string) *harness.Agent {
	e.t.Helper()
	return e.agentWith(harness.AgentConfig{Name: name}, targets...)
}

// agentWith starts an agent as cfg says, over the env's transport unless
// cfg.Transport names another, with test timings unless cfg.Options sets
// its own.
func (e *env) agentWith(cfg harness.AgentConfig, targets ...string) *harness.Agent {
	e.t.Helper()
	if cfg.Transport == "" {
		cfg.Transport = e.tr.name
	}
	for _, t := range targets {
		name, addr, _ := strings.Cut(t, "=")
		cfg.Targets = append(cfg.Targets, agent.Target{Name: name, Address: addr})
	}
	if cfg.Options.DialTimeout == 0 {
		opt := testAgentOptions()
		opt.DialTLS, opt.DialQUIC = cfg.Options.DialTLS, cfg.Options.DialQUIC
		opt.Transport = cfg.Options.Transport
		opt.QUICTimeout, opt.QUICRetry = cfg.Options.QUICTimeout, cfg.Options.QUICRetry
		cfg.Options = opt
	}
	cfg.Options.Logger = e.lg
	if cfg.Transport == agent.TransportAuto {
		delete(e.wantTransport, cfg.Name)
	} else {
		e.wantTransport[cfg.Name] = cfg.Transport
	}
	a, err := e.srv.StartAgent(e.ctx, cfg)
	if err != nil {
		e.t.Fatal(err)
	}
	return a
}

// online waits until the server lists the agent as connected, and checks
// that it is connected over the transport it was started with.
func (e *env) online(name string) {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(e.ctx, 10*time.Second)
	defer cancel()
	if err := e.srv.WaitOnline(ctx, name); err != nil {
		e.t.Fatal(err)
	}
	v := e.agentView(name)
	if want := e.wantTransport[name]; v.Online && want != "" && v.Transport != want {
		e.t.Fatalf("agent %q is connected over %q, want %q", name, v.Transport, want)
	}
}

func (e *env) route(name, agentName, target string, allow ...string) string {
	e.t.Helper()
	addr, err := e.srv.AddTCPRoute(e.ctx, name, agentName, target, allow...)
	if err != nil {
		e.t.Fatal(err)
	}
	return addr
}

// isOnline reports whether the server lists the agent as connected.
func (e *env) isOnline(name string) bool {
	return e.agentView(name).Online
}

// agentView is what the server's admin API says of the agent.
func (e *env) agentView(name string) admin.Agent {
	e.t.Helper()
	agents, err := e.srv.Agents(e.ctx)
	if err != nil {
		e.t.Fatal(err)
	}
	for _, a := range agents {
		if a.Name == name {
			return a
		}
	}
	e.t.Fatalf("the server does not list agent %q", name)
	return admin.Agent{}
}

// proxy puts a fault proxy for the env's transport in front of the
// server's agent port, and returns it with the agent config that dials
// through it.
func (e *env) proxy(cfg harness.AgentConfig) (faults, harness.AgentConfig) {
	e.t.Helper()
	p := e.tr.proxy(e.t, e.srv.Addr)
	return p, e.tr.via(cfg, p.Addr)
}

// expectClosed asserts that the server closes conn (EOF or reset) within
// d without sending anything.
func expectClosed(t *testing.T, conn net.Conn, d time.Duration) {
	t.Helper()
	start := time.Now()
	conn.SetReadDeadline(time.Now().Add(d + time.Second))
	n, err := conn.Read(make([]byte, 1))
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("connection still open after %v", time.Since(start))
	}
	if n > 0 {
		t.Fatalf("got data, want the connection closed")
	}
	if el := time.Since(start); el > d {
		t.Fatalf("closed after %v, want within %v", el, d)
	}
}

// checksumExchange writes size random-ish bytes through conn and reads the
// echo back, comparing SHA-256 sums.
func checksumExchange(conn net.Conn, size int64, seed byte) error {
	src := &patternReader{n: size, seed: seed}
	wsum := sha256.New()
	errc := make(chan error, 1)
	go func() {
		_, err := io.Copy(io.MultiWriter(conn, wsum), src)
		if err == nil {
			err = conn.(interface{ CloseWrite() error }).CloseWrite()
		}
		errc <- err
	}()
	rsum := sha256.New()
	n, err := io.Copy(rsum, conn)
	if werr := <-errc; werr != nil {
		return fmt.Errorf("write: %w", werr)
	}
	if err != nil {
		return fmt.Errorf("read after %d bytes: %w", n, err)
	}
	if n != size {
		return fmt.Errorf("read %d bytes, want %d", n, size)
	}
	if !bytes.Equal(wsum.Sum(nil), rsum.Sum(nil)) {
		return errors.New("checksums differ")
	}
	return nil
}

// patternReader yields n bytes of a cheap pseudo-random pattern.
type patternReader struct {
	n    int64
	seed byte
	x    uint32
}

func (r *patternReader) Read(p []byte) (int, error) {
	if r.n <= 0 {
		return 0, io.EOF
	}
	if int64(len(p)) > r.n {
		p = p[:r.n]
	}
	if r.x == 0 {
		r.x = uint32(r.seed)*2654435761 + 1
	}
	for i := range p {
		r.x ^= r.x << 13
		r.x ^= r.x >> 17
		r.x ^= r.x << 5
		p[i] = byte(r.x)
	}
	r.n -= int64(len(p))
	return len(p), nil
}

func withLogger(opt server.Options, l *slog.Logger) server.Options {
	opt.Logger = l
	return opt
}

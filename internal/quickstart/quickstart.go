// Package quickstart brings up a tunnel-server and a tunnel-agent on
// loopback, as a new user would by hand: it builds both binaries, runs
// `tunnel-server init`, `run`, `agent add`, declares a target in the agent's
// config, runs `tunnel-agent run` and `tunnel-server route add`, then prints
// how to connect. The target is a PostgreSQL server answering on
// 127.0.0.1:5432 when there is one, else a small echo service of its own.
//
// It is a demonstration and a smoke test of the real binaries, not a way to
// deploy: everything lives in one directory and stops with it.
package quickstart

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/tunnelrelay/tunnel/internal/admin"
	"github.com/tunnelrelay/tunnel/internal/netutil"
)

// Options for Run.
type Options struct {
	// Dir is where binaries, configs, certificates and the database go. It
	// is emptied first.
	Dir string
	// Target is "auto" (PostgreSQL on 127.0.0.1:5432 if it answers, else
	// the built-in echo service), "echo", or a host:port to use.
	Target string
	// Stdout receives the narration and the processes' logs.
	Stdout io.Writer
	// Ready, if set, is called with the route's address once it works.
	Ready func(routeAddr string)
}

// Run brings everything up and keeps it running until ctx is done, then
// stops the processes and returns.
func Run(ctx context.Context, opt Options) error {
	if opt.Target == "" {
		opt.Target = "auto"
	}
	q := &quickstart{opt: opt, out: &syncWriter{w: opt.Stdout}}
	defer q.stopAll()
	return q.run(ctx)
}

type quickstart struct {
	opt   Options
	out   *syncWriter
	bin   string
	procs []*exec.Cmd
	wg    sync.WaitGroup
}

func (q *quickstart) say(format string, args ...any) { fmt.Fprintf(q.out, format+"\n", args...) }

func (q *quickstart) run(ctx context.Context) error {
	dir, err := filepath.Abs(q.opt.Dir)
	if err != nil {
		return err
	}
	if err := resetDir(dir); err != nil {
		return err
	}
	q.bin = filepath.Join(dir, "bin")
	srvDir := filepath.Join(dir, "server")
	agentCfg := filepath.Join(dir, "agent", "tunnel-agent.toml")
	if err := os.MkdirAll(filepath.Dir(agentCfg), 0o700); err != nil {
		return err
	}

	q.say("==> Building tunnel-server and tunnel-agent into %s", q.bin)
	if err := q.build(ctx); err != nil {
		return err
	}
	ports, err := netutil.FreePorts(3)
	if err != nil {
		return err
	}
	agentAddr := fmt.Sprintf("127.0.0.1:%d", ports[0])
	adminAddr := fmt.Sprintf("127.0.0.1:%d", ports[1])
	routeAddr := fmt.Sprintf("127.0.0.1:%d", ports[2])
	srvCfg := filepath.Join(srvDir, "tunnel-server.toml")

	if err := q.cmd(ctx, "tunnel-server", "init", "--dir", srvDir, "--hostname", "localhost",
		"--hostname", "127.0.0.1", "--listen", agentAddr, "--admin-listen", adminAddr); err != nil {
		return err
	}
	q.start(ctx, "server", "tunnel-server", "run", "--config", srvCfg)
	if err := waitListening(ctx, adminAddr); err != nil {
		return fmt.Errorf("tunnel-server did not start: %w", err)
	}
	if err := q.cmd(ctx, "tunnel-server", "agent", "add", "demo", "--config", srvCfg, "--out", agentCfg); err != nil {
		return err
	}

	target, connect, err := q.target(ctx, routeAddr)
	if err != nil {
		return err
	}
	q.say("==> Declaring target %q (%s) in %s", "db", target, agentCfg)
	if err := appendTarget(agentCfg, "db", target); err != nil {
		return err
	}
	q.start(ctx, "agent", "tunnel-agent", "run", "--config", agentCfg)
	if err := waitOnline(ctx, adminAddr, filepath.Join(srvDir, "admin.token"), "demo"); err != nil {
		return err
	}
	if err := q.cmd(ctx, "tunnel-server", "route", "add", "demo-db", "--agent", "demo", "--target", "db",
		"--listen", routeAddr, "--config", srvCfg); err != nil {
		return err
	}
	q.say("")
	q.say("==> The tunnel is up. Connect through it with:")
	q.say("")
	q.say("      %s", connect)
	q.say("")
	q.say("    See it from the server's side with:")
	q.say("      %s status --config %s", filepath.Join(q.bin, "tunnel-server"), srvCfg)
	q.say("")
	q.say("    Press Ctrl-C to stop.")
	if q.opt.Ready != nil {
		q.opt.Ready(routeAddr)
	}
	<-ctx.Done()
	q.say("==> Stopping")
	return nil
}

// target picks what the route reaches and the command that connects to it.
func (q *quickstart) target(ctx context.Context, routeAddr string) (addr, connect string, err error) {
	host, port, _ := net.SplitHostPort(routeAddr)
	switch q.opt.Target {
	case "auto":
		if postgresAnswers("127.0.0.1:5432") {
			q.say("==> PostgreSQL answers on 127.0.0.1:5432: the route will reach it")
			return "127.0.0.1:5432", fmt.Sprintf("psql \"host=%s port=%s user=%s dbname=postgres sslmode=disable\"", host, port, pgUser()), nil
		}
		q.say("==> No PostgreSQL on 127.0.0.1:5432: starting a small echo service as the target")
	case "echo":
	default:
		return q.opt.Target, fmt.Sprintf("go run ./cmd/tunnel-quickstart --connect %s    # or any client of the service at %s, pointed at %s", routeAddr, q.opt.Target, routeAddr), nil
	}
	echo, err := startEcho(ctx, &q.wg)
	if err != nil {
		return "", "", err
	}
	return echo, fmt.Sprintf("go run ./cmd/tunnel-quickstart --connect %s    # or: nc %s %s; type a line, the echo service behind the agent sends it back", routeAddr, host, port), nil
}

func pgUser() string {
	if u := os.Getenv("PGUSER"); u != "" {
		return u
	}
	if u, err := user.Current(); err == nil && u.Username != "root" {
		return u.Username
	}
	return "postgres"
}

func (q *quickstart) build(ctx context.Context) error {
	goBin, err := exec.LookPath("go")
	if err != nil {
		return errors.New("the go command is needed to build the binaries: " + err.Error())
	}
	cmd := exec.CommandContext(ctx, goBin, "build", "-o", q.bin+string(filepath.Separator),
		"./cmd/tunnel-server", "./cmd/tunnel-agent")
	cmd.Dir = moduleRoot()
	cmd.Stdout, cmd.Stderr = q.out, q.out
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("go build: %w", err)
	}
	return nil
}

// cmd runs one command to completion, showing it and its output.
func (q *quickstart) cmd(ctx context.Context, name string, args ...string) error {
	q.say("$ %s %s", name, strings.Join(args, " "))
	c := exec.CommandContext(ctx, filepath.Join(q.bin, name), args...)
	c.Stdout, c.Stderr = &prefixWriter{w: q.out, prefix: "  "}, &prefixWriter{w: q.out, prefix: "  "}
	if err := c.Run(); err != nil {
		return fmt.Errorf("%s %s: %w", name, args[0], err)
	}
	return nil
}

// start runs a long-lived process, prefixing its log lines with label.
func (q *quickstart) start(ctx context.Context, label, name string, args ...string) {
	q.say("$ %s %s &", name, strings.Join(args, " "))
	c := exec.Command(filepath.Join(q.bin, name), args...)
	pw := &prefixWriter{w: q.out, prefix: "[" + label + "] "}
	c.Stdout, c.Stderr = pw, pw
	if err := c.Start(); err != nil {
		q.say("cannot start %s: %v", name, err)
		return
	}
	q.procs = append(q.procs, c)
}

// stopAll sends SIGTERM to the processes, newest first, and waits.
func (q *quickstart) stopAll() {
	for i := len(q.procs) - 1; i >= 0; i-- {
		p := q.procs[i]
		p.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { p.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			p.Process.Kill()
			<-done
		}
	}
	q.wg.Wait()
}

func appendTarget(path, name, addr string) error {
	f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(f, "\n[[targets]]\nname = %q\naddress = %q\n", name, addr)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// marker is the file that says a directory is the quickstart's to empty.
const marker = ".tunnel-quickstart"

// resetDir empties dir for a new run, but only if it is missing, empty, or
// was made by an earlier run: --dir must never wipe someone's files.
func resetDir(dir string) error {
	entries, err := os.ReadDir(dir)
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		return err
	case len(entries) > 0:
		if _, err := os.Stat(filepath.Join(dir, marker)); err != nil {
			return fmt.Errorf("%s is not empty and was not made by tunnel-quickstart; choose another --dir", dir)
		}
		if err := os.RemoveAll(dir); err != nil {
			return err
		}
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, marker), nil, 0o600)
}

// moduleRoot finds the directory of go.mod, from the working directory up.
func moduleRoot() string {
	dir, _ := os.Getwd()
	for d := dir; ; d = filepath.Dir(d) {
		if _, err := os.Stat(filepath.Join(d, "go.mod")); err == nil {
			return d
		}
		if filepath.Dir(d) == d {
			return dir
		}
	}
}

func waitListening(ctx context.Context, addr string) error {
	deadline := time.Now().Add(15 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s: %w", addr, err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// waitOnline polls the admin endpoint until the agent is connected.
func waitOnline(ctx context.Context, adminAddr, tokenFile, name string) error {
	token, err := os.ReadFile(tokenFile)
	if err != nil {
		return err
	}
	c := admin.NewClient(adminAddr, strings.TrimSpace(string(token)))
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	for {
		agents, err := c.Agents(ctx)
		if err == nil {
			for _, a := range agents {
				if a.Name == name && a.Online {
					return nil
				}
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("agent %q did not connect: %w", name, ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// postgresAnswers sends an SSLRequest to addr and reports whether the reply
// is PostgreSQL's 'S' or 'N'.
func postgresAnswers(addr string) bool {
	c, err := net.DialTimeout("tcp", addr, 500*time.Millisecond)
	if err != nil {
		return false
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(time.Second))
	if _, err := c.Write([]byte{0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f}); err != nil {
		return false
	}
	b := make([]byte, 1)
	if _, err := io.ReadFull(c, b); err != nil {
		return false
	}
	return b[0] == 'S' || b[0] == 'N'
}

// startEcho serves a line echo on a loopback port until ctx is done.
func startEcho(ctx context.Context, wg *sync.WaitGroup) (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	wg.Add(2)
	go func() {
		defer wg.Done()
		<-ctx.Done()
		ln.Close()
	}()
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				stop := context.AfterFunc(ctx, func() { c.Close() })
				defer stop()
				fmt.Fprintf(c, "hello from the echo service behind tunnel-agent; type a line\n")
				sc := bufio.NewScanner(c)
				for sc.Scan() {
					fmt.Fprintf(c, "echo: %s\n", sc.Text())
				}
			}()
		}
	}()
	return ln.Addr().String(), nil
}

type syncWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (s *syncWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(p)
}

// prefixWriter prefixes each line written through it.
type prefixWriter struct {
	w      io.Writer
	prefix string
	mu     sync.Mutex
	buf    []byte
}

func (p *prefixWriter) Write(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.buf = append(p.buf, b...)
	for {
		i := strings.IndexByte(string(p.buf), '\n')
		if i < 0 {
			break
		}
		fmt.Fprintf(p.w, "%s%s\n", p.prefix, p.buf[:i])
		p.buf = p.buf[i+1:]
	}
	return len(b), nil
}

// Connect copies stdin to addr and addr to stdout until both directions
// end: a stand-in for nc, for machines without it.
func Connect(ctx context.Context, addr string, stdin io.Reader, stdout io.Writer) error {
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return err
	}
	defer c.Close()
	stop := context.AfterFunc(ctx, func() { c.Close() })
	defer stop()
	go func() {
		io.Copy(c, stdin)
		c.(*net.TCPConn).CloseWrite()
	}()
	_, err = io.Copy(stdout, c)
	if ctx.Err() != nil {
		return nil
	}
	return err
}

package bench

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"time"
)

// The process scenarios (sessions, agents, cpu) run the real tunnel-server
// and tunnel-agent binaries: their RSS is what a user's processes would
// show, with the code, config loading, store and logging those binaries
// carry, and their CPU time is theirs alone. They are built once per run
// with the go command (the benchmark is itself run with `go run`), from the
// module the working directory is in, together with benchhelper, the echo
// target and the reference relay as processes of their own.

// binaries are the programs built for the process scenarios.
type binaries struct{ dir string }

func (b *binaries) path(name string) string { return filepath.Join(b.dir, name) }

// Names of the built programs.
const (
	serverBin = "tunnel-server"
	agentBin  = "tunnel-agent"
	helperBin = "benchhelper"
)

// errSkip marks an error that makes a row skipped rather than failed: the
// measurement is impossible here, nothing went wrong.
var errSkip = errors.New("skipped")

// skipOrFail records err in r as a skip (errSkip) or a failure.
func skipOrFail(r *Row, err error) {
	if errors.Is(err, errSkip) {
		r.Skipped = strings.TrimSuffix(err.Error(), ": "+errSkip.Error())
		return
	}
	r.Err = err.Error()
}

// binaries builds the programs on first use and returns them; an error
// wrapping errSkip means they cannot be built here (no go command, not in
// the module's source tree, no /proc to measure them by).
func (e *Env) binaries(ctx context.Context) (*binaries, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.bins != nil || e.binErr != nil {
		return e.bins, e.binErr
	}
	e.bins, e.binErr = buildBinaries(ctx, filepath.Join(e.dir, "bin"), e.progress)
	return e.bins, e.binErr
}

// buildBinaries runs go build for the three programs into dir.
func buildBinaries(ctx context.Context, dir string, progress func(string, ...any)) (*binaries, error) {
	if _, err := os.Stat("/proc/self/status"); err != nil {
		return nil, fmt.Errorf("the process figures read /proc, which this system lacks: %w", errSkip)
	}
	goBin, err := goCommand()
	if err != nil {
		return nil, fmt.Errorf("the process figures build tunnel-server and tunnel-agent with the go command: %v: %w", err, errSkip)
	}
	root, err := moduleRoot()
	if err != nil {
		return nil, fmt.Errorf("the process figures build tunnel-server and tunnel-agent from source: %v: %w", err, errSkip)
	}
	progress("building %s, %s and %s into %s", serverBin, agentBin, helperBin, dir)
	start := time.Now()
	cmd := exec.CommandContext(ctx, goBin, "build", "-o", dir+string(filepath.Separator),
		"./cmd/"+serverBin, "./cmd/"+agentBin, "./internal/bench/"+helperBin)
	cmd.Dir = root
	out, err := cmd.CombinedOutput()
	if err != nil {
		return nil, fmt.Errorf("go build in %s: %v: %s", root, err, lastLines(out, 5))
	}
	progress("built in %v", time.Since(start).Round(100*time.Millisecond))
	return &binaries{dir: dir}, nil
}

// goCommand finds the go command: on PATH (go test puts it there), or in
// the GOROOT the benchmark was built with (go run does not).
func goCommand() (string, error) {
	if p, err := exec.LookPath("go"); err == nil {
		return p, nil
	}
	// The GOROOT this program was built from: the best guess left.
	p := filepath.Join(runtime.GOROOT(), "bin", "go")
	if _, err := os.Stat(p); err != nil {
		return "", errors.New("no go command on PATH or in GOROOT")
	}
	return p, nil
}

// moduleRoot finds the directory of this module's go.mod, from the working
// directory up.
func moduleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for d := dir; ; d = filepath.Dir(d) {
		data, err := os.ReadFile(filepath.Join(d, "go.mod"))
		if err == nil && bytes.Contains(data, []byte("module "+modulePath+"\n")) {
			return d, nil
		}
		if filepath.Dir(d) == d {
			return "", fmt.Errorf("%s is not inside the source tree of %s", dir, modulePath)
		}
	}
}

// modulePath is this module's path, to recognise its go.mod.
const modulePath = "github.com/tunnelrelay/tunnel"

// proc is a child process the benchmark started and stops.
type proc struct {
	name string
	cmd  *exec.Cmd
	out  *tail // the last of its stdout and stderr
	done chan struct{}
	err  error // after done
}

// startProc starts path with args, env added to ours (less our TUNNEL_*
// overrides, which must not leak into the measured setup).
func startProc(name, path string, env []string, args ...string) (*proc, error) {
	cmd := exec.Command(path, args...)
	cmd.Env = append(childEnv(), env...)
	t := &tail{max: 8 << 10}
	cmd.Stdout, cmd.Stderr = t, t
	setDeathSignal(cmd)
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &proc{name: name, cmd: cmd, out: t, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	return p, nil
}

// childEnv is our environment without TUNNEL_* variables.
func childEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "TUNNEL_") {
			env = append(env, kv)
		}
	}
	return env
}

func (p *proc) pid() int { return p.cmd.Process.Pid }

// alive returns an error saying how the process ended, if it has.
func (p *proc) alive() error {
	select {
	case <-p.done:
		return fmt.Errorf("%s exited (%v): %s", p.name, p.err, p.out.lastLines(3))
	default:
		return nil
	}
}

// stop sends SIGTERM, waits up to grace, then kills; it returns once the
// process is gone.
func (p *proc) stop(grace time.Duration) {
	select {
	case <-p.done:
		return
	default:
	}
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(grace):
		p.cmd.Process.Kill()
		<-p.done
	}
}

// tail keeps the last max bytes written to it.
type tail struct {
	mu  sync.Mutex
	max int
	buf []byte
}

func (t *tail) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.buf = append(t.buf, p...)
	if over := len(t.buf) - t.max; over > 0 {
		t.buf = append(t.buf[:0], t.buf[over:]...)
	}
	return len(p), nil
}

func (t *tail) lastLines(n int) string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return lastLines(t.buf, n)
}

// helper is a running benchhelper: an echo target or a reference relay in
// a process of its own.
type helper struct {
	*proc
	stdin io.WriteCloser // closing it stops the helper
	addr  string         // where it listens
}

// startHelper runs benchhelper with args and waits for the address it
// listens on.
func startHelper(ctx context.Context, bins *binaries, args ...string) (*helper, error) {
	cmd := exec.Command(bins.path(helperBin), args...)
	cmd.Env = childEnv()
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	t := &tail{max: 8 << 10}
	cmd.Stderr = t
	setDeathSignal(cmd)
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", helperBin, err)
	}
	p := &proc{name: helperBin + " " + args[0], cmd: cmd, out: t, done: make(chan struct{})}
	lines := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		if sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
		io.Copy(t, stdout)
		p.err = cmd.Wait()
		close(p.done)
	}()
	h := &helper{proc: p, stdin: stdin}
	select {
	case line, ok := <-lines:
		addr, found := strings.CutPrefix(line, "listening ")
		if ok && found {
			h.addr = addr
			return h, nil
		}
		h.stop(time.Second)
		return nil, fmt.Errorf("%s did not say where it listens: %q %s", p.name, line, t.lastLines(3))
	case <-time.After(15 * time.Second):
	case <-ctx.Done():
	}
	h.stop(time.Second)
	return nil, fmt.Errorf("%s did not start within 15 s: %s", p.name, t.lastLines(3))
}

// stop closes the helper's stdin, its signal to exit, and then stops it as
// any process.
func (h *helper) stop(grace time.Duration) {
	h.stdin.Close()
	select {
	case <-h.done:
	case <-time.After(grace):
	}
	h.proc.stop(grace)
}

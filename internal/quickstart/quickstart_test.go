package quickstart

import (
	"bufio"
	"bytes"
	"context"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestQuickstart runs the README's first command as a user would, with the
// built-in echo target, connects through the route, then stops it.
func TestQuickstart(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binaries")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	var out lockedBuffer
	ready := make(chan string, 1)
	done := make(chan error, 1)
	go func() {
		done <- Run(ctx, Options{
			Dir:    t.TempDir(),
			Target: "echo",
			Stdout: &out,
			Ready:  func(addr string) { ready <- addr },
		})
	}()
	var addr string
	select {
	case addr = <-ready:
	case err := <-done:
		t.Fatalf("quickstart ended early: %v\n%s", err, out.String())
	case <-ctx.Done():
		t.Fatalf("quickstart not ready:\n%s", out.String())
	}
	if !strings.Contains(out.String(), "--connect "+addr) {
		t.Errorf("the printed connect command does not name %s:\n%s", addr, out.String())
	}

	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	r := bufio.NewReader(c)
	greeting, err := r.ReadString('\n')
	if err != nil || !strings.Contains(greeting, "echo service") {
		t.Fatalf("greeting %q, %v\n%s", greeting, err, out.String())
	}
	c.Write([]byte("through the tunnel\n"))
	line, err := r.ReadString('\n')
	if err != nil || line != "echo: through the tunnel\n" {
		t.Fatalf("echo %q, %v", line, err)
	}
	c.Close()

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("quickstart did not stop")
	}
	for _, want := range []string{"tunnel-server init", "agent add demo", "route add demo-db", "agent connected", "tunnel-agent stopped"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q", want)
		}
	}
}

type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func TestResetDirRefusesForeignFiles(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "precious.txt"), []byte("x"), 0o600)
	if err := resetDir(dir); err == nil {
		t.Fatal("resetDir emptied a directory it did not make")
	}
	if _, err := os.Stat(filepath.Join(dir, "precious.txt")); err != nil {
		t.Fatal("the file is gone")
	}
	own := filepath.Join(t.TempDir(), "qs")
	if err := resetDir(own); err != nil { // made
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(own, "old"), nil, 0o600)
	if err := resetDir(own); err != nil { // reused
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(own, "old")); err == nil {
		t.Fatal("a run's own directory was not emptied")
	}
}

//go:build unix

package pgtest

import (
	"context"
	"errors"
	"os"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/tunnelrelay/tunnel/internal/testutil/leakcheck"
)

func TestLaunch(t *testing.T) {
	leakcheck.Check(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	s, err := Launch(ctx)
	if errors.Is(err, ErrUnavailable) {
		unavailable(t, err.Error())
	}
	if err != nil {
		t.Fatal(err)
	}
	closed := false
	defer func() {
		if !closed {
			s.Close()
		}
	}()
	if got := s.Psql(t, "select 40 + 2"); got != "42" {
		t.Fatalf("select 40 + 2 = %q", got)
	}
	pid := s.cmd.Process.Pid
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	closed = true
	if _, err := os.Stat(s.Dir); !os.IsNotExist(err) {
		t.Errorf("directory %s still there after Close: %v", s.Dir, err)
	}
	if err := syscall.Kill(pid, 0); err == nil {
		t.Errorf("postgres (pid %s) still running after Close", strconv.Itoa(pid))
	}
	if err := s.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

func TestLaunchNotInstalled(t *testing.T) {
	t.Setenv(EnvBin, t.TempDir())
	s, err := Launch(context.Background())
	if err == nil {
		s.Close()
		t.Fatal("Launch succeeded without binaries")
	}
	if !errors.Is(err, ErrUnavailable) || !errors.Is(err, ErrNotInstalled) {
		t.Fatalf("Launch = %v, want ErrUnavailable and ErrNotInstalled", err)
	}
}

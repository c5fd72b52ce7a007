//go:build unix

package cli

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestDrainContext(t *testing.T) {
	t.Run("timeout", func(t *testing.T) {
		ctx, cancel := DrainContext(50*time.Millisecond, slog.Default(), "unused")
		defer cancel()
		<-ctx.Done()
		if !errors.Is(ctx.Err(), context.DeadlineExceeded) {
			t.Fatalf("ended with %v, want the deadline", ctx.Err())
		}
	})
	t.Run("second signal", func(t *testing.T) {
		var logs bytes.Buffer
		ctx, cancel := DrainContext(time.Minute, slog.New(slog.NewTextHandler(&logs, nil)), "second signal: test")
		defer cancel()
		// Caught while the drain listens, so it does not end the process.
		if err := syscall.Kill(syscall.Getpid(), syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
		select {
		case <-ctx.Done():
		case <-time.After(5 * time.Second):
			t.Fatal("a second SIGTERM did not end the drain")
		}
		if !errors.Is(ctx.Err(), context.Canceled) {
			t.Errorf("ended with %v, want canceled", ctx.Err())
		}
		waitFor := time.Now().Add(time.Second)
		for !strings.Contains(logs.String(), "second signal: test") && time.Now().Before(waitFor) {
			time.Sleep(10 * time.Millisecond)
		}
		if !strings.Contains(logs.String(), "second signal: test") {
			t.Errorf("the signal was not logged: %q", logs.String())
		}
	})
}

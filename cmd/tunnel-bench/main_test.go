package main

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/tunnelrelay/tunnel/internal/bench"
	"github.com/tunnelrelay/tunnel/internal/cli"
	"github.com/tunnelrelay/tunnel/internal/testutil/pgtest"
)

// TestQuick runs the smoke benchmark as a user would (--quick --json) and
// checks that every figure was measured, or skipped for want of PostgreSQL
// where that is allowed.
func TestQuick(t *testing.T) {
	if testing.Short() {
		t.Skip("the smoke benchmark takes about 20 s")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	var stdout, stderr bytes.Buffer
	cmd := newRootCmd()
	cmd.SetOut(&stdout)
	cmd.SetErr(&stderr)
	if code := cli.Run(ctx, cmd, []string{"--quick", "--json"}, &stderr); code != 0 {
		t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s", code, &stdout, &stderr)
	}
	var rep bench.Report
	if err := json.Unmarshal(stdout.Bytes(), &rep); err != nil {
		t.Fatalf("output is not a report: %v\n%s", err, &stdout)
	}
	want := []string{"one bulk stream, upload", "one bulk stream, download", "pgbench -S -c 8 -j 2"}
	if len(rep.Rows) != len(want) {
		t.Fatalf("%d rows, want %d:\n%s", len(rep.Rows), len(want), &stdout)
	}
	for i, r := range rep.Rows {
		if r.Figure != want[i] {
			t.Errorf("row %d is %q, want %q", i, r.Figure, want[i])
		}
		switch {
		case r.Err != "":
			t.Errorf("%s: %s", r.Figure, r.Err)
		case r.Skipped != "":
			if !strings.HasPrefix(r.Figure, "pgbench") || pgtest.Required() {
				t.Errorf("%s skipped: %s", r.Figure, r.Skipped)
			} else {
				t.Logf("%s skipped: %s", r.Figure, r.Skipped)
			}
		case r.Direct.Median <= 0 || r.Relay.Median <= 0 || r.Tunnel.Median <= 0:
			t.Errorf("%s: a path has no value: %+v", r.Figure, r)
		}
	}
	if !strings.Contains(stderr.String(), "tunnel-bench: scenario bulk") {
		t.Errorf("no progress on stderr:\n%s", &stderr)
	}
}

func TestBadFlags(t *testing.T) {
	for _, args := range [][]string{
		{"--bulk-size", "lots"},
		{"--scenarios", "nope"},
		{"--pg-dsn", "postgres://h", "--pg-addr", "h:1"},
		{"extra"},
	} {
		t.Run(strings.Join(args, " "), func(t *testing.T) {
			var out, errOut bytes.Buffer
			cmd := newRootCmd()
			cmd.SetOut(&out)
			cmd.SetErr(&errOut)
			if code := cli.Run(t.Context(), cmd, args, &errOut); code != cli.ExitUsage {
				t.Errorf("exit %d, want %d; stderr:\n%s", code, cli.ExitUsage, &errOut)
			}
			if out.Len() != 0 {
				t.Errorf("printed to stdout:\n%s", &out)
			}
		})
	}
}

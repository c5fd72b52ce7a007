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

// TestQuick runs the whole benchmark as a user would (--quick --json), with
// sizes cut down further so that it stays short under the race detector,
// and checks that every figure of the budget table is there and measured,
// or skipped where that is allowed: pgbench without PostgreSQL where
// PostgreSQL is not required.
func TestQuick(t *testing.T) {
	if testing.Short() {
		t.Skip("the smoke benchmark takes about a minute")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	var stdout, stderr bytes.Buffer
	cmd := newRootCmd()
	cmd.SetOut(&stdout)
	cmd.SetErr(&stderr)
	args := []string{"--quick", "--json", "--bulk-size", "8MiB", "--pg-duration", "1s",
		"--sessions", "200", "--agents", "20", "--link-size", "4MiB", "--link-capacity", "256KiB"}
	if code := cli.Run(ctx, cmd, args, &stderr); code != 0 {
		t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s", code, &stdout, &stderr)
	}
	var rep bench.Report
	if err := json.Unmarshal(stdout.Bytes(), &rep); err != nil {
		t.Fatalf("output is not a report: %v\n%s", err, &stdout)
	}
	want := []string{
		"one bulk stream over TLS, upload", "one bulk stream over TLS, download",
		"one bulk stream over QUIC, upload", "one bulk stream over QUIC, download",
		"16 parallel bulk streams, upload, aggregate", "16 parallel bulk streams, download, aggregate",
		"pgbench -S -c 8 -j 2", "pgbench -S -C -c 8 -j 2 (new session per transaction)",
		"idle agent RSS", "200 idle sessions, server RSS per session", "200 idle sessions, agent RSS per session",
		"20 idle agents, server RSS per agent",
		"CPU per GiB moved, server + agent",
		"one stream over a 50ms RTT link, upload", "one stream over a 50ms RTT link, download",
	}
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
			if strings.HasPrefix(r.Figure, "pgbench") && !pgtest.Required() {
				t.Logf("%s skipped: %s", r.Figure, r.Skipped)
			} else {
				t.Errorf("%s skipped: %s", r.Figure, r.Skipped)
			}
		case r.Tunnel.Median <= 0:
			t.Errorf("%s: no value for the tunnel: %+v", r.Figure, r)
		case r.Budget == nil:
			t.Errorf("%s: no budget", r.Figure)
		case r.Budget.Against == "reference relay" && r.Relay.Median <= 0,
			r.Budget.Against == "direct" && r.Direct.Median <= 0:
			t.Errorf("%s: no value for the baseline: %+v", r.Figure, r)
		}
	}
	for _, line := range []string{"tunnel-bench: scenario bulk", "tunnel-bench: scenario latency", "tunnel-bench: building tunnel-server"} {
		if !strings.Contains(stderr.String(), line) {
			t.Errorf("no progress line %q on stderr:\n%s", line, &stderr)
		}
	}
}

func TestBadFlags(t *testing.T) {
	for _, args := range [][]string{
		{"--bulk-size", "lots"},
		{"--scenarios", "nope"},
		{"--link-capacity", "lots"},
		{"--sessions", "-5"},
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

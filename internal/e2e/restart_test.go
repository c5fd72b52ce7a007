package e2e

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/tunnelrelay/tunnel/internal/testutil/pgtest"
)

// loadTally is what a steady pgbench load saw.
type loadTally struct {
	runs      int // pgbench invocations
	committed int // transactions pgbench counted as processed
	lost      int // clients aborted inside a transaction: started, never finished
	refused   int // connection attempts refused (a client's, or pgbench's first): no transaction started
}

// pgbenchLoad runs pgbench -C (one connection per transaction, as a web
// application would) back to back against addr until stop is closed. A
// pgbench client that cannot connect stops, so one run cannot outlive a
// restart; the next run picks the load up again.
func pgbenchLoad(t *testing.T, pg *pgtest.Server, addr, script string, stop <-chan struct{}) *loadTally {
	t.Helper()
	host, port, _ := net.SplitHostPort(addr)
	var tally loadTally
	for {
		select {
		case <-stop:
			return &tally
		default:
		}
		cmd := pg.Command(t, "pgbench", "-h", host, "-p", port, "-n", "-C", "-c", "4", "-j", "2", "-T", "2", "-f", script)
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		cmd.Run() // pgbench exits 2 when clients aborted; the tally says why
		tally.runs++
		done, _ := pgbenchCounts(stdout.String())
		tally.committed += done
		if !strings.Contains(stdout.String(), "number of transactions actually processed") {
			// pgbench checks that it can connect before it starts its
			// clients; that check failed, so no transaction started.
			tally.refused++
		}
		for line := range strings.SplitSeq(stderr.String(), "\n") {
			switch {
			case strings.Contains(line, "aborted in command"):
				tally.lost++
			case strings.Contains(line, "aborted while establishing connection"):
				tally.refused++
			}
		}
		if stderr.Len() > 0 {
			time.Sleep(50 * time.Millisecond) // a failed run: no tight loop
		}
	}
}

// TestBinariesRestartUnderLoad restarts tunnel-server under a steady
// pgbench load, from the built binaries, and counts the transactions that
// failed: with SIGTERM (drain) no transaction that had started may be lost;
// with SIGKILL, for comparison, transactions in flight are cut. The figures
// go to the test log.
func TestBinariesRestartUnderLoad(t *testing.T) {
	pg := pgtest.Start(t)
	pg.Psql(t, "create table restart_log (id bigserial primary key, at timestamptz not null default now())")
	script := filepath.Join(t.TempDir(), "txn.sql")
	// A transaction long enough that some are always in flight.
	if err := os.WriteFile(script, []byte("BEGIN;\nSELECT pg_sleep(0.02);\nINSERT INTO restart_log DEFAULT VALUES;\nCOMMIT;\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	c := newCluster(t, map[string]string{"pg": pg.Addr()})
	setKey(t, c.serverCfg, "drain_timeout", `"10s"`)
	c.server.kill()
	c.startServer(t)
	c.startAgent(t)
	c.waitOnline(t, 10*time.Second)
	addr := c.addRoute(t, "pg", "pg", "--protocol", "postgres")

	var report []string
	for _, tc := range []struct {
		name string
		sig  syscall.Signal
	}{{"SIGTERM (drain)", syscall.SIGTERM}, {"SIGKILL (no drain)", syscall.SIGKILL}} {
		before, _ := strconv.Atoi(pg.Psql(t, "select count(*) from restart_log"))
		stop := make(chan struct{})
		var tally *loadTally
		var wg sync.WaitGroup
		wg.Go(func() { tally = pgbenchLoad(t, pg, addr, script, stop) })

		time.Sleep(3 * time.Second)
		start := time.Now()
		old := c.server
		old.cmd.Process.Signal(tc.sig)
		code := old.wait(t, 15*time.Second)
		stopped := time.Since(start)
		c.startServer(t)
		waitRoute(t, addr, 15*time.Second)
		back := time.Since(start)
		c.waitOnline(t, 10*time.Second)
		online := time.Since(start)
		time.Sleep(3 * time.Second)
		close(stop)
		wg.Wait()

		rows, _ := strconv.Atoi(pg.Psql(t, "select count(*) from restart_log"))
		rows -= before
		inFlight := "-"
		if m := regexp.MustCompile(`draining sessions.*sessions=(\d+)`).FindStringSubmatch(old.log.String()); m != nil {
			inFlight = m[1]
		}
		line := fmt.Sprintf("%-19s exit %3d  in flight %2s  stopped in %5v  route back %5v  agent online %5v  pgbench runs %3d  committed %5d  rows %5d  lost in flight %2d  refused at connect %3d",
			tc.name, code, inFlight, stopped.Round(time.Millisecond), back.Round(time.Millisecond), online.Round(time.Millisecond),
			tally.runs, tally.committed, rows, tally.lost, tally.refused)
		report = append(report, line)
		t.Log(line)
		if tally.committed == 0 {
			t.Fatalf("%s: no transaction went through", tc.name)
		}
		if tc.sig == syscall.SIGTERM {
			if code != 0 {
				t.Errorf("%s: server exit code %d", tc.name, code)
			}
			if inFlight == "-" {
				t.Errorf("%s: no session was in flight at the signal, so the drain was not exercised", tc.name)
			}
			if tally.lost != 0 {
				t.Errorf("%s: %d transactions that had started were lost", tc.name, tally.lost)
			}
			// Every commit pgbench saw is in the table, and nothing more:
			// no transaction committed behind a client's back.
			if rows != tally.committed {
				t.Errorf("%s: %d rows written, pgbench counted %d transactions", tc.name, rows, tally.committed)
			}
		}
	}
	saveArtifact(t, "restart-under-load.txt", []byte(strings.Join(report, "\n")+"\n"))
}

// waitRoute waits until a TCP connection to addr is accepted.
func waitRoute(t *testing.T, addr string, within time.Duration) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), within)
	defer cancel()
	for {
		var d net.Dialer
		c, err := d.DialContext(ctx, "tcp", addr)
		if err == nil {
			c.Close()
			return
		}
		if ctx.Err() != nil {
			t.Fatalf("route %s not accepting within %v: %v", addr, within, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

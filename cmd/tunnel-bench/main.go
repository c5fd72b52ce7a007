// Command tunnel-bench measures the tunnel on loopback against a direct
// connection and against the reference relay, and prints one table with
// every figure of DESIGN.md's performance budgets, its budget and whether
// it is met. The measuring lives in internal/bench.
package main

import (
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/tunnelrelay/tunnel/internal/bench"
	"github.com/tunnelrelay/tunnel/internal/cli"
)

func main() { cli.Main("tunnel-bench", newRootCmd()) }

const long = `tunnel-bench measures, in one run on this machine, every figure of
DESIGN.md's performance budget table, and prints one table: each figure's
values (the median of its runs) by path, the ratio its budget is written
in, the budget, and whether it is met. Budgets are mostly ratios because
absolute numbers depend on the machine and its load; a budget not met is
reported, not an error.

The paths to the same target:

  direct           the client connects to the target
  reference relay  client -TCP-> relay-in -TLS 1.3, one connection per
                   session, no mux-> relay-out -TCP-> target
  tunnel           client -TCP-> route of tunnel-server =one TLS 1.3 + yamux
                   (or QUIC) connection=> tunnel-agent -TCP-> target

Scenarios (--scenarios), in the order they run:
%s
bulk, parallel, pgbench and latency run the server and agent engines in
this process and take the paths in turn within each run. A bulk transfer
moves a fixed amount (--bulk-size) one way over one connection, timed from
the first byte sent to the last received; parallel splits --bulk-size over
16 streams started together. The QUIC rows use a second agent, connected
over QUIC, and compare it with the tunnel over TLS. pgbench starts a
throwaway PostgreSQL from the installed server binaries (or uses
--pg-dsn/--pg-addr), runs pgbench -i -s --pg-scale, then pgbench -n -S -c 8
-j 2 and the same with -C for --pg-duration each over each path. Without
PostgreSQL or pgbench its rows say "skipped".

sessions, agents and cpu build tunnel-server and tunnel-agent with the go
command (from the module the working directory is in) and run them as
processes, set up as the README shows: init, run, agent add, a target in
the agent's config, route add. The agent keeps its config's default
transport, except in cpu, which sets TLS; the notes under the table say
which transport each figure was taken over. sessions reads the agent's RSS
once it is connected (idle agent), then opens --sessions connections to a
route, each with one round trip to an echo target in a process of its own,
and reports (RSS with the sessions - RSS before) / sessions for the server
and the agent. agents registers --agents agents through the admin API,
connects them from this process, and reports the server's (RSS with them
connected - RSS with none) / agents. RSS is VmRSS from /proc/PID/status,
read until it settles. cpu moves --bulk-size up and down per run through
the tunnel and through the reference relay run as a process, and divides
the processes' user + system time (/proc/PID/stat) by the GiB moved.

latency puts an emulated link between client and target for plain TCP, and
between agent and server for the tunnel: a proxy whose directions are delay
lines of --link-rtt/2, each holding at most --link-capacity bytes (a link of
capacity/(rtt/2) bytes per second; a full line stops reading, so senders
feel backpressure). Each transfer moves --link-size; the one-way delay of
the request (or of the upload's final count), which carries no data, is
taken off its time.

Progress goes to stderr, the table (or --json) to stdout. The exit status is
0 when every figure was measured or skipped, 1 when one failed, 2 for bad
flags.`

func newRootCmd() *cobra.Command {
	var (
		cfg       bench.Config
		bulkSize  bench.Size
		linkSize  bench.Size
		linkCap   bench.Size
		scenarios []string
		jsonOut   bool
	)
	var scenarioDocs strings.Builder
	for _, s := range bench.Scenarios() {
		fmt.Fprintf(&scenarioDocs, "  %-16s %s\n", s.Name, s.Doc)
	}
	cmd := &cobra.Command{
		Use:   "tunnel-bench",
		Short: "Measure the tunnel against direct connections and the reference relay",
		Long:  fmt.Sprintf(long, scenarioDocs.String()),
		Args:  cli.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg.BulkSize = int64(bulkSize)
			cfg.LinkSize = int64(linkSize)
			cfg.LinkCapacity = int64(linkCap)
			cfg.Scenarios = scenarios
			cfg.Progress = cmd.ErrOrStderr()
			if err := cfg.Validate(); err != nil {
				return cli.Usage(err)
			}
			rep, err := bench.Run(cmd.Context(), cfg)
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if jsonOut {
				err = rep.WriteJSON(out)
			} else {
				err = rep.WriteText(out)
			}
			if err != nil {
				return err
			}
			if rep.Failed() {
				return &cli.ExitError{Code: cli.ExitFailure, Err: fmt.Errorf("some figures could not be measured (see the table)")}
			}
			return nil
		},
	}
	cmd.SetFlagErrorFunc(cli.FlagErrors)
	f := cmd.Flags()
	f.SortFlags = false
	f.BoolVar(&cfg.Quick, "quick", false, "smoke run of about a minute: smaller defaults for --bulk-size, --runs, --pg-duration, --pg-scale, --sessions, --agents and --link-size where not given")
	f.StringSliceVar(&scenarios, "scenarios", nil, "scenarios to run, comma-separated: "+strings.Join(bench.ScenarioNames(), ", ")+" (default all)")
	f.BoolVar(&jsonOut, "json", false, "print the results as JSON instead of a table")
	f.Var(&bulkSize, "bulk-size", fmt.Sprintf("bytes each bulk transfer moves (parallel: in all; cpu: each way), e.g. 1GiB, 256MiB, 500MB (default 1GiB, %dMiB with --quick)", bench.QuickBulkSize>>20))
	f.IntVar(&cfg.Runs, "runs", 0, fmt.Sprintf("runs of each bulk, parallel, cpu and latency measurement; the median is reported (default %d, %d with --quick)", bench.DefaultRuns, bench.QuickRuns))
	f.DurationVar(&cfg.PGDuration, "pg-duration", 0, fmt.Sprintf("length of each pgbench run, whole seconds (default %v, %v with --quick)", bench.DefaultPGDuration, bench.QuickPGDuration))
	f.IntVar(&cfg.PGScale, "pg-scale", 0, fmt.Sprintf("pgbench -i scale factor (default %d, %d with --quick)", bench.DefaultPGScale, bench.QuickPGScale))
	f.IntVar(&cfg.PGRuns, "pg-runs", 0, fmt.Sprintf("pgbench runs per path; the median is reported (default %d, %d with --quick)", bench.DefaultPGRuns, bench.QuickPGRuns))
	f.StringVar(&cfg.PGDSN, "pg-dsn", "", "use this PostgreSQL server instead of starting one: postgres://user[:password]@host[:port][/database][?sslmode=mode]; pgbench -i drops and recreates its pgbench_* tables there unless --pg-skip-init")
	f.StringVar(&cfg.PGAddr, "pg-addr", "", "use the PostgreSQL server at host:port (user postgres, database postgres, no TLS) instead of starting one; pgbench -i drops and recreates its pgbench_* tables there unless --pg-skip-init")
	f.BoolVar(&cfg.PGSkipInit, "pg-skip-init", false, "with --pg-dsn or --pg-addr: do not run pgbench -i; the pgbench_* tables must exist")
	f.IntVar(&cfg.Sessions, "sessions", 0, fmt.Sprintf("idle sessions the sessions scenario opens through one agent (default %d, %d with --quick)", bench.DefaultSessions, bench.QuickSessions))
	f.IntVar(&cfg.Agents, "agents", 0, fmt.Sprintf("idle agents the agents scenario connects to one server (default %d, %d with --quick)", bench.DefaultAgents, bench.QuickAgents))
	f.DurationVar(&cfg.LinkRTT, "link-rtt", 0, fmt.Sprintf("round trip of the latency scenario's emulated link (default %v)", bench.DefaultLinkRTT))
	f.Var(&linkCap, "link-capacity", fmt.Sprintf("bytes in flight each way on the emulated link at most (default %dMiB)", bench.DefaultLinkCapacity>>20))
	f.Var(&linkSize, "link-size", fmt.Sprintf("bytes each transfer over the emulated link moves (default %dMiB, %dMiB with --quick)", bench.DefaultLinkSize>>20, bench.QuickLinkSize>>20))
	return cmd
}

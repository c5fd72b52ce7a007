// Command tunnel-bench measures the tunnel on loopback against a direct
// connection and against the reference relay, and prints one table of
// throughput and ratios. The measuring lives in internal/bench.
package main

import (
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/tunnelrelay/tunnel/internal/bench"
	"github.com/tunnelrelay/tunnel/internal/cli"
)

func main() { cli.Main("tunnel-bench", newRootCmd()) }

const long = `tunnel-bench measures, in one run on this machine, each workload three ways
to the same target:

  direct           the client connects to the target
  reference relay  client -TCP-> relay-in -TLS 1.3, one connection per
                   session, no mux-> relay-out -TCP-> target
  tunnel           client -TCP-> route of an in-process tunnel-server
                   =one TLS 1.3 + yamux connection=> in-process tunnel-agent
                   -TCP-> target

and prints one table: the median of each path, the ratios tunnel/relay and
tunnel/direct, and DESIGN.md's budget for the figure, met or not. Budgets are
ratios because absolute numbers depend on the machine and its load; a budget
not met is reported, not an error.

Scenarios (--scenarios):
%s
The bulk scenario moves a fixed amount (--bulk-size) one way over one
connection and times it from the first byte sent to the last received; the
paths take turns within each run, and the median of --runs runs is reported.
The pgbench scenario starts a throwaway PostgreSQL from the installed server
binaries (or uses --pg-dsn/--pg-addr), runs pgbench -i -s --pg-scale, then
pgbench -n -S -c 8 -j 2 -T --pg-duration over each path. Without PostgreSQL
or pgbench its row says "skipped" and the rest still runs.

Progress goes to stderr, the table (or --json) to stdout. The exit status is
0 when every figure was measured or skipped, 1 when one failed, 2 for bad
flags.`

func newRootCmd() *cobra.Command {
	var (
		cfg       bench.Config
		bulkSize  bench.Size
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
	f.BoolVar(&cfg.Quick, "quick", false, "smoke run of about 20 s: smaller defaults for --bulk-size, --runs, --pg-duration and --pg-scale where not given")
	f.StringSliceVar(&scenarios, "scenarios", nil, "scenarios to run, comma-separated: "+strings.Join(bench.ScenarioNames(), ", ")+" (default all)")
	f.BoolVar(&jsonOut, "json", false, "print the results as JSON instead of a table")
	f.Var(&bulkSize, "bulk-size", fmt.Sprintf("bytes each bulk transfer moves, e.g. 1GiB, 256MiB, 500MB (default 1GiB, %dMiB with --quick)", bench.QuickBulkSize>>20))
	f.IntVar(&cfg.Runs, "runs", 0, fmt.Sprintf("bulk transfers per path and direction; the median is reported (default %d, %d with --quick)", bench.DefaultRuns, bench.QuickRuns))
	f.DurationVar(&cfg.PGDuration, "pg-duration", 0, fmt.Sprintf("length of each pgbench run, whole seconds (default %v, %v with --quick)", bench.DefaultPGDuration, bench.QuickPGDuration))
	f.IntVar(&cfg.PGScale, "pg-scale", 0, fmt.Sprintf("pgbench -i scale factor (default %d, %d with --quick)", bench.DefaultPGScale, bench.QuickPGScale))
	f.IntVar(&cfg.PGRuns, "pg-runs", 0, fmt.Sprintf("pgbench runs per path; the median is reported (default %d)", bench.DefaultPGRuns))
	f.StringVar(&cfg.PGDSN, "pg-dsn", "", "use this PostgreSQL server instead of starting one: postgres://user[:password]@host[:port][/database][?sslmode=mode]; pgbench -i drops and recreates its pgbench_* tables there unless --pg-skip-init")
	f.StringVar(&cfg.PGAddr, "pg-addr", "", "use the PostgreSQL server at host:port (user postgres, database postgres, no TLS) instead of starting one; pgbench -i drops and recreates its pgbench_* tables there unless --pg-skip-init")
	f.BoolVar(&cfg.PGSkipInit, "pg-skip-init", false, "with --pg-dsn or --pg-addr: do not run pgbench -i; the pgbench_* tables must exist")
	return cmd
}

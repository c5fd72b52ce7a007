// Package bench measures the tunnel on loopback against a direct connection
// and against the reference relay (see Relay), in one run, and reports the
// ratios that DESIGN.md's performance budgets are written in. It is the logic
// of cmd/tunnel-bench.
//
// It is a measurement, not a test: a budget that is not met is reported, not
// failed. Absolute numbers depend on the machine and on what else runs on
// it; the ratios are what to compare between runs.
//
// A benchmark is a list of scenarios, each producing rows. Every scenario
// measures the same workload over three paths to the same target (direct,
// reference relay, tunnel) and interleaves them, so that load from elsewhere
// on the machine falls on all three alike.
package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"strings"
	"time"
)

// Defaults of Config; the Quick ones make a smoke run of about 20 seconds.
const (
	DefaultBulkSize   = 1 << 30
	DefaultRuns       = 3
	DefaultPGDuration = 10 * time.Second
	DefaultPGScale    = 10
	DefaultPGRuns     = 1

	QuickBulkSize   = 64 << 20
	QuickRuns       = 1
	QuickPGDuration = 2 * time.Second
	QuickPGScale    = 1
)

// Config says what to measure. Zero fields mean defaults, which depend on
// Quick.
type Config struct {
	// Quick picks small defaults for a smoke run.
	Quick bool
	// Scenarios names the scenarios to run (see Scenarios); empty means all.
	Scenarios []string

	// BulkSize is the number of bytes one bulk transfer moves. Default
	// DefaultBulkSize, or QuickBulkSize with Quick.
	BulkSize int64
	// Runs is how many times each bulk transfer is repeated; the median is
	// reported. Default DefaultRuns, or QuickRuns with Quick.
	Runs int

	// PGDuration is how long each pgbench run lasts (whole seconds, at
	// least one). Default DefaultPGDuration, or QuickPGDuration with Quick.
	PGDuration time.Duration
	// PGScale is pgbench -i's scale factor. Default DefaultPGScale, or
	// QuickPGScale with Quick.
	PGScale int
	// PGRuns is how many times each pgbench run is repeated; the median is
	// reported. Default DefaultPGRuns.
	PGRuns int
	// PGDSN names an existing PostgreSQL server to use instead of starting
	// one, as a URL: postgres://user[:password]@host[:port][/db][?sslmode=...].
	PGDSN string
	// PGAddr names an existing server by host:port, as user postgres,
	// database postgres, without TLS. At most one of PGDSN and PGAddr.
	PGAddr string
	// PGSkipInit leaves out pgbench -i on an existing server, whose
	// pgbench_* tables must then exist. A server started by the benchmark
	// is always initialised.
	PGSkipInit bool

	// Progress receives progress lines; nil discards them.
	Progress io.Writer
}

// withDefaults returns c with zero fields filled in.
func (c Config) withDefaults() Config {
	pick := func(full, quick int64) int64 {
		if c.Quick {
			return quick
		}
		return full
	}
	if c.BulkSize <= 0 {
		c.BulkSize = pick(DefaultBulkSize, QuickBulkSize)
	}
	if c.Runs <= 0 {
		c.Runs = int(pick(DefaultRuns, QuickRuns))
	}
	if c.PGDuration <= 0 {
		c.PGDuration = time.Duration(pick(int64(DefaultPGDuration), int64(QuickPGDuration)))
	}
	if c.PGScale <= 0 {
		c.PGScale = int(pick(DefaultPGScale, QuickPGScale))
	}
	if c.PGRuns <= 0 {
		c.PGRuns = DefaultPGRuns
	}
	if c.Progress == nil {
		c.Progress = io.Discard
	}
	return c
}

// Validate reports a configuration that cannot run, naming the field.
func (c Config) Validate() error {
	var errs []error
	if c.BulkSize < 0 {
		errs = append(errs, fmt.Errorf("bulk size %d is negative", c.BulkSize))
	}
	if c.Runs < 0 {
		errs = append(errs, fmt.Errorf("runs %d is negative", c.Runs))
	}
	if c.PGRuns < 0 {
		errs = append(errs, fmt.Errorf("pg runs %d is negative", c.PGRuns))
	}
	if c.PGDuration < 0 {
		errs = append(errs, fmt.Errorf("pg duration %v is negative", c.PGDuration))
	}
	if c.PGScale < 0 {
		errs = append(errs, fmt.Errorf("pg scale %d is negative", c.PGScale))
	}
	if c.PGDSN != "" && c.PGAddr != "" {
		errs = append(errs, errors.New("give an existing PostgreSQL server by DSN or by address, not both"))
	}
	if c.PGDSN != "" {
		if _, err := parseDSN(c.PGDSN); err != nil {
			errs = append(errs, err)
		}
	}
	if c.PGAddr != "" {
		if _, _, err := net.SplitHostPort(c.PGAddr); err != nil {
			errs = append(errs, fmt.Errorf("pg address %q: want host:port: %v", c.PGAddr, err))
		}
	}
	for _, name := range c.Scenarios {
		if scenarioByName(name) == nil {
			errs = append(errs, fmt.Errorf("unknown scenario %q (have %s)", name, strings.Join(ScenarioNames(), ", ")))
		}
	}
	return errors.Join(errs...)
}

// Scenario is one workload measured over the three paths.
type Scenario struct {
	// Name selects the scenario in Config.Scenarios.
	Name string
	// Doc says in a few words what it measures, for --help.
	Doc string
	// Run measures and returns the scenario's rows. A row that could not be
	// measured carries Skipped or Err instead of values.
	Run func(ctx context.Context, env *Env) []Row
}

// Scenarios returns the scenarios in the order they run.
func Scenarios() []Scenario {
	return []Scenario{
		{Name: "bulk", Doc: "one bulk stream, upload and download, MB/s", Run: runBulk},
		{Name: "pgbench", Doc: "pgbench -S -c 8 -j 2 through a route, TPS", Run: runPgbench},
	}
}

// ScenarioNames lists the scenario names in order.
func ScenarioNames() []string {
	var names []string
	for _, s := range Scenarios() {
		names = append(names, s.Name)
	}
	return names
}

func scenarioByName(name string) *Scenario {
	for _, s := range Scenarios() {
		if s.Name == name {
			return &s
		}
	}
	return nil
}

// Run starts the fixtures (the tunnel server), runs the selected scenarios
// in order and returns their rows in a report. It returns an error only for
// an invalid Config or a fixture that did not start; a scenario's failure is
// recorded in its rows (see Report.Failed).
func Run(ctx context.Context, cfg Config) (*Report, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	rep := &Report{Settings: settingsOf(cfg), Machine: machineFacts()}

	env, err := newEnv(ctx, cfg)
	if err != nil {
		return nil, err
	}
	defer env.Close()

	for _, s := range Scenarios() {
		if len(cfg.Scenarios) > 0 && !slices.Contains(cfg.Scenarios, s.Name) {
			continue
		}
		env.progress("scenario %s: %s", s.Name, s.Doc)
		rep.Rows = append(rep.Rows, s.Run(ctx, env)...)
		if err := ctx.Err(); err != nil {
			return rep, err
		}
	}
	rep.Machine.LoadEnd = loadAverage()
	return rep, nil
}

// settingsOf describes the configuration for the report.
func settingsOf(cfg Config) Settings {
	s := Settings{
		BulkBytes:  cfg.BulkSize,
		Runs:       cfg.Runs,
		PGDuration: (time.Duration(pgbenchSeconds(cfg.PGDuration)) * time.Second).String(),
		PGScale:    cfg.PGScale,
		PGRuns:     cfg.PGRuns,
		PGServer:   "started for the run",
		Quick:      cfg.Quick,
	}
	switch {
	case cfg.PGDSN != "":
		t, _ := parseDSN(cfg.PGDSN) // validated
		s.PGServer = t.redacted()
	case cfg.PGAddr != "":
		s.PGServer = cfg.PGAddr
	}
	return s
}

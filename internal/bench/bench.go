// Package bench measures the tunnel on loopback against a direct
// connection and against the reference relay (see Relay), in one run, and
// reports every figure of DESIGN.md's performance budget table with its
// budget and whether it is met. It is the logic of cmd/tunnel-bench.
//
// It is a measurement, not a test: a budget that is not met is reported, not
// failed. Absolute numbers depend on the machine and on what else runs on
// it; the ratios are what to compare between runs.
//
// A benchmark is a list of scenarios, each producing rows. The throughput
// scenarios measure the same workload over several paths to the same target
// (direct, reference relay, tunnel) and interleave them, so that load from
// elsewhere on the machine falls on all alike. They run the tunnel's engines
// in this process (internal/harness). The memory and CPU scenarios run the
// real tunnel-server and tunnel-agent binaries, built for the run, as
// separate processes set up as a user would, and read their RSS and CPU
// time from /proc.
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

// Defaults of Config; the Quick ones make a smoke run of about a minute.
const (
	DefaultBulkSize     = 1 << 30
	DefaultRuns         = 3
	DefaultPGDuration   = 10 * time.Second
	DefaultPGScale      = 10
	DefaultPGRuns       = 3
	DefaultSessions     = 10000
	DefaultAgents       = 1000
	DefaultLinkRTT      = 50 * time.Millisecond
	DefaultLinkCapacity = 4 << 20
	DefaultLinkSize     = 128 << 20

	QuickBulkSize   = 64 << 20
	QuickRuns       = 1
	QuickPGDuration = 2 * time.Second
	QuickPGScale    = 1
	QuickPGRuns     = 1
	QuickSessions   = 1000
	QuickAgents     = 200
	QuickLinkSize   = 32 << 20
)

// ParallelStreams is how many bulk streams the parallel scenario runs at
// once: DESIGN.md's 16.
const ParallelStreams = 16

// Config says what to measure. Zero fields mean defaults, which depend on
// Quick.
type Config struct {
	// Quick picks small defaults for a smoke run.
	Quick bool
	// Scenarios names the scenarios to run (see Scenarios); empty means all.
	Scenarios []string

	// BulkSize is the number of bytes one bulk transfer moves; the
	// parallel scenario moves it in all, across its streams, and the CPU
	// scenario moves it each way per run. Default DefaultBulkSize, or
	// QuickBulkSize with Quick.
	BulkSize int64
	// Runs is how many times each bulk transfer (and each CPU and long
	// link measurement) is repeated; the median is reported. Default
	// DefaultRuns, or QuickRuns with Quick.
	Runs int

	// PGDuration is how long each pgbench run lasts (whole seconds, at
	// least one). Default DefaultPGDuration, or QuickPGDuration with Quick.
	PGDuration time.Duration
	// PGScale is pgbench -i's scale factor. Default DefaultPGScale, or
	// QuickPGScale with Quick.
	PGScale int
	// PGRuns is how many times each pgbench run is repeated; the median is
	// reported. Default DefaultPGRuns, or QuickPGRuns with Quick.
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

	// Sessions is how many idle sessions the sessions scenario holds open
	// through one agent. Default DefaultSessions, or QuickSessions with
	// Quick.
	Sessions int
	// Agents is how many idle agents the agents scenario connects to one
	// server. Default DefaultAgents, or QuickAgents with Quick.
	Agents int

	// LinkRTT is the round trip of the emulated long link (half of it
	// each way). Default DefaultLinkRTT.
	LinkRTT time.Duration
	// LinkCapacity bounds the bytes in flight in each direction of the
	// emulated link (see internal/netsim). Default DefaultLinkCapacity.
	LinkCapacity int64
	// LinkSize is the number of bytes one transfer over the link moves.
	// Default DefaultLinkSize, or QuickLinkSize with Quick.
	LinkSize int64

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
		c.PGRuns = int(pick(DefaultPGRuns, QuickPGRuns))
	}
	if c.Sessions <= 0 {
		c.Sessions = int(pick(DefaultSessions, QuickSessions))
	}
	if c.Agents <= 0 {
		c.Agents = int(pick(DefaultAgents, QuickAgents))
	}
	if c.LinkRTT <= 0 {
		c.LinkRTT = DefaultLinkRTT
	}
	if c.LinkCapacity <= 0 {
		c.LinkCapacity = DefaultLinkCapacity
	}
	if c.LinkSize <= 0 {
		c.LinkSize = pick(DefaultLinkSize, QuickLinkSize)
	}
	if c.Progress == nil {
		c.Progress = io.Discard
	}
	return c
}

// maxSessions bounds Config.Sessions: every session costs a descriptor in
// the benchmark, the server, the agent and the echo target (each its own
// process), and the usual hard limit on descriptors is in the tens of
// thousands.
const maxSessions = 1 << 20

// Validate reports a configuration that cannot run, naming the field.
func (c Config) Validate() error {
	var errs []error
	if c.BulkSize < 0 {
		errs = append(errs, fmt.Errorf("bulk size %d is negative", c.BulkSize))
	}
	if c.BulkSize > 0 && c.BulkSize < ParallelStreams {
		errs = append(errs, fmt.Errorf("bulk size %d is less than one byte per parallel stream", c.BulkSize))
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
	if c.Sessions < 0 || c.Sessions > maxSessions {
		errs = append(errs, fmt.Errorf("sessions %d is not within 0 and %d", c.Sessions, maxSessions))
	}
	if c.Agents < 0 || c.Agents > maxSessions {
		errs = append(errs, fmt.Errorf("agents %d is not within 0 and %d", c.Agents, maxSessions))
	}
	if c.LinkRTT < 0 {
		errs = append(errs, fmt.Errorf("link RTT %v is negative", c.LinkRTT))
	}
	if c.LinkCapacity < 0 || c.LinkCapacity > 1<<30 {
		errs = append(errs, fmt.Errorf("link capacity %d is not within 0 and 1 GiB", c.LinkCapacity))
	}
	if c.LinkSize < 0 {
		errs = append(errs, fmt.Errorf("link size %d is negative", c.LinkSize))
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

// Scenario is one workload and the rows it produces.
type Scenario struct {
	// Name selects the scenario in Config.Scenarios.
	Name string
	// Doc says in a few words what it measures, for --help.
	Doc string
	// Run measures and returns the scenario's rows. A row that could not be
	// measured carries Skipped or Err instead of values.
	Run func(ctx context.Context, env *Env) []Row
}

// Scenarios returns the scenarios in the order they run, which is the
// order of DESIGN.md's budget table where the setup allows.
func Scenarios() []Scenario {
	return []Scenario{
		{Name: "bulk", Doc: "one bulk stream each way; tunnel over TLS and over QUIC", Run: runBulk},
		{Name: "parallel", Doc: fmt.Sprintf("%d parallel bulk streams each way through one agent", ParallelStreams), Run: runParallel},
		{Name: "pgbench", Doc: "pgbench -S -c 8 -j 2, and with -C (new session each time)", Run: runPgbench},
		{Name: "sessions", Doc: "idle agent RSS; server and agent RSS per idle session", Run: runSessions},
		{Name: "agents", Doc: "server RSS per connected idle agent", Run: runAgents},
		{Name: "cpu", Doc: "CPU seconds per GiB moved, server + agent vs the relay", Run: runCPU},
		{Name: "latency", Doc: "one stream each way over an emulated long link (--link-rtt)", Run: runLatency},
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

// Run starts the fixtures (the in-process tunnel server), runs the selected
// scenarios in order and returns their rows in a report. It returns an
// error only for an invalid Config or a fixture that did not start; a
// scenario's failure is recorded in its rows (see Report.Failed).
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
		start := time.Now()
		rep.Rows = append(rep.Rows, s.Run(ctx, env)...)
		env.progress("scenario %s took %v", s.Name, time.Since(start).Round(100*time.Millisecond))
		if err := ctx.Err(); err != nil {
			return rep, err
		}
	}
	rep.Machine.LoadEnd = loadAverage()
	return rep, nil
}

// Settings record what was measured, after defaults.
type Settings struct {
	BulkBytes    int64  `json:"bulk_bytes"`
	Runs         int    `json:"runs"`
	Streams      int    `json:"parallel_streams"`
	PGDuration   string `json:"pg_duration"`
	PGScale      int    `json:"pg_scale"`
	PGRuns       int    `json:"pg_runs"`
	PGServer     string `json:"pg_server"` // never holds a password
	Sessions     int    `json:"sessions"`
	Agents       int    `json:"agents"`
	LinkRTT      string `json:"link_rtt"`
	LinkCapacity int64  `json:"link_capacity_bytes"`
	LinkBytes    int64  `json:"link_bytes"`
	Quick        bool   `json:"quick"`
}

// settingsOf describes the configuration for the report.
func settingsOf(cfg Config) Settings {
	s := Settings{
		BulkBytes:    cfg.BulkSize,
		Runs:         cfg.Runs,
		Streams:      ParallelStreams,
		PGDuration:   (time.Duration(pgbenchSeconds(cfg.PGDuration)) * time.Second).String(),
		PGScale:      cfg.PGScale,
		PGRuns:       cfg.PGRuns,
		PGServer:     "started for the run",
		Sessions:     cfg.Sessions,
		Agents:       cfg.Agents,
		LinkRTT:      cfg.LinkRTT.String(),
		LinkCapacity: cfg.LinkCapacity,
		LinkBytes:    cfg.LinkSize,
		Quick:        cfg.Quick,
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

// line is the settings line under the table.
func (s Settings) line() string {
	mode := ""
	if s.Quick {
		mode = " (--quick)"
	}
	return fmt.Sprintf("settings%s: bulk %s per transfer, %s; %d parallel streams; pgbench -T %s, scale %d, %s, server %s; "+
		"%d sessions; %d agents; link %s RTT, %s in flight each way, %s per transfer",
		mode, formatBytes(s.BulkBytes), runsText(s.Runs), s.Streams,
		s.PGDuration, s.PGScale, runsText(s.PGRuns), s.PGServer,
		s.Sessions, s.Agents, s.LinkRTT, formatBytes(s.LinkCapacity), formatBytes(s.LinkBytes))
}

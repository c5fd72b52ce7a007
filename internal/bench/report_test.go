package bench

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"
)

func sampleRows() []Row {
	bulk := Row{
		Figure: "one bulk stream over TLS, upload", Unit: "MB/s",
		Direct: measurement([]float64{2900, 3012.4, 3100}),
		Relay:  measurement([]float64{610, 640, 600}),
		Tunnel: measurement([]float64{598.2, 590, 620}),
	}
	bulk = bulk.relative(atLeastOp, 0.95, againstRelay, bulk.Relay.Median)
	slow := Row{
		Figure: "one bulk stream over TLS, download", Unit: "MB/s",
		Direct: measurement([]float64{9.5}),
		Relay:  measurement([]float64{50}),
		Tunnel: measurement([]float64{40}),
	}
	slow = slow.relative(atLeastOp, 0.95, againstRelay, slow.Relay.Median)
	quic := Row{Figure: "one bulk stream over QUIC, upload", Unit: "MB/s", Tunnel: measurement([]float64{450})}
	quic = quic.relative(atLeastOp, 0.7, againstTLS, bulk.Tunnel.Median)
	cpu := Row{Figure: "CPU per GiB moved, server + agent", Unit: "CPU s/GiB",
		Relay: measurement([]float64{2.5}), Tunnel: measurement([]float64{3.5})}
	cpu = cpu.relative(atMostOp, 1.2, againstRelay, cpu.Relay.Median)
	mem := Row{Figure: "10000 idle sessions, server RSS per session", Unit: "KiB",
		Tunnel: measurement([]float64{21.25}), Note: "RSS 10.0 MiB before, 217.5 MiB with the sessions open"}
	mem = mem.absolute(atMostOp, 32)
	return []Row{
		bulk, slow, quic, cpu, mem,
		{Figure: "pgbench -S -c 8 -j 2", Unit: "TPS", Skipped: "PostgreSQL unavailable: no initdb\nmore detail"},
		{Figure: "something else", Err: "it broke"},
	}
}

func TestFormatTable(t *testing.T) {
	got := formatTable(sampleRows())
	want := `` +
		"figure                                             direct  reference relay  tunnel  ratio  budget               verdict\n" +
		"-------------------------------------------------  ------  ---------------  ------  -----  -------------------  -------\n" +
		"one bulk stream over TLS, upload (MB/s)              3012              610     598   0.98  >= 0.95x relay       met\n" +
		"one bulk stream over TLS, download (MB/s)            9.50             50.0    40.0   0.80  >= 0.95x relay       not met\n" +
		"one bulk stream over QUIC, upload (MB/s)                -                -     450   0.75  >= 0.70x tunnel/TLS  met\n" +
		"CPU per GiB moved, server + agent (CPU s/GiB)           -             2.50    3.50   1.40  <= 1.20x relay       not met\n" +
		"10000 idle sessions, server RSS per session (KiB)       -                -    21.2      -  <= 32 KiB            met\n" +
		"pgbench -S -c 8 -j 2 (TPS)                         skipped: PostgreSQL unavailable: no initdb\n" +
		"something else                                     error: it broke\n"
	if got != want {
		t.Errorf("table:\n%s\nwant:\n%s", got, want)
	}
}

// TestBudgetVerdicts checks each kind of budget on both sides of its bound.
func TestBudgetVerdicts(t *testing.T) {
	tests := []struct {
		name   string
		row    Row
		met    bool
		ratio  float64
		budget string
	}{
		{"at least, above", Row{Tunnel: measurement([]float64{96})}.relative(atLeastOp, 0.95, againstRelay, 100), true, 0.96, ">= 0.95x relay"},
		{"at least, equal", Row{Tunnel: measurement([]float64{95})}.relative(atLeastOp, 0.95, againstRelay, 100), true, 0.95, ">= 0.95x relay"},
		{"at least, below", Row{Tunnel: measurement([]float64{94})}.relative(atLeastOp, 0.95, againstRelay, 100), false, 0.94, ">= 0.95x relay"},
		{"at least, against direct", Row{Tunnel: measurement([]float64{81})}.relative(atLeastOp, 0.8, againstDirect, 100), true, 0.81, ">= 0.80x direct"},
		{"at most, below", Row{Tunnel: measurement([]float64{1.1})}.relative(atMostOp, 1.2, againstRelay, 1), true, 1.1, "<= 1.20x relay"},
		{"at most, above", Row{Tunnel: measurement([]float64{1.3})}.relative(atMostOp, 1.2, againstRelay, 1), false, 1.3, "<= 1.20x relay"},
		{"no baseline", Row{Tunnel: measurement([]float64{1})}.relative(atLeastOp, 0.9, againstDirect, 0), false, 0, ">= 0.90x direct"},
		{"no value", Row{}.relative(atMostOp, 1.2, againstRelay, 1), false, 0, "<= 1.20x relay"},
		{"absolute, within", Row{Unit: "MiB", Tunnel: measurement([]float64{14.9})}.absolute(atMostOp, 15), true, 0, "<= 15 MiB"},
		{"absolute, over", Row{Unit: "MiB", Tunnel: measurement([]float64{15.1})}.absolute(atMostOp, 15), false, 0, "<= 15 MiB"},
		{"absolute, unmeasured", Row{Unit: "KiB", Err: "x"}.absolute(atMostOp, 32), false, 0, "<= 32 KiB"},
		{"skipped", Row{Skipped: "no", Tunnel: measurement([]float64{96})}.relative(atLeastOp, 0.95, againstRelay, 100), false, 0.96, ">= 0.95x relay"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := tt.row.Budget
			if b.Met != tt.met {
				t.Errorf("met = %v, want %v (%+v)", b.Met, tt.met, b)
			}
			if d := b.Ratio - tt.ratio; d > 1e-9 || d < -1e-9 {
				t.Errorf("ratio = %v, want %v", b.Ratio, tt.ratio)
			}
			if got := b.String(tt.row.Unit); got != tt.budget {
				t.Errorf("budget column %q, want %q", got, tt.budget)
			}
			want := "not met"
			if tt.met {
				want = "met"
			}
			if got := b.verdict(); got != want {
				t.Errorf("verdict %q, want %q", got, want)
			}
		})
	}
}

func TestFormatTableNoRows(t *testing.T) {
	got := formatTable(nil)
	if lines := strings.Split(strings.TrimSuffix(got, "\n"), "\n"); len(lines) != 2 || !strings.HasPrefix(lines[0], "figure") {
		t.Errorf("empty table:\n%s", got)
	}
}

func TestWriteText(t *testing.T) {
	rep := &Report{
		Rows:     sampleRows(),
		Settings: settingsOf(Config{PGDSN: "postgres://u:secret@db:5432/x"}.withDefaults()),
		Machine: Machine{GOOS: "linux", GOARCH: "amd64", NumCPU: 2, GOMAXPROCS: 2, CPU: "Some CPU",
			GoVersion: "go1.26.0", Date: "2026-01-02T03:04:05Z", LoadStart: "1.00 0.50 0.25", LoadEnd: "2.00 1.00 0.50"},
	}
	var b bytes.Buffer
	if err := rep.WriteText(&b); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	for _, want := range []string{
		"one bulk stream over TLS, upload (MB/s)",
		"\n\nnotes:\n- 10000 idle sessions, server RSS per session: RSS 10.0 MiB before, 217.5 MiB with the sessions open\n",
		"\n\nsettings: bulk 1 GiB per transfer, 3 runs (median); 16 parallel streams; pgbench -T 10s, scale 10, 3 runs (median), server postgres://u@db:5432/x; " +
			"10000 sessions; 1000 agents; link 50ms RTT, 4 MiB in flight each way, 128 MiB per transfer\n",
		"machine: linux/amd64, 2 CPUs (GOMAXPROCS 2), Some CPU, go1.26.0, 2026-01-02T03:04:05Z, load average 1.00 0.50 0.25 at start, 2.00 1.00 0.50 at end\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
}

func TestWriteJSON(t *testing.T) {
	rep := &Report{Rows: sampleRows()}
	var b bytes.Buffer
	if err := rep.WriteJSON(&b); err != nil {
		t.Fatal(err)
	}
	var got struct {
		Rows []struct {
			Figure          string           `json:"figure"`
			TunnelPerRelay  float64          `json:"tunnel_per_relay"`
			TunnelPerDirect float64          `json:"tunnel_per_direct"`
			Direct          *json.RawMessage `json:"direct"`
			Relay           *struct {
				Median float64   `json:"median"`
				Runs   []float64 `json:"runs"`
			} `json:"reference_relay"`
			Budget *struct {
				Op       string  `json:"op"`
				Factor   float64 `json:"factor"`
				Against  string  `json:"against"`
				Baseline float64 `json:"baseline"`
				Ratio    float64 `json:"ratio"`
				Limit    float64 `json:"limit"`
				Met      bool    `json:"met"`
			} `json:"budget"`
			Note    string `json:"note"`
			Skipped string `json:"skipped"`
			Err     string `json:"error"`
		} `json:"rows"`
	}
	if err := json.Unmarshal(b.Bytes(), &got); err != nil {
		t.Fatalf("%v\n%s", err, b.Bytes())
	}
	if len(got.Rows) != 7 {
		t.Fatalf("%d rows, want 7", len(got.Rows))
	}
	r := got.Rows[0]
	if r.Relay == nil || r.Relay.Median != 610 || len(r.Relay.Runs) != 3 {
		t.Errorf("relay = %+v, want median 610 of 3 runs", r.Relay)
	}
	if r.TunnelPerRelay < 0.980 || r.TunnelPerRelay > 0.981 {
		t.Errorf("tunnel_per_relay = %v, want 598.2/610", r.TunnelPerRelay)
	}
	if b := r.Budget; b == nil || !b.Met || b.Op != ">=" || b.Factor != 0.95 || b.Against != "reference relay" || b.Baseline != 610 || b.Ratio < 0.980 || b.Ratio > 0.981 {
		t.Errorf("budget = %+v", r.Budget)
	}
	if got.Rows[1].Budget == nil || got.Rows[1].Budget.Met {
		t.Errorf("row 2 budget = %+v, want not met", got.Rows[1].Budget)
	}
	if q := got.Rows[2]; q.Direct != nil || q.Relay != nil || q.Budget == nil || q.Budget.Against != "tunnel over TLS" || q.Budget.Baseline != 598.2 {
		t.Errorf("QUIC row = %+v, want no direct or relay, a budget against the tunnel over TLS", q)
	}
	if m := got.Rows[4]; m.Budget == nil || m.Budget.Op != "<=" || m.Budget.Limit != 32 || !m.Budget.Met || m.Budget.Against != "" || m.Note == "" {
		t.Errorf("memory row = %+v, want an absolute budget of 32, met, with a note", m)
	}
	if s := got.Rows[5]; s.Skipped == "" || s.TunnelPerRelay != 0 || s.Budget != nil {
		t.Errorf("skipped row = %+v", s)
	}
	if got.Rows[6].Err != "it broke" {
		t.Errorf("error row = %+v", got.Rows[6])
	}
	if !rep.Failed() {
		t.Error("Failed() = false with an error row")
	}
	if (&Report{Rows: sampleRows()[:6]}).Failed() {
		t.Error("Failed() = true with only a skip")
	}
}

func TestMedian(t *testing.T) {
	tests := []struct {
		name string
		xs   []float64
		want float64
	}{
		{"none", nil, 0},
		{"one", []float64{3}, 3},
		{"odd", []float64{5, 1, 3}, 3},
		{"even", []float64{4, 1, 3, 2}, 2.5},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := median(tt.xs); got != tt.want {
				t.Errorf("median(%v) = %v, want %v", tt.xs, got, tt.want)
			}
		})
	}
}

func TestParseSize(t *testing.T) {
	tests := []struct {
		in   string
		want int64
		err  bool
	}{
		{"1048576", 1 << 20, false},
		{"1GiB", 1 << 30, false},
		{"64MiB", 64 << 20, false},
		{"64mib", 64 << 20, false},
		{"500MB", 500e6, false},
		{"1G", 1 << 30, false},
		{"16K", 16 << 10, false},
		{"10B", 10, false},
		{" 2 GiB ", 2 << 30, false},
		{"", 0, true},
		{"GiB", 0, true},
		{"1.5GiB", 0, true},
		{"-1", 0, true},
		{"99999999999GiB", 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseSize(tt.in)
			if (err != nil) != tt.err || got != tt.want {
				t.Errorf("ParseSize(%q) = %d, %v; want %d, error %v", tt.in, got, err, tt.want, tt.err)
			}
		})
	}
}

func TestParseDSN(t *testing.T) {
	tests := []struct {
		name, dsn string
		want      pgServer
		err       bool
	}{
		{"full", "postgres://bob:s3cret@db.example:6543/app?sslmode=require",
			pgServer{Host: "db.example", Port: 6543, User: "bob", Password: "s3cret", Database: "app", SSLMode: "require"}, false},
		{"defaults", "postgresql://127.0.0.1",
			pgServer{Host: "127.0.0.1", Port: 5432, User: "postgres", Database: "postgres"}, false},
		{"ipv6", "postgres://u@[::1]:5433/d",
			pgServer{Host: "::1", Port: 5433, User: "u", Database: "d"}, false},
		{"key=value form", "host=localhost port=5432", pgServer{}, true},
		{"other scheme", "mysql://u:p@h/d", pgServer{}, true},
		{"two hosts", "postgres://u@h1:5432,h2:5432/d", pgServer{}, true},
		{"unix socket", "postgres:///d?host=/tmp", pgServer{}, true},
		{"unknown parameter", "postgres://u@h/d?application_name=x", pgServer{}, true},
		{"bad port", "postgres://u@h:99999/d", pgServer{}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseDSN(tt.dsn)
			if (err != nil) != tt.err || got != tt.want {
				t.Errorf("parseDSN(%q) = %+v, %v; want %+v, error %v", tt.dsn, got, err, tt.want, tt.err)
			}
		})
	}
}

// TestDSNPasswordNeverShown checks the places a DSN's password could leak:
// error messages, the report's settings and the description in progress
// lines.
func TestDSNPasswordNeverShown(t *testing.T) {
	const secret = "hunter2-secret"
	for _, dsn := range []string{
		"postgres://bob:" + secret + "@h:5432/d?sslmode=disable",
		"postgres://bob:" + secret + "@h:5432/d?foo=bar",
		"postgres://bob:" + secret + "@h:notaport/d",
		"postgres://bob:" + secret + "@h:5432/d\x7f",
	} {
		s, err := parseDSN(dsn)
		if err != nil && strings.Contains(err.Error(), secret) {
			t.Errorf("error shows the password: %v", err)
		}
		if err == nil && strings.Contains(s.redacted(), secret) {
			t.Errorf("redacted() shows the password: %s", s.redacted())
		}
		if err := (Config{PGDSN: dsn}).Validate(); err != nil && strings.Contains(err.Error(), secret) {
			t.Errorf("Validate shows the password: %v", err)
		}
	}
	set := settingsOf(Config{PGDSN: "postgres://bob:" + secret + "@h:5432/d"}.withDefaults())
	if strings.Contains(set.PGServer, secret) {
		t.Errorf("settings show the password: %s", set.PGServer)
	}
}

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
		want string // substring of the error; empty for none
	}{
		{"zero", Config{}, ""},
		{"quick", Config{Quick: true}, ""},
		{"both servers", Config{PGDSN: "postgres://h", PGAddr: "h:5432"}, "not both"},
		{"bad address", Config{PGAddr: "nohost"}, "pg address"},
		{"unknown scenario", Config{Scenarios: []string{"bulk", "nope"}}, `unknown scenario "nope"`},
		{"negative runs", Config{Runs: -1}, "runs -1"},
		{"tiny bulk", Config{BulkSize: 8}, "parallel stream"},
		{"negative sessions", Config{Sessions: -1}, "sessions -1"},
		{"too many agents", Config{Agents: 1 << 21}, "agents 2097152"},
		{"negative link RTT", Config{LinkRTT: -time.Millisecond}, "link RTT"},
		{"huge link capacity", Config{LinkCapacity: 2 << 30}, "link capacity"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.cfg.Validate()
			if tt.want == "" && err != nil || tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)) {
				t.Errorf("Validate() = %v, want %q", err, tt.want)
			}
		})
	}
}

func TestConfigDefaults(t *testing.T) {
	full := Config{}.withDefaults()
	if full.BulkSize != DefaultBulkSize || full.Runs != DefaultRuns || full.PGDuration != DefaultPGDuration || full.PGScale != DefaultPGScale ||
		full.Sessions != DefaultSessions || full.Agents != DefaultAgents || full.LinkRTT != DefaultLinkRTT ||
		full.LinkCapacity != DefaultLinkCapacity || full.LinkSize != DefaultLinkSize {
		t.Errorf("defaults: %+v", full)
	}
	quick := Config{Quick: true, Runs: 5}.withDefaults()
	if quick.BulkSize != QuickBulkSize || quick.Runs != 5 || quick.PGDuration != QuickPGDuration || quick.PGScale != QuickPGScale ||
		quick.Sessions != QuickSessions || quick.Agents != QuickAgents || quick.LinkRTT != DefaultLinkRTT || quick.LinkSize != QuickLinkSize {
		t.Errorf("quick defaults with runs 5: %+v", quick)
	}
}

package bench

import (
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strings"
	"unicode/utf8"
)

// Report is the result of one benchmark run.
type Report struct {
	Rows     []Row    `json:"rows"`
	Settings Settings `json:"settings"`
	Machine  Machine  `json:"machine"`
}

// Settings record what was measured, after defaults.
type Settings struct {
	BulkBytes  int64  `json:"bulk_bytes"`
	Runs       int    `json:"runs"`
	PGDuration string `json:"pg_duration"`
	PGScale    int    `json:"pg_scale"`
	PGRuns     int    `json:"pg_runs"`
	PGServer   string `json:"pg_server"` // never holds a password
	Quick      bool   `json:"quick"`
}

// Row is one figure measured over the three paths.
type Row struct {
	// Figure names what is measured, without the unit.
	Figure string `json:"figure"`
	// Unit of the values: "MB/s" (10^6 bytes per second) or "TPS".
	Unit   string      `json:"unit"`
	Direct Measurement `json:"direct"`
	Relay  Measurement `json:"reference_relay"`
	Tunnel Measurement `json:"tunnel"`
	// Budget is DESIGN.md's budget for the figure, if it has one.
	Budget *Budget `json:"budget,omitempty"`
	// Skipped says why the figure was not measured (a missing program).
	Skipped string `json:"skipped,omitempty"`
	// Err says why measuring failed.
	Err string `json:"error,omitempty"`
}

// Measurement is one path's result: the median of its runs.
type Measurement struct {
	Median float64   `json:"median"`
	Runs   []float64 `json:"runs"`
}

// measurement builds a Measurement from the runs' values.
func measurement(runs []float64) Measurement {
	return Measurement{Median: median(runs), Runs: runs}
}

// median of xs; the mean of the middle two for an even count, 0 for none.
func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

// Budget is a lower bound on the tunnel's value as a multiple of another
// path's.
type Budget struct {
	Min     float64 `json:"min"`     // e.g. 0.95
	Against string  `json:"against"` // the other path, e.g. "reference relay"
	Met     bool    `json:"met"`
}

// Measured reports whether the row holds values.
func (r Row) Measured() bool { return r.Skipped == "" && r.Err == "" }

// TunnelPerRelay is the tunnel's median over the relay's; 0 when either is
// missing.
func (r Row) TunnelPerRelay() float64 { return ratio(r.Tunnel.Median, r.Relay.Median) }

// TunnelPerDirect is the tunnel's median over direct's; 0 when either is
// missing.
func (r Row) TunnelPerDirect() float64 { return ratio(r.Tunnel.Median, r.Direct.Median) }

func ratio(a, b float64) float64 {
	if a <= 0 || b <= 0 {
		return 0
	}
	return a / b
}

// MarshalJSON adds the ratios.
func (r Row) MarshalJSON() ([]byte, error) {
	type plain Row
	return json.Marshal(struct {
		plain
		TunnelPerRelay  float64 `json:"tunnel_per_relay,omitempty"`
		TunnelPerDirect float64 `json:"tunnel_per_direct,omitempty"`
	}{plain(r), r.TunnelPerRelay(), r.TunnelPerDirect()})
}

// withBudget sets the row's budget against path and whether it was met.
func (r Row) withBudget(minRatio float64, against Path) Row {
	var base float64
	switch against {
	case PathDirect:
		base = r.Direct.Median
	case PathRelay:
		base = r.Relay.Median
	}
	b := &Budget{Min: minRatio, Against: against.String()}
	b.Met = r.Measured() && base > 0 && r.Tunnel.Median >= minRatio*base
	r.Budget = b
	return r
}

// Failed reports whether any row failed to be measured (skips are not
// failures).
func (rep *Report) Failed() bool {
	for _, r := range rep.Rows {
		if r.Err != "" {
			return true
		}
	}
	return false
}

// WriteJSON writes the report as one indented JSON document.
func (rep *Report) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(rep)
}

// tableHeader are the text table's columns.
var tableHeader = []string{"figure", "direct", "reference relay", "tunnel", "tunnel/relay", "tunnel/direct", "budget"}

// WriteText writes the report as an aligned text table followed by a line
// of settings and a line of machine facts.
func (rep *Report) WriteText(w io.Writer) error {
	var b strings.Builder
	b.WriteString(formatTable(rep.Rows))
	fmt.Fprintf(&b, "\n%s\n%s\n", rep.Settings.line(), rep.Machine.line())
	_, err := io.WriteString(w, b.String())
	return err
}

// formatTable lays the rows out in columns: the figure (with its unit) and
// the budget left-aligned, numbers right-aligned. A row without values shows
// why in place of them.
func formatTable(rows []Row) string {
	cells := [][]string{tableHeader}
	for _, r := range rows {
		fig := r.Figure
		if r.Unit != "" {
			fig += " (" + r.Unit + ")"
		}
		switch {
		case r.Err != "":
			cells = append(cells, []string{fig, "error: " + firstLine(r.Err)})
		case r.Skipped != "":
			cells = append(cells, []string{fig, "skipped: " + firstLine(r.Skipped)})
		default:
			cells = append(cells, []string{fig,
				formatValue(r.Direct.Median), formatValue(r.Relay.Median), formatValue(r.Tunnel.Median),
				formatRatio(r.TunnelPerRelay()), formatRatio(r.TunnelPerDirect()), r.Budget.String()})
		}
	}
	widths := make([]int, len(tableHeader))
	for _, row := range cells {
		if len(row) != len(tableHeader) {
			widths[0] = max(widths[0], width(row[0]))
			continue // the message spans the other columns
		}
		for i, c := range row {
			widths[i] = max(widths[i], width(c))
		}
	}
	rule := make([]string, len(widths))
	for i, wd := range widths {
		rule[i] = strings.Repeat("-", wd)
	}
	cells = slices.Insert(cells, 1, rule)

	var b strings.Builder
	for _, row := range cells {
		var line strings.Builder
		for i, c := range row {
			if i > 0 {
				line.WriteString("  ")
			}
			pad := strings.Repeat(" ", max(0, widths[i]-width(c)))
			numeric := i > 0 && i < len(tableHeader)-1 && len(row) == len(tableHeader)
			if numeric {
				line.WriteString(pad + c)
			} else if i == len(row)-1 {
				line.WriteString(c) // no trailing blanks
			} else {
				line.WriteString(c + pad)
			}
		}
		b.WriteString(strings.TrimRight(line.String(), " ") + "\n")
	}
	return b.String()
}

// String is the budget column: whether it was met, and what it is.
func (b *Budget) String() string {
	if b == nil {
		return ""
	}
	verdict := "not met"
	if b.Met {
		verdict = "met"
	}
	return fmt.Sprintf("%s (>= %.2fx %s)", verdict, b.Min, shortPath(b.Against))
}

// shortPath names a path as the ratio columns do.
func shortPath(p string) string {
	if p == PathRelay.String() {
		return "relay"
	}
	return p
}

// formatValue keeps three or four significant digits.
func formatValue(v float64) string {
	switch {
	case v <= 0:
		return "-"
	case v >= 100:
		return fmt.Sprintf("%.0f", v)
	case v >= 10:
		return fmt.Sprintf("%.1f", v)
	default:
		return fmt.Sprintf("%.2f", v)
	}
}

func formatRatio(v float64) string {
	if v <= 0 {
		return "-"
	}
	return fmt.Sprintf("%.2f", v)
}

func width(s string) int { return utf8.RuneCountInString(s) }

func firstLine(s string) string {
	s, _, _ = strings.Cut(strings.TrimSpace(s), "\n")
	return s
}

// line is the settings line under the table.
func (s Settings) line() string {
	mode := ""
	if s.Quick {
		mode = " (--quick)"
	}
	return fmt.Sprintf("settings%s: bulk %s per transfer, %s; pgbench -S -c 8 -j 2 -T %s, scale %d, %s, server %s",
		mode, formatBytes(s.BulkBytes), runsText(s.Runs), s.PGDuration, s.PGScale, runsText(s.PGRuns), s.PGServer)
}

func runsText(n int) string {
	if n == 1 {
		return "1 run"
	}
	return fmt.Sprintf("%d runs (median)", n)
}

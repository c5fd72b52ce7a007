package bench

import (
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"
)

// Report is the result of one benchmark run.
type Report struct {
	Rows     []Row    `json:"rows"`
	Settings Settings `json:"settings"`
	Machine  Machine  `json:"machine"`
}

// Row is one figure of DESIGN.md's budget table. Its values sit in the
// columns of the paths they were measured over; a path that does not apply
// to the figure (no relay for a memory figure, say) is left zero.
type Row struct {
	// Figure names what is measured, without the unit.
	Figure string `json:"figure"`
	// Unit of the values, e.g. "MB/s" (10^6 bytes per second), "TPS",
	// "KiB/session", "CPU s/GiB".
	Unit string `json:"unit"`
	// Direct is the figure without tunnel or relay in the way (for the
	// long-link rows: plain TCP over the same emulated link).
	Direct Measurement `json:"direct,omitzero"`
	// Relay is the figure through the reference relay.
	Relay Measurement `json:"reference_relay,omitzero"`
	// Tunnel is the figure through the tunnel (over QUIC for the QUIC
	// rows), or of the tunnel's processes for the memory rows.
	Tunnel Measurement `json:"tunnel,omitzero"`
	// Budget is DESIGN.md's budget for the figure and whether it was met.
	Budget *Budget `json:"budget,omitempty"`
	// Note adds what helps to read the values (the raw figures a
	// per-session value comes from, say); printed under the table.
	Note string `json:"note,omitempty"`
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

// Budget is a bound on the tunnel's value: relative (Factor × a baseline's
// median) or absolute (Limit, in the row's unit).
type Budget struct {
	// Op is ">=" (the tunnel's value must be at least the bound) or "<="
	// (at most).
	Op string `json:"op"`
	// Factor and Against make a relative budget: the bound is Factor ×
	// the median of Against ("direct", "reference relay", "tunnel over
	// TLS"), which is Baseline.
	Factor   float64 `json:"factor,omitempty"`
	Against  string  `json:"against,omitempty"`
	Baseline float64 `json:"baseline,omitempty"`
	// Ratio is the tunnel's value over Baseline (relative budgets).
	Ratio float64 `json:"ratio,omitempty"`
	// Limit makes an absolute budget, in the row's unit.
	Limit float64 `json:"limit,omitempty"`
	// Met says whether the figure was measured and within the bound.
	Met bool `json:"met"`
}

// The operators of a Budget.
const (
	atLeastOp = ">="
	atMostOp  = "<="
)

// Baselines a relative budget is written against.
const (
	againstDirect = "direct"
	againstRelay  = "reference relay"
	againstTLS    = "tunnel over TLS"
)

// Relative reports whether the budget is Factor × a baseline.
func (b *Budget) Relative() bool { return b.Against != "" }

// within reports whether v satisfies op against bound.
func within(op string, v, bound float64) bool {
	if op == atMostOp {
		return v <= bound
	}
	return v >= bound
}

// relative sets a budget of factor × base, the median of the path named
// against, and whether the tunnel's median meets it.
func (r Row) relative(op string, factor float64, against string, base float64) Row {
	b := &Budget{Op: op, Factor: factor, Against: against, Baseline: base}
	b.Ratio = ratio(r.Tunnel.Median, base)
	b.Met = r.Measured() && b.Ratio > 0 && within(op, b.Ratio, factor)
	r.Budget = b
	return r
}

// absolute sets a budget of limit (in the row's unit) and whether the
// tunnel's median meets it.
func (r Row) absolute(op string, limit float64) Row {
	b := &Budget{Op: op, Limit: limit}
	b.Met = r.Measured() && len(r.Tunnel.Runs) > 0 && within(op, r.Tunnel.Median, limit)
	r.Budget = b
	return r
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
var tableHeader = []string{"figure", "direct", "reference relay", "tunnel", "ratio", "budget", "verdict"}

// numericColumns are right-aligned.
var numericColumns = map[int]bool{1: true, 2: true, 3: true, 4: true}

// WriteText writes the report as an aligned text table, the rows' notes,
// a line of settings and a line of machine facts.
func (rep *Report) WriteText(w io.Writer) error {
	var b strings.Builder
	b.WriteString(formatTable(rep.Rows))
	if notes := formatNotes(rep.Rows); notes != "" {
		b.WriteString("\n" + notes)
	}
	fmt.Fprintf(&b, "\n%s\n%s\n", rep.Settings.line(), rep.Machine.line())
	_, err := io.WriteString(w, b.String())
	return err
}

// formatTable lays the rows out in columns: the figure (with its unit), the
// budget and the verdict left-aligned, numbers right-aligned. A row without
// values shows why in place of them.
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
				r.Budget.ratioCell(), r.Budget.String(r.Unit), r.Budget.verdict()})
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
			switch {
			case numericColumns[i] && len(row) == len(tableHeader):
				line.WriteString(pad + c)
			case i == len(row)-1:
				line.WriteString(c) // no trailing blanks
			default:
				line.WriteString(c + pad)
			}
		}
		b.WriteString(strings.TrimRight(line.String(), " ") + "\n")
	}
	return b.String()
}

// formatNotes lists the rows' notes, one per line, or returns "".
func formatNotes(rows []Row) string {
	var b strings.Builder
	for _, r := range rows {
		if r.Note != "" {
			fmt.Fprintf(&b, "- %s: %s\n", r.Figure, r.Note)
		}
	}
	if b.Len() == 0 {
		return ""
	}
	return "notes:\n" + b.String()
}

// String is the budget column: the bound, relative to a baseline or in
// unit.
func (b *Budget) String(unit string) string {
	if b == nil {
		return ""
	}
	if b.Relative() {
		return fmt.Sprintf("%s %.2fx %s", b.Op, b.Factor, shortPath(b.Against))
	}
	s := fmt.Sprintf("%s %s", b.Op, strconv.FormatFloat(b.Limit, 'f', -1, 64))
	if unit != "" {
		s += " " + unit
	}
	return s
}

// ratioCell is the ratio column: the tunnel over the budget's baseline, or
// "-" where the budget is absolute or missing.
func (b *Budget) ratioCell() string {
	if b == nil || !b.Relative() {
		return "-"
	}
	return formatRatio(b.Ratio)
}

// verdict is the verdict column.
func (b *Budget) verdict() string {
	switch {
	case b == nil:
		return ""
	case b.Met:
		return "met"
	}
	return "not met"
}

// shortPath names a baseline as briefly as the budget column allows.
func shortPath(p string) string {
	switch p {
	case againstRelay:
		return "relay"
	case againstTLS:
		return "tunnel/TLS"
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

func runsText(n int) string {
	if n == 1 {
		return "1 run"
	}
	return fmt.Sprintf("%d runs (median)", n)
}

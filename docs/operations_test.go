package docs

import (
	"bufio"
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"unicode"

	"github.com/tunnelrelay/tunnel/internal/proto"
	"github.com/tunnelrelay/tunnel/pkg/dbproxy"
)

// The rules this file enforces on OPERATIONS.md, which names them in an
// HTML comment at its top:
//
//   - A table whose first header cell is "Message" lists messages: each
//     code span in a row's first cell is a message as a user sees it. Words
//     in capitals from placeholders stand for what the message names
//     (`agent "NAME" is not connected`). Each message must still occur in
//     the Go source, whole, as one string constant or format string
//     (placeholders and format verbs match anything).
//   - Tables whose first header cell is "Exit code", "Refuse code", "Reply
//     code", "Class", "SQLSTATE", "MySQL error" or "Command" list codes:
//     every code the code defines has a row there, and every row names a
//     code that exists.

const operationsFile = "OPERATIONS.md"

// placeholders stand for a value in a quoted message. The same words are
// wildcards in the source's strings too, so a source string that spells
// one literally (`pass --config FILE`) still matches.
var placeholders = []string{
	"NAME", "AGENT", "ROUTE", "TARGET", "ADDR", "HOST", "FILE", "PATH", "DIR",
	"KEY", "VALUE", "VAR", "N", "M", "DURATION", "TIME", "ERR", "REASON", "FP",
	"STATUS", "URL", "METHOD", "TYPE", "MODE", "STEP", "CHAR", "KIND", "REQUEST",
}

// wild stands for a placeholder, a format verb or a value computed at run
// time, after canonicalization.
const wild = "\x00"

// table is a Markdown table.
type table struct {
	line    int    // of the header
	header  string // first header cell, without backticks, lower case
	columns int    // cells in the header
	rows    []row
}

type row struct {
	line  int
	cells []string
}

// first returns the row's first cell, or "".
func (r row) first() string {
	if len(r.cells) == 0 {
		return ""
	}
	return r.cells[0]
}

var (
	docOnce   sync.Once
	docTables []table
	docErr    error
)

// tables returns OPERATIONS.md's tables.
func tables(t *testing.T) []table {
	t.Helper()
	docOnce.Do(func() {
		data, err := os.ReadFile(operationsFile)
		if err != nil {
			docErr = err
			return
		}
		docTables = parseTables(string(data))
	})
	if docErr != nil {
		t.Fatal(docErr)
	}
	return docTables
}

// parseTables finds the Markdown tables in doc, outside fenced code blocks.
func parseTables(doc string) []table {
	var (
		out   []table
		cur   *table
		fence bool
	)
	sc := bufio.NewScanner(strings.NewReader(doc))
	sc.Buffer(nil, 1<<20)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if strings.HasPrefix(line, "```") {
			fence = !fence
		}
		if fence || !strings.HasPrefix(line, "|") {
			cur = nil
			continue
		}
		cells := splitRow(line)
		switch {
		case cur == nil:
			out = append(out, table{line: n, header: strings.ToLower(strings.Trim(firstOf(cells), "` ")), columns: len(cells)})
			cur = &out[len(out)-1]
		case isSeparator(cells):
		default:
			cur.rows = append(cur.rows, row{line: n, cells: cells})
		}
	}
	return out
}

func firstOf(cells []string) string {
	if len(cells) == 0 {
		return ""
	}
	return cells[0]
}

// splitRow splits a table row into its cells, at pipes not escaped with a
// backslash; an escaped pipe becomes a pipe.
func splitRow(line string) []string {
	line = strings.TrimSuffix(strings.TrimPrefix(line, "|"), "|")
	var (
		cells []string
		b     strings.Builder
	)
	for i := 0; i < len(line); i++ {
		switch {
		case line[i] == '\\' && i+1 < len(line) && line[i+1] == '|':
			b.WriteByte('|')
			i++
		case line[i] == '|':
			cells = append(cells, strings.TrimSpace(b.String()))
			b.Reset()
		default:
			b.WriteByte(line[i])
		}
	}
	return append(cells, strings.TrimSpace(b.String()))
}

func isSeparator(cells []string) bool {
	for _, c := range cells {
		if strings.Trim(c, "-: ") != "" {
			return false
		}
	}
	return true
}

// codeSpans returns the code spans of a Markdown text: a run of backticks
// opens one, the next run of as many closes it, and one space inside each
// end is dropped when both are there.
func codeSpans(s string) []string {
	var out []string
	for i := 0; i < len(s); {
		if s[i] != '`' {
			i++
			continue
		}
		n := 0
		for i+n < len(s) && s[i+n] == '`' {
			n++
		}
		open := i + n
		end := -1
		for j := open; j < len(s); {
			if s[j] != '`' {
				j++
				continue
			}
			k := 0
			for j+k < len(s) && s[j+k] == '`' {
				k++
			}
			if k == n {
				end = j
				break
			}
			j += k
		}
		if end < 0 {
			break
		}
		span := s[open:end]
		if len(span) >= 2 && span[0] == ' ' && span[len(span)-1] == ' ' && strings.TrimSpace(span) != "" {
			span = span[1 : len(span)-1]
		}
		out = append(out, span)
		i = end + n
	}
	return out
}

// entries returns the code spans in the first cells of the tables headed
// header, with the line of each.
func entries(t *testing.T, header string) map[string]int {
	t.Helper()
	out := map[string]int{}
	found := false
	for _, tb := range tables(t) {
		if tb.header != header {
			continue
		}
		found = true
		for _, r := range tb.rows {
			for _, s := range codeSpans(r.first()) {
				out[s] = r.line
			}
		}
	}
	if !found {
		t.Fatalf("%s has no table headed %q", operationsFile, header)
	}
	return out
}

// TestOperationsMessagesInSource: every message a "Message" table quotes
// occurs in the Go source, so a reworded message fails here until the
// guide follows.
func TestOperationsMessagesInSource(t *testing.T) {
	src := sourceStrings(t)
	n := 0
	for _, tb := range tables(t) {
		if tb.header != "message" {
			continue
		}
		for _, r := range tb.rows {
			spans := codeSpans(r.first())
			if len(spans) == 0 {
				t.Errorf("%s:%d: a Message row without a quoted message: %q", operationsFile, r.line, r.first())
			}
			for _, msg := range spans {
				n++
				if !src.has(msg) {
					t.Errorf("%s:%d: message not found in the Go source (reworded? update the guide): %s", operationsFile, r.line, msg)
				}
			}
		}
	}
	if n < 100 {
		t.Errorf("%s quotes only %d messages in its Message tables; the troubleshooting tables are missing", operationsFile, n)
	}
}

// TestOperationsTables: every row has as many cells as its header, so no
// pipe in a message went unescaped and no cell is lost.
func TestOperationsTables(t *testing.T) {
	for _, tb := range tables(t) {
		for _, r := range tb.rows {
			if len(r.cells) != tb.columns {
				t.Errorf("%s:%d: %d cells, the header at line %d has %d", operationsFile, r.line, len(r.cells), tb.line, tb.columns)
			}
		}
	}
}

// TestOperationsMatcher checks the message matching itself, so that the
// test above can fail.
func TestOperationsMatcher(t *testing.T) {
	f, err := parser.ParseFile(token.NewFileSet(), "x.go", `package x
var ErrNotFound = errors.New("config file not found")
const hint = "pass --config FILE to use another file"
func f(name string, paths []string) {
	_ = fmt.Errorf("%w: no %s in any of:\n  %s\n"+hint, ErrNotFound, name, strings.Join(paths, "\n  "))
	_ = fmt.Sprintf("route %q: %s", name, name)
	_ = fmt.Sprintf("unknown key %q", name)
}`, 0)
	if err != nil {
		t.Fatal(err)
	}
	strs := foldStrings([][]*ast.File{{f}})
	if want := "config file not found: no " + wild + " in any of:\n  " + wild + "\npass --config FILE to use another file"; !slices.Contains(strs, want) {
		t.Errorf("foldStrings = %q, want it to hold %q", strs, want)
	}
	src := newCorpus(append(strs,
		`agent %q is not registered on this server (was it removed?)`,
		"target "+wild+" did not answer within "+wild,
	))
	for _, tc := range []struct {
		msg  string
		want bool
	}{
		{`agent "NAME" is not registered on this server (was it removed?)`, true},
		{`agent NAME is not registered on this server (was it removed?)`, true},
		{`agent "acme" is not registered on this server (was it removed?)`, true},
		{`agent "NAME" is not registered on this server`, false},
		{`agent "NAME" is unknown to this server (was it removed?)`, false},
		{`agent "NAME" is not registered on this server (was it removed?) at all`, false},
		{`route "ROUTE": agent "NAME" is not connected`, false}, // only the generic format matches
		{`config file not found: no tunnel-agent.toml in any of: PATH pass --config FILE to use another file`, true},
		{`target "TARGET" did not answer within DURATION`, true},
		{`target "TARGET" did not answer in time`, false},
		{`unknown key "KEY"`, true},
		{`unknown key "KEY" (did you mean "NAME"?)`, false}, // too much text for "unknown key %q"
	} {
		if got := src.has(tc.msg); got != tc.want {
			t.Errorf("has(%q) = %v, want %v", tc.msg, got, tc.want)
		}
	}
	if got := codeSpans("`a` and `` b `c` d `` and ```e```"); !slices.Equal(got, []string{"a", "b `c` d", "e"}) {
		t.Errorf("codeSpans = %q", got)
	}
	if got := splitRow("| `a \\| b` | c |"); !slices.Equal(got, []string{"`a | b`", "c"}) {
		t.Errorf("splitRow = %q", got)
	}
}

// TestOperationsExitCodes: every exit code of internal/cli has a row.
func TestOperationsExitCodes(t *testing.T) {
	codes := constValues(t, "../internal/cli", func(name, _ string) bool { return strings.HasPrefix(name, "Exit") })
	rows := map[string]bool{}
	for _, tb := range tables(t) {
		if tb.header == "exit code" {
			for _, r := range tb.rows {
				rows[strings.Trim(r.first(), "` ")] = true
			}
		}
	}
	checkBothWays(t, "exit code", values(codes), rows)
}

// TestOperationsRefuseCodes: every code the server refuses an agent with
// has a row.
func TestOperationsRefuseCodes(t *testing.T) {
	codes := constValues(t, "../internal/proto", func(_, typ string) bool { return typ == "RefuseCode" })
	checkBothWays(t, "refuse code", values(codes), keys(entries(t, "refuse code")))
}

// TestOperationsReplyCodes: every answer of an agent to a session has a
// row, by the name the server logs.
func TestOperationsReplyCodes(t *testing.T) {
	var names []string
	for c := range 256 {
		if s := proto.ReplyCode(c).String(); !strings.HasPrefix(s, "reply code ") {
			names = append(names, s)
		}
	}
	checkBothWays(t, "reply code", names, keys(entries(t, "reply code")))
}

// TestOperationsClasses: every class of dbproxy.ErrorCode, which starts
// the reason of the server's "session refused" lines, has a row.
func TestOperationsClasses(t *testing.T) {
	var names []string
	for c := range 64 {
		if s := dbproxy.ErrorCode(c).String(); !slices.Contains(names, s) {
			names = append(names, s)
		}
	}
	checkBothWays(t, "class", names, keys(entries(t, "class")))
}

// TestOperationsSQLSTATEs: every SQLSTATE the PostgreSQL front door sends
// has a row.
func TestOperationsSQLSTATEs(t *testing.T) {
	states := usedConsts(t, "../pkg/dbproxy", `^sqlstate[A-Z]`)
	checkBothWays(t, "SQLSTATE", values(states), keys(entries(t, "sqlstate")))
}

// TestOperationsMySQLErrors: every MySQL error code and SQLSTATE the
// front door sends appears in a row, as "CODE (STATE)".
func TestOperationsMySQLErrors(t *testing.T) {
	want := values(usedConsts(t, "../pkg/dbproxy", `^mysqlEr[A-Z]`))
	want = append(want, values(usedConsts(t, "../pkg/dbproxy", `^mysqlState[A-Z]`))...)
	pair := regexp.MustCompile(`^(\d{4}) \(([0-9A-Z]{5})\)$`)
	got := map[string]bool{}
	for s, line := range entries(t, "mysql error") {
		m := pair.FindStringSubmatch(s)
		if m == nil {
			t.Errorf("%s:%d: MySQL error %q is not written as CODE (SQLSTATE)", operationsFile, line, s)
			continue
		}
		got[m[1]], got[m[2]] = true, true
	}
	checkBothWays(t, "MySQL error code or state", want, got)
}

// TestOperationsCommands: every top-level command of both binaries, as
// their --help lists them, has a row.
func TestOperationsCommands(t *testing.T) {
	bin := buildBinaries(t)
	var want []string
	for _, name := range []string{"tunnel-server", "tunnel-agent"} {
		out, err := exec.Command(filepath.Join(bin, name), "--help").CombinedOutput()
		if err != nil {
			t.Fatalf("%s --help: %v\n%s", name, err, out)
		}
		cmds := availableCommands(string(out))
		if len(cmds) < 5 {
			t.Fatalf("%s --help lists %d commands:\n%s", name, len(cmds), out)
		}
		for _, c := range cmds {
			want = append(want, name+" "+c)
		}
	}
	got := map[string]bool{}
	for s := range entries(t, "command") {
		f := strings.Fields(s)
		if len(f) >= 2 {
			got[f[0]+" "+f[1]] = true
		}
	}
	checkBothWays(t, "command", want, got)
}

// availableCommands parses the "Available Commands:" block of cobra's help.
func availableCommands(help string) []string {
	var out []string
	in := false
	for line := range strings.SplitSeq(help, "\n") {
		switch {
		case strings.HasPrefix(line, "Available Commands:"):
			in = true
		case in && strings.TrimSpace(line) == "":
			return out
		case in:
			out = append(out, strings.Fields(line)[0])
		}
	}
	return out
}

func buildBinaries(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		t.Skip("builds the binaries")
	}
	dir := t.TempDir()
	cmd := exec.Command("go", "build", "-o", dir+string(filepath.Separator), "../cmd/tunnel-server", "../cmd/tunnel-agent")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return dir
}

// checkBothWays reports the codes without a row and the rows without a
// code.
func checkBothWays(t *testing.T, what string, want []string, got map[string]bool) {
	t.Helper()
	if len(want) == 0 {
		t.Fatalf("found no %s in the code", what)
	}
	for _, w := range want {
		if !got[w] {
			t.Errorf("%s %q has no row in %s", what, w, operationsFile)
		}
	}
	for g := range got {
		if !slices.Contains(want, g) {
			t.Errorf("%s has a row for %s %q, which the code does not have", operationsFile, what, g)
		}
	}
}

func keys(m map[string]int) map[string]bool {
	out := map[string]bool{}
	for k := range m {
		out[k] = true
	}
	return out
}

func values(m map[string]string) []string {
	var out []string
	for _, v := range m {
		if !slices.Contains(out, v) {
			out = append(out, v)
		}
	}
	slices.Sort(out)
	return out
}

// parseDir parses the non-test Go files of dir.
func parseDir(t *testing.T, dir string) []*ast.File {
	t.Helper()
	files, err := parseFiles(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Fatalf("no Go files in %s", dir)
	}
	return files
}

// constValues returns the constants of the package in dir that keep
// decides on (by name and declared type name), by name, with their values
// as written (strings unquoted). Constants without a value of their own
// (iota) are skipped.
func constValues(t *testing.T, dir string, keep func(name, typ string) bool) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, f := range parseDir(t, dir) {
		for _, d := range f.Decls {
			gd, ok := d.(*ast.GenDecl)
			if !ok || gd.Tok != token.CONST {
				continue
			}
			for _, spec := range gd.Specs {
				vs := spec.(*ast.ValueSpec)
				typ := ""
				if id, ok := vs.Type.(*ast.Ident); ok {
					typ = id.Name
				}
				for i, name := range vs.Names {
					if i >= len(vs.Values) || !keep(name.Name, typ) {
						continue
					}
					if lit, ok := vs.Values[i].(*ast.BasicLit); ok {
						v := lit.Value
						if lit.Kind == token.STRING {
							v, _ = strconv.Unquote(v)
						}
						out[name.Name] = v
					}
				}
			}
		}
	}
	return out
}

// usedConsts returns the constants of dir whose names match pattern and
// that are used somewhere besides their declaration.
func usedConsts(t *testing.T, dir, pattern string) map[string]string {
	t.Helper()
	re := regexp.MustCompile(pattern)
	all := constValues(t, dir, func(name, _ string) bool { return re.MatchString(name) })
	uses := map[string]int{}
	for _, f := range parseDir(t, dir) {
		ast.Inspect(f, func(n ast.Node) bool {
			if id, ok := n.(*ast.Ident); ok {
				if _, ok := all[id.Name]; ok {
					uses[id.Name]++
				}
			}
			return true
		})
	}
	out := map[string]string{}
	for name, v := range all {
		if uses[name] > 1 {
			out[name] = v
		}
	}
	return out
}

// corpus is the source's strings, canonicalized, for matching messages.
type corpus struct {
	strs []sourceString
}

type sourceString struct {
	canon   string
	longest string // its longest part between wildcards
	lit     int    // letters and digits outside wildcards
	once    sync.Once
	re      *regexp.Regexp
}

var (
	srcOnce sync.Once
	src     *corpus
	srcErr  error
)

// sourceStrings returns the strings of the code users run: the binaries'
// commands and everything they import from internal/ and pkg/.
func sourceStrings(t *testing.T) *corpus {
	t.Helper()
	srcOnce.Do(func() {
		var pkgs [][]*ast.File
		for _, root := range []string{"../cmd", "../internal", "../pkg"} {
			err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
				if err != nil || !d.IsDir() {
					return err
				}
				switch d.Name() {
				case "testutil", "testdata", "bench", "netsim", "harness", "quickstart", "e2e", "tunnel-bench", "tunnel-quickstart":
					return filepath.SkipDir
				}
				files, err := parseFiles(path)
				if len(files) > 0 {
					pkgs = append(pkgs, files)
				}
				return err
			})
			if err != nil {
				srcErr = err
				return
			}
		}
		src = newCorpus(foldStrings(pkgs))
	})
	if srcErr != nil {
		t.Fatal(srcErr)
	}
	return src
}

// parseFiles parses the non-test Go files in dir.
func parseFiles(dir string) ([]*ast.File, error) {
	paths, err := filepath.Glob(filepath.Join(dir, "*.go"))
	if err != nil {
		return nil, err
	}
	fset := token.NewFileSet()
	var files []*ast.File
	for _, p := range paths {
		if strings.HasSuffix(p, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, p, nil, parser.SkipObjectResolution)
		if err != nil {
			return nil, err
		}
		files = append(files, f)
	}
	return files, nil
}

// foldStrings returns the strings of the packages: string literals,
// concatenations of them, and fmt.Errorf and fmt.Sprintf results, with
// string constants and error variables (errors.New("...")) folded in,
// where a package's own or another's (store.ErrExists) are named; anything
// computed at run time is a wildcard.
func foldStrings(pkgs [][]*ast.File) []string {
	// "pkg.Name": the text of an error variable, or of a string constant
	// (filled in by the first pass below).
	sentinels := map[string]string{}
	for _, files := range pkgs {
		for _, f := range files {
			for _, d := range f.Decls {
				gd, ok := d.(*ast.GenDecl)
				if !ok || gd.Tok != token.VAR {
					continue
				}
				for _, spec := range gd.Specs {
					vs := spec.(*ast.ValueSpec)
					for i, name := range vs.Names {
						if i >= len(vs.Values) {
							continue
						}
						if call, ok := vs.Values[i].(*ast.CallExpr); ok && isCall(call, "errors", "New") && len(call.Args) == 1 {
							if lit, ok := call.Args[0].(*ast.BasicLit); ok && lit.Kind == token.STRING {
								sentinels[f.Name.Name+"."+name.Name], _ = strconv.Unquote(lit.Value)
							}
						}
					}
				}
			}
		}
	}
	var out []string
	// The first pass folds each package's constants, for the others to
	// use; the second folds every string.
	for pass := range 2 {
		for _, files := range pkgs {
			strs := foldPackage(files, sentinels, pass == 0)
			if pass == 1 {
				out = append(out, strs...)
			}
		}
	}
	return out
}

// foldPackage folds the strings of one package, with the texts of other
// packages' error variables and constants from sentinels. With consts set
// it adds the package's own string constants to sentinels instead.
func foldPackage(files []*ast.File, sentinels map[string]string, consts bool) []string {
	local := map[string]ast.Expr{}
	var names []*ast.Ident
	for _, f := range files {
		ast.Inspect(f, func(n ast.Node) bool {
			if gd, ok := n.(*ast.GenDecl); ok && gd.Tok == token.CONST {
				for _, spec := range gd.Specs {
					vs := spec.(*ast.ValueSpec)
					for i, name := range vs.Names {
						if i < len(vs.Values) {
							local[name.Name] = vs.Values[i]
							names = append(names, name)
						}
					}
				}
			}
			return true
		})
	}
	pkg := files[0].Name.Name
	var fold func(e ast.Expr, depth int) string
	fold = func(e ast.Expr, depth int) string {
		if depth > 8 {
			return wild
		}
		switch e := e.(type) {
		case *ast.BasicLit:
			if e.Kind == token.STRING {
				s, _ := strconv.Unquote(e.Value)
				return s
			}
		case *ast.Ident:
			if v, ok := local[e.Name]; ok {
				return fold(v, depth+1)
			}
			if v, ok := sentinels[pkg+"."+e.Name]; ok {
				return v
			}
		case *ast.SelectorExpr:
			if x, ok := e.X.(*ast.Ident); ok {
				if v, ok := sentinels[x.Name+"."+e.Sel.Name]; ok {
					return v
				}
			}
		case *ast.ParenExpr:
			return fold(e.X, depth)
		case *ast.BinaryExpr:
			if e.Op == token.ADD {
				return fold(e.X, depth) + fold(e.Y, depth)
			}
		case *ast.CallExpr:
			if (isCall(e, "fmt", "Errorf") || isCall(e, "fmt", "Sprintf")) && len(e.Args) > 0 {
				return format(fold(e.Args[0], depth+1), e.Args[1:], func(a ast.Expr) string { return fold(a, depth+1) })
			}
		}
		return wild
	}
	if consts {
		for _, name := range names {
			if v := fold(local[name.Name], 0); !strings.Contains(v, wild) {
				if _, isErr := sentinels[pkg+"."+name.Name]; !isErr {
					sentinels[pkg+"."+name.Name] = v
				}
			}
		}
		return nil
	}
	var out []string
	for _, f := range files {
		ast.Inspect(f, func(n ast.Node) bool {
			var s string
			switch n := n.(type) {
			case *ast.BasicLit:
				s = fold(n, 0)
			case *ast.BinaryExpr:
				if n.Op == token.ADD {
					s = fold(n, 0)
				}
			case *ast.CallExpr:
				if isCall(n, "fmt", "Errorf") || isCall(n, "fmt", "Sprintf") {
					s = fold(n, 0)
				}
			}
			if strings.Trim(s, wild) != "" {
				out = append(out, s)
			}
			return true
		})
	}
	return out
}

func isCall(call *ast.CallExpr, pkg, fn string) bool {
	sel, ok := call.Fun.(*ast.SelectorExpr)
	if !ok || sel.Sel.Name != fn {
		return false
	}
	x, ok := sel.X.(*ast.Ident)
	return ok && x.Name == pkg
}

// format fills the verbs of a format string with the arguments that fold
// to text (quoted for %q); the others become wildcards.
func format(f string, args []ast.Expr, fold func(ast.Expr) string) string {
	var b strings.Builder
	i, last := 0, 0
	for _, loc := range verb.FindAllStringIndex(f, -1) {
		b.WriteString(f[last:loc[0]])
		last = loc[1]
		v := f[loc[0]:loc[1]]
		if v == "%%" {
			b.WriteString("%")
			continue
		}
		arg := wild
		if i < len(args) && !strings.Contains(v, "[") {
			if s := fold(args[i]); !strings.Contains(s, wild) {
				arg = s
				if strings.HasSuffix(v, "q") {
					arg = strconv.Quote(s)
				}
			}
		}
		i++
		b.WriteString(arg)
	}
	b.WriteString(f[last:])
	return b.String()
}

var (
	// verb is a fmt verb, with its flags, width, precision and index.
	verb = regexp.MustCompile(`%%|%[-+# 0]*(?:\[\d+\])?(?:\d+|\*)?(?:\.(?:\d+|\*))?[a-zA-Z]`)
	// placeholder is a placeholder word, quoted or bare.
	placeholder = regexp.MustCompile(`"(?:` + strings.Join(placeholders, "|") + `)"|\b(?:` + strings.Join(placeholders, "|") + `)\b`)
	space       = regexp.MustCompile(`\s+`)
	wildRun     = regexp.MustCompile(`(?:` + wild + `)+`)
)

func newCorpus(strs []string) *corpus {
	c := &corpus{}
	seen := map[string]bool{}
	for _, s := range strs {
		s = verb.ReplaceAllStringFunc(s, func(v string) string {
			if v == "%%" {
				return "%"
			}
			return wild
		})
		canon := canonical(s)
		if seen[canon] || lettersAndDigits(canon) == 0 {
			continue
		}
		seen[canon] = true
		longest := ""
		for part := range strings.SplitSeq(canon, wild) {
			if len(part) > len(longest) {
				longest = part
			}
		}
		c.strs = append(c.strs, sourceString{canon: canon, longest: longest, lit: lettersAndDigits(canon)})
	}
	return c
}

// canonical turns placeholders into wildcards (a quoted one with its
// quotes, as %q prints them) and collapses white space.
func canonical(s string) string {
	s = placeholder.ReplaceAllString(s, wild)
	s = strings.ReplaceAll(s, `"`+wild+`"`, wild)
	s = space.ReplaceAllString(s, " ")
	s = wildRun.ReplaceAllString(s, wild)
	return strings.TrimSpace(s)
}

func lettersAndDigits(s string) int {
	n := 0
	for _, r := range s {
		if unicode.IsLetter(r) || unicode.IsDigit(r) {
			n++
		}
	}
	return n
}

// has reports whether msg, as the guide quotes it, is one source string:
// with wildcards for the source's verbs and computed parts, it matches the
// whole message, and it is no mere frame (its own text is at least three
// quarters of the message's, so "route %q: %s" does not vouch for any
// message about a route, nor "unknown key %q" for one that goes on).
func (c *corpus) has(msg string) bool {
	m := canonical(msg)
	need := lettersAndDigits(m)
	for i := range c.strs {
		s := &c.strs[i]
		if 4*s.lit < 3*need || !strings.Contains(m, s.longest) {
			continue
		}
		s.once.Do(func() {
			parts := strings.Split(s.canon, wild)
			for j, p := range parts {
				parts[j] = regexp.QuoteMeta(p)
			}
			s.re = regexp.MustCompile(`^` + strings.Join(parts, `[\s\S]*`) + `$`)
		})
		if s.re.MatchString(m) {
			return true
		}
	}
	return false
}

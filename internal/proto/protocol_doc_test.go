package proto

// These tests keep docs/PROTOCOL.md honest: its hex examples must be what
// this package's encoders write, and every frame type, reply code, refuse
// code, JSON field and limit the code defines must be documented.

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"go/ast"
	"go/constant"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

const docPath = "../../docs/PROTOCOL.md"

func readDoc(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile(docPath)
	if err != nil {
		t.Fatalf("the protocol must be documented for people: %v", err)
	}
	return string(b)
}

// A docExample is a frame the doc shows in hex. The segments only shape the
// suggested block printed when the doc is out of date; the check compares
// bytes.
type docExample struct {
	name     string
	frame    []byte
	segments []segment
}

type segment struct {
	n    int    // bytes; 0 means the rest, 16 to a line
	note string // empty: the bytes as text
}

func docExamples(t *testing.T) []docExample {
	t.Helper()
	frame := func(write func(*bytes.Buffer) error) []byte {
		t.Helper()
		var buf bytes.Buffer
		if err := write(&buf); err != nil {
			t.Fatal(err)
		}
		return buf.Bytes()
	}
	hdr := func(ft FrameType, b []byte) segment {
		return segment{n: headerLen, note: fmt.Sprintf("type 0x%02x (%s), payload length %d", uint8(ft), ft, len(b)-headerLen)}
	}
	str := func(what, s string) segment {
		return segment{n: 1 + len(s), note: fmt.Sprintf("%s: length %d, %q", what, len(s), s)}
	}

	open := Open{SessionID: 0x0102030405060708, Target: "warehouse", Client: "10.1.2.3:50000", Route: "bi"}
	openFrame := frame(func(b *bytes.Buffer) error { return WriteOpen(b, &open) })
	okFrame := frame(func(b *bytes.Buffer) error { return WriteReply(b, &Reply{Code: ReplyOK}) })
	failed := Reply{Code: ReplyDialFailed, Message: `target "warehouse" refused the connection`}
	failedFrame := frame(func(b *bytes.Buffer) error { return WriteReply(b, &failed) })
	pingFrame := frame(func(b *bytes.Buffer) error { return WriteFrame(b, FramePing, AppendSeq(nil, 42)) })
	helloFrame := frame(func(b *bytes.Buffer) error { return WriteJSON(b, FrameHello, docHello()) })

	return []docExample{
		{name: "open", frame: openFrame, segments: []segment{
			hdr(FrameOpen, openFrame),
			{n: 8, note: fmt.Sprintf("session id 0x%016x", open.SessionID)},
			str("target", open.Target),
			str("client", open.Client),
			str("route", open.Route),
		}},
		{name: "reply ok", frame: okFrame, segments: []segment{
			hdr(FrameReply, okFrame),
			{n: 1, note: "code 0 (ok), no message"},
		}},
		{name: "reply dial failed", frame: failedFrame, segments: []segment{
			hdr(FrameReply, failedFrame),
			{n: 1, note: fmt.Sprintf("code %d (%s)", uint8(failed.Code), failed.Code)},
			{n: 0},
		}},
		{name: "ping", frame: pingFrame, segments: []segment{
			hdr(FramePing, pingFrame),
			{n: 8, note: "sequence 42"},
		}},
		{name: "hello", frame: helloFrame, segments: []segment{
			hdr(FrameHello, helloFrame),
			{n: 0},
		}},
	}
}

// docHello is the Hello the doc shows, as JSON and in hex.
func docHello() *Hello {
	return &Hello{Version: 1, AgentVersion: "1.2.0", Targets: []string{"warehouse", "crm"}, Instance: "3f9a2c51d07e8b64"}
}

// render writes an example the way the doc shows it: bytes in hex, a field
// or up to 16 bytes to a line, with a comment after "#".
func (e docExample) render() string {
	var lines [][2]string
	b := e.frame
	for _, s := range e.segments {
		n := s.n
		if n == 0 || n > len(b) {
			n = len(b)
		}
		chunk := b[:n]
		b = b[n:]
		if s.note != "" {
			lines = append(lines, [2]string{hexGroup(chunk), s.note})
			continue
		}
		for len(chunk) > 0 {
			m := min(16, len(chunk))
			lines = append(lines, [2]string{hexGroup(chunk[:m]), printable(chunk[:m])})
			chunk = chunk[m:]
		}
	}
	if len(b) > 0 {
		lines = append(lines, [2]string{hexGroup(b), "?"})
	}
	width := 0
	for _, l := range lines {
		width = max(width, len(l[0]))
	}
	var out strings.Builder
	out.WriteString("```hex\n")
	for _, l := range lines {
		fmt.Fprintf(&out, "%-*s  # %s\n", width, l[0], l[1])
	}
	out.WriteString("```\n")
	return out.String()
}

func hexGroup(b []byte) string {
	parts := make([]string, len(b))
	for i, c := range b {
		parts[i] = hex.EncodeToString([]byte{c})
	}
	return strings.Join(parts, " ")
}

func printable(b []byte) string {
	r := []byte(string(b))
	for i, c := range r {
		if c < 0x20 || c > 0x7e {
			r[i] = '.'
		}
	}
	return string(r)
}

// hexBlocks returns the contents of the doc's ```hex blocks.
func hexBlocks(doc string) []string {
	var blocks []string
	var cur *strings.Builder
	for line := range strings.SplitSeq(doc, "\n") {
		trimmed := strings.TrimSpace(line)
		switch {
		case cur == nil && trimmed == "```hex":
			cur = &strings.Builder{}
		case cur != nil && trimmed == "```":
			blocks = append(blocks, cur.String())
			cur = nil
		case cur != nil:
			cur.WriteString(line)
			cur.WriteByte('\n')
		}
	}
	return blocks
}

// hexFields returns the hex bytes of a block: comments after "#" dropped,
// whitespace (line wrapping included) ignored.
func hexFields(block string) []string {
	var fields []string
	for line := range strings.SplitSeq(block, "\n") {
		if i := strings.IndexByte(line, '#'); i >= 0 {
			line = line[:i]
		}
		fields = append(fields, strings.Fields(line)...)
	}
	return fields
}

func TestHexFields(t *testing.T) {
	tests := []struct {
		name  string
		block string
		want  string
	}{
		{name: "comments", block: "10 00 2a  # type\n01 02 # id\n", want: "10 00 2a 01 02"},
		{name: "wrapping and tabs", block: "\t10 00\n\n  2a\t01   02\n", want: "10 00 2a 01 02"},
		{name: "comment only", block: "# nothing\n", want: ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := strings.Join(hexFields(tt.block), " "); got != tt.want {
				t.Errorf("hexFields = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestDocHexExamples(t *testing.T) {
	doc := readDoc(t)
	blocks := hexBlocks(doc)
	used := make([]bool, len(blocks))
	for _, e := range docExamples(t) {
		t.Run(e.name, func(t *testing.T) {
			want := strings.Join(hexFields(hexGroup(e.frame)), " ")
			for i, b := range blocks {
				if strings.Join(hexFields(b), " ") == want {
					used[i] = true
					return
				}
			}
			t.Errorf("%s has no ```hex block with the bytes the encoder writes; expected:\n%s", docPath, e.render())
		})
	}
	for i, b := range blocks {
		if !used[i] {
			first, _, _ := strings.Cut(strings.TrimSpace(b), "\n")
			t.Errorf("%s: the ```hex block starting %q is not one of the examples this test checks; add it to docExamples or remove it", docPath, first)
		}
	}
}

func TestDocJSONExamples(t *testing.T) {
	doc := readDoc(t)
	payload, err := json.Marshal(docHello())
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(doc, string(payload)) {
		t.Errorf("%s does not show the Hello example's JSON verbatim:\n%s", docPath, payload)
	}
}

// TestDocFlow checks that the flow in the package comment is the flow in
// the doc, word for word.
func TestDocFlow(t *testing.T) {
	f, err := parser.ParseFile(token.NewFileSet(), "proto.go", nil, parser.ParseComments|parser.PackageClauseOnly)
	if err != nil {
		t.Fatal(err)
	}
	comment := f.Doc.Text()
	_, flow, ok := strings.Cut(comment, "Protocol flow:")
	flow, _, ok2 := strings.Cut(flow, "Framing:")
	if !ok || !ok2 {
		t.Fatal(`the package comment of proto.go has no "Protocol flow:" section followed by "Framing:"`)
	}
	want := normalize(flow)
	if got := normalize(section(t, readDoc(t), "## Flow")); !strings.Contains(got, want) {
		t.Errorf("the flow in %s (section ## Flow) differs from the package comment; the comment says:\n%s", docPath, flow)
	}
}

func normalize(s string) string { return strings.Join(strings.Fields(s), " ") }

// section returns the doc from the heading that starts with prefix to the
// next heading of the same or a higher level, ignoring code blocks.
func section(t *testing.T, doc, prefix string) string {
	t.Helper()
	level := strings.IndexFunc(prefix, func(r rune) bool { return r != '#' })
	var out strings.Builder
	in, fenced := false, false
	for line := range strings.SplitSeq(doc, "\n") {
		if strings.HasPrefix(strings.TrimSpace(line), "```") {
			fenced = !fenced
		}
		if !fenced && strings.HasPrefix(line, "#") {
			l := strings.IndexFunc(line, func(r rune) bool { return r != '#' })
			if in && l <= level {
				break
			}
			if strings.HasPrefix(line, prefix) {
				in = true
			}
		}
		if in {
			out.WriteString(line)
			out.WriteByte('\n')
		}
	}
	if !in {
		t.Fatalf("%s has no section %q", docPath, prefix)
	}
	return out.String()
}

// rows returns the cells of the table rows in text.
func rows(text string) [][]string {
	var out [][]string
	for line := range strings.SplitSeq(text, "\n") {
		line = strings.TrimSpace(line)
		if !strings.HasPrefix(line, "|") {
			continue
		}
		cells := strings.Split(strings.Trim(line, "|"), "|")
		for i := range cells {
			cells[i] = strings.TrimSpace(cells[i])
		}
		out = append(out, cells)
	}
	return out
}

// row returns the cells of the table row in text whose first cell is first.
func row(text, first string) []string {
	for _, cells := range rows(text) {
		if cells[0] == first {
			return cells
		}
	}
	return nil
}

// hasCell reports whether a cell contains want.
func hasCell(cells []string, want string) bool {
	for _, c := range cells {
		if strings.Contains(c, want) {
			return true
		}
	}
	return false
}

type docConst struct {
	name, typ string
	val       constant.Value
}

// packageConsts returns the typed constants of the package's non-test
// files, so that a constant added to the code must be added to the doc.
func packageConsts(t *testing.T, types ...string) []docConst {
	t.Helper()
	want := map[string]bool{}
	for _, typ := range types {
		want[typ] = true
	}
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	var out []docConst
	fset := token.NewFileSet()
	for _, name := range files {
		if strings.HasSuffix(name, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, name, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range f.Decls {
			gd, ok := d.(*ast.GenDecl)
			if !ok || gd.Tok != token.CONST {
				continue
			}
			for _, spec := range gd.Specs {
				vs := spec.(*ast.ValueSpec)
				id, ok := vs.Type.(*ast.Ident)
				if !ok || !want[id.Name] {
					continue
				}
				for i, n := range vs.Names {
					lit, ok := vs.Values[i].(*ast.BasicLit)
					if !ok {
						t.Fatalf("%s: constant %s is not a literal; teach this test to read it", fset.Position(n.Pos()), n.Name)
					}
					out = append(out, docConst{name: n.Name, typ: id.Name, val: constant.MakeFromLiteral(lit.Value, lit.Kind, 0)})
				}
			}
		}
	}
	if len(out) == 0 {
		t.Fatalf("found no constants of types %v", types)
	}
	return out
}

func TestDocFrameTypes(t *testing.T) {
	sec := section(t, readDoc(t), "## Frame types")
	for _, c := range packageConsts(t, "FrameType") {
		t.Run(c.name, func(t *testing.T) {
			v, _ := constant.Uint64Val(c.val)
			cells := row(sec, fmt.Sprintf("`0x%02x`", v))
			if cells == nil || !hasCell(cells, "`"+c.name+"`") {
				t.Errorf("## Frame types has no row | `0x%02x` | ... `%s` ... |", v, c.name)
			}
		})
	}
}

func TestDocReplyCodes(t *testing.T) {
	sec := section(t, readDoc(t), "### Reply codes")
	for _, c := range packageConsts(t, "ReplyCode") {
		t.Run(c.name, func(t *testing.T) {
			v, _ := constant.Uint64Val(c.val)
			code := ReplyCode(v)
			cells := row(sec, fmt.Sprintf("`%d`", v))
			if cells == nil || !hasCell(cells, "`"+c.name+"`") || !hasCell(cells, "`"+code.String()+"`") {
				t.Errorf("### Reply codes has no row | `%d` | `%s` | `%s` | ... |", v, c.name, code)
			}
		})
	}
}

func TestDocRefuseCodes(t *testing.T) {
	sec := section(t, readDoc(t), "### Refuse codes")
	for _, c := range packageConsts(t, "RefuseCode") {
		t.Run(c.name, func(t *testing.T) {
			code := RefuseCode(constant.StringVal(c.val))
			permanent := "no"
			if code.Permanent() {
				permanent = "yes"
			}
			cells := row(sec, "`"+string(code)+"`")
			if len(cells) < 3 || cells[1] != "`"+c.name+"`" || cells[2] != permanent {
				t.Errorf("### Refuse codes has no row | `%s` | `%s` | %s | ... |", code, c.name, permanent)
			}
		})
	}
}

func TestDocJSONFields(t *testing.T) {
	doc := readDoc(t)
	tests := []struct {
		heading string
		v       any
	}{
		{heading: "### Hello", v: Hello{}},
		{heading: "### Welcome", v: Welcome{}},
		{heading: "### Refuse", v: Refuse{}},
	}
	for _, tt := range tests {
		sec := section(t, doc, tt.heading)
		typ := reflect.TypeOf(tt.v)
		for i := range typ.NumField() {
			f := typ.Field(i)
			name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
			t.Run(typ.Name()+"."+name, func(t *testing.T) {
				want := jsonType(t, f.Type)
				cells := row(sec, "`"+name+"`")
				if len(cells) < 2 || cells[1] != want {
					t.Errorf("%s has no row | `%s` | %s | ... |", tt.heading, name, want)
				}
			})
		}
	}
}

func jsonType(t *testing.T, typ reflect.Type) string {
	switch typ.Kind() {
	case reflect.String:
		return "string"
	case reflect.Int, reflect.Int64:
		return "integer"
	case reflect.Bool:
		return "boolean"
	case reflect.Slice:
		if typ.Elem().Kind() == reflect.String {
			return "array of strings"
		}
	}
	t.Fatalf("no JSON type name for %s; extend jsonType", typ)
	return ""
}

func TestDocLimits(t *testing.T) {
	sec := section(t, readDoc(t), "## Limits")
	tests := []struct {
		name  string
		value int
	}{
		{"MaxPayload", MaxPayload},
		{"maxTargets", maxTargets},
		{"maxNameLen", maxNameLen},
		{"maxReplyMessage", maxReplyMessage},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, cells := range rows(sec) {
				if len(cells) > 2 && cells[2] == "`"+tt.name+"`" && strings.HasPrefix(cells[1]+" ", fmt.Sprint(tt.value)+" ") {
					return
				}
			}
			t.Errorf("## Limits has no row | ... | %d ... | `%s` | ... |", tt.value, tt.name)
		})
	}
}

func TestDocVersions(t *testing.T) {
	sec := section(t, readDoc(t), "## Versioning")
	for _, want := range []string{fmt.Sprintf("`Version = %d`", Version), fmt.Sprintf("`MinVersion = %d`", MinVersion)} {
		if !strings.Contains(sec, want) {
			t.Errorf("## Versioning does not say %s", want)
		}
	}
	for v := 1; v <= Version; v++ {
		if row(sec, fmt.Sprintf("`%d`", v)) == nil {
			t.Errorf("## Versioning has no version log row for version %d", v)
		}
	}
}

package config

import (
	"bytes"
	"encoding"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strconv"
	"strings"

	"github.com/pelletier/go-toml/v2"
	"github.com/pelletier/go-toml/v2/unstable"
)

// maxFileSize bounds how much of a config file is read: a config is a few
// kilobytes, and a path pointing at a device must not exhaust memory.
const maxFileSize = 1 << 20

// decode strictly decodes the TOML document data into v, a pointer to a
// config struct, and returns the line of every key and table it sets.
//
// Before decoding, one pass over the document's syntax tree reports, all at
// once and with their lines, every unknown key and every value of the wrong
// type: go-toml stops at the first problem, matches keys case-insensitively,
// silently accepts [targets] for an array of tables, and reports a wrong
// type with a dump of Go types and sometimes without a position. The decoder
// then runs with DisallowUnknownFields as a second line of defence.
func decode(file string, data []byte, v any) (docIndex, error) {
	// Clip capacity so offsets computed from subslices stay within data.
	data = data[:len(data):len(data)]
	w := &walker{
		file:     file,
		data:     data,
		root:     reflect.TypeOf(v).Elem(),
		idx:      docIndex{},
		arrays:   map[string]int{},
		reported: map[string]bool{},
	}
	if err := w.run(); err != nil {
		return nil, err
	}
	if len(w.errs) > 0 {
		return nil, joinErrors(w.errs)
	}
	dec := toml.NewDecoder(bytes.NewReader(data)).DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return nil, w.translate(err)
	}
	return w.idx, nil
}

// docIndex maps keys, spelled as in Error.Key ("targets[2].address"), to
// the line that sets them.
type docIndex map[string]int

// line returns the line of key. A key missing from an element of an array
// of tables gets the line of that element's header, so the user can tell
// which [[targets]] block lacks it; other missing keys have no line.
func (x docIndex) line(key string) int {
	if l, ok := x[key]; ok {
		return l
	}
	for k := key; ; {
		i := strings.LastIndexByte(k, '.')
		if i < 0 {
			return 0
		}
		k = k[:i]
		if strings.HasSuffix(k, "]") {
			return x[k]
		}
	}
}

// segment is one part of a key path; index counts the elements of an array
// of tables from 1, and is 0 for a plain key.
type segment struct {
	name  string
	index int
}

type keyPath []segment

// String spells the path as Error.Key does: "targets[2].address".
func (p keyPath) String() string {
	var b strings.Builder
	for i, s := range p {
		if i > 0 {
			b.WriteByte('.')
		}
		b.WriteString(s.name)
		if s.index > 0 {
			b.WriteString("[" + strconv.Itoa(s.index) + "]")
		}
	}
	return b.String()
}

// walker checks a document's syntax tree against the config struct type.
type walker struct {
	file     string
	data     []byte
	root     reflect.Type
	p        unstable.Parser
	idx      docIndex
	arrays   map[string]int  // elements seen so far per array-of-tables path
	reported map[string]bool // unknown keys already reported
	errs     []*Error
}

// run walks every top-level expression; it returns the syntax error, if
// any, and leaves the other problems in w.errs.
func (w *walker) run() error {
	w.p.Reset(w.data)
	var table keyPath
	for w.p.NextExpression() {
		n := w.p.Expression()
		switch n.Kind {
		case unstable.KeyValue:
			w.keyValue(table, n)
		case unstable.Table, unstable.ArrayTable:
			table = w.header(n)
		}
	}
	var pe *unstable.ParserError
	if err := w.p.Error(); errors.As(err, &pe) {
		line, col := w.position(pe.Highlight)
		return &Error{File: w.file, Line: line, Column: col, Err: ErrSyntax, msg: "invalid TOML: " + pe.Message}
	} else if err != nil {
		return &Error{File: w.file, Err: ErrSyntax, msg: "invalid TOML: " + err.Error()}
	}
	return nil
}

// header handles [table] and [[array.of.tables]] and returns the path that
// the keys after it belong to.
func (w *walker) header(n *unstable.Node) keyPath {
	names, line := w.keyOf(n)
	var path keyPath
	for i, name := range names {
		path = append(path, segment{name: name})
		plain := path.String()
		if i == len(names)-1 && n.Kind == unstable.ArrayTable {
			w.arrays[plain]++
		}
		path[i].index = w.arrays[plain]
	}
	key := path.String()
	if _, seen := w.idx[key]; !seen {
		w.idx[key] = line
	}
	t, ok := w.lookup(path, line, false)
	if !ok {
		return path
	}
	switch {
	case n.Kind == unstable.Table && t.Kind() == reflect.Slice && isSection(t.Elem()):
		w.reported[key] = true // the keys below it would repeat the problem
		w.add(sentence(key, ErrInvalid, fmt.Sprintf(
			"%s is a list: write [[%s]] (two brackets) for each entry, not [%s]", key, key, key)), line)
	case !isSection(t):
		w.mismatch(path, t, n.Kind, line)
	}
	return path
}

// keyValue handles key = value under table.
func (w *walker) keyValue(table keyPath, n *unstable.Node) {
	names, line := w.keyOf(n)
	path := slices.Clone(table)
	for _, name := range names {
		path = append(path, segment{name: name})
	}
	w.idx[path.String()] = line
	w.value(path, n.Value(), line)
}

// value checks the value node set at path.
func (w *walker) value(path keyPath, n *unstable.Node, line int) {
	t, ok := w.lookup(path, line, true)
	if !ok {
		return
	}
	switch n.Kind {
	case unstable.InlineTable:
		if !isSection(t) {
			w.mismatch(path, t, n.Kind, line)
			return
		}
		for it := n.Children(); it.Next(); {
			w.keyValue(path, it.Node())
		}
	case unstable.Array:
		if t.Kind() != reflect.Slice {
			w.mismatch(path, t, n.Kind, line)
			return
		}
		i := 0
		for it := n.Children(); it.Next(); {
			i++
			elem := slices.Clone(path)
			elem[len(elem)-1].index = i
			w.idx[elem.String()] = line
			w.value(elem, it.Node(), line)
		}
	default:
		w.scalar(path, t, n, line)
	}
}

// scalar checks a string, number, boolean or date set at path.
func (w *walker) scalar(path keyPath, t reflect.Type, n *unstable.Node, line int) {
	var want unstable.Kind
	switch {
	case isText(t):
		want = unstable.String
	case isSection(t), t.Kind() == reflect.Slice:
		want = unstable.Table
	case t.Kind() == reflect.String:
		want = unstable.String
	case t.Kind() >= reflect.Int && t.Kind() <= reflect.Int64:
		want = unstable.Integer
	case t.Kind() == reflect.Bool:
		want = unstable.Bool
	default:
		return // left to the decoder
	}
	if n.Kind != want {
		w.mismatch(path, t, n.Kind, line)
		return
	}
	if isText(t) {
		u := reflect.New(t).Interface().(encoding.TextUnmarshaler)
		if err := u.UnmarshalText(n.Data); err != nil {
			// Only non-secret types unmarshal text; their errors may quote the value.
			w.add(invalid(path.String(), "", err.Error()), line)
		}
	}
}

// lookup returns the Go type of path, or reports why path cannot be set and
// returns false. isKey says whether the last segment is a key rather than a
// table header, for the wording of "unknown key".
func (w *walker) lookup(path keyPath, line int, isKey bool) (reflect.Type, bool) {
	t := w.root
	for i, seg := range path {
		if !isSection(t) {
			w.mismatch(path[:i], t, unstable.Table, line)
			return nil, false
		}
		f, ok := fieldByKey(t, seg.name)
		if !ok {
			noun := "table"
			if isKey && i == len(path)-1 {
				noun = "key"
			}
			w.unknown(path[:i+1], t, noun, line)
			return nil, false
		}
		t = f.Type
		if seg.index > 0 {
			if t.Kind() != reflect.Slice {
				bad := slices.Clone(path[:i+1])
				bad[i].index = 0
				w.mismatch(bad, t, unstable.ArrayTable, line)
				return nil, false
			}
			t = t.Elem()
		}
	}
	return t, true
}

// unknown reports the first use of a key the config struct does not have.
// Keys below it are not reported again.
func (w *walker) unknown(path keyPath, parent reflect.Type, noun string, line int) {
	key := path.String()
	if w.reported[key] {
		return
	}
	w.reported[key] = true
	msg := fmt.Sprintf("unknown %s %q", noun, key)
	if s := suggest(parent, path[len(path)-1].name); s != "" {
		msg += fmt.Sprintf(" (did you mean %q?)", s)
	}
	w.add(sentence(key, ErrUnknownKey, msg), line)
}

// mismatch reports a value of the wrong TOML type at path, whose Go type
// is t. The message never quotes the value.
func (w *walker) mismatch(path keyPath, t reflect.Type, got unstable.Kind, line int) {
	key := path.String()
	if w.reported[key] {
		return
	}
	w.reported[key] = true
	w.add(invalid(key, "", fmt.Sprintf("want %s, got %s", describeType(t), describeKind(got))), line)
}

func (w *walker) add(e *Error, line int) {
	e.File, e.Line = w.file, line
	w.errs = append(w.errs, e)
}

// keyOf returns the parts of the key of a key-value or table node, and the
// line it starts on.
func (w *walker) keyOf(n *unstable.Node) ([]string, int) {
	var names []string
	line := 0
	for it := n.Key(); it.Next(); {
		k := it.Node()
		if line == 0 {
			line = w.p.Shape(k.Raw).Start.Line
		}
		names = append(names, string(k.Data))
	}
	return names, line
}

// position returns the line and column of b, a subslice of the document,
// or zeros when b is not one.
func (w *walker) position(b []byte) (line, col int) {
	off := cap(w.data) - cap(b)
	if b == nil || off < 0 || off > len(w.data) {
		return 0, 0
	}
	before := w.data[:off]
	line = 1 + bytes.Count(before, []byte("\n"))
	col = off - (bytes.LastIndexByte(before, '\n') + 1) + 1
	return line, col
}

// translate turns an error from go-toml's decoder into *Error values. It is
// reached only for problems the walk does not catch.
func (w *walker) translate(err error) error {
	var strict *toml.StrictMissingError
	var de *toml.DecodeError
	switch {
	case errors.As(err, &strict):
		errs := make([]*Error, 0, len(strict.Errors))
		for _, e := range strict.Errors {
			line, _ := e.Position()
			key := strings.Join(e.Key(), ".")
			errs = append(errs, &Error{File: w.file, Line: line, Key: key, Err: ErrUnknownKey,
				msg: fmt.Sprintf("unknown key %q", key)})
		}
		return joinErrors(errs)
	case errors.As(err, &de):
		line, col := de.Position()
		return &Error{File: w.file, Line: line, Column: col, Key: strings.Join(de.Key(), "."),
			Err: ErrSyntax, msg: "invalid TOML: " + strings.TrimPrefix(de.Error(), "toml: ")}
	default:
		return &Error{File: w.file, Err: ErrInvalid, msg: err.Error()}
	}
}

var textUnmarshalerType = reflect.TypeFor[encoding.TextUnmarshaler]()

// isText reports whether t decodes itself from a string (Duration).
func isText(t reflect.Type) bool { return reflect.PointerTo(t).Implements(textUnmarshalerType) }

// isSection reports whether t is decoded from a TOML table.
func isSection(t reflect.Type) bool { return t.Kind() == reflect.Struct && !isText(t) }

// keyName returns the TOML key of a struct field, or "" when the field is
// not part of the file (unexported, untagged or tagged "-").
func keyName(f reflect.StructField) string {
	name, _, _ := strings.Cut(f.Tag.Get("toml"), ",")
	if !f.IsExported() || name == "-" {
		return ""
	}
	return name
}

// fieldByKey finds the field of struct t whose TOML key is exactly name.
func fieldByKey(t reflect.Type, name string) (reflect.StructField, bool) {
	for i := 0; i < t.NumField(); i++ {
		if f := t.Field(i); keyName(f) == name && name != "" {
			return f, true
		}
	}
	return reflect.StructField{}, false
}

// suggest returns the key of struct t closest to name, if one is close
// enough to be a likely typo.
func suggest(t reflect.Type, name string) string {
	best, bestDist := "", 3
	for i := 0; i < t.NumField(); i++ {
		key := keyName(t.Field(i))
		if key == "" {
			continue
		}
		d := editDistance(strings.ToLower(name), key)
		if d < bestDist {
			best, bestDist = key, d
		}
	}
	return best
}

// editDistance is the Levenshtein distance between a and b.
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

func describeType(t reflect.Type) string {
	switch {
	case isText(t):
		return `a duration string like "10s"`
	case isSection(t):
		return "a table"
	case t.Kind() == reflect.Slice && isSection(t.Elem()):
		return "a list of tables"
	case t.Kind() == reflect.String:
		return "a string"
	case t.Kind() >= reflect.Int && t.Kind() <= reflect.Int64:
		return "an integer"
	case t.Kind() == reflect.Bool:
		return "true or false"
	}
	return t.String()
}

func describeKind(k unstable.Kind) string {
	switch k {
	case unstable.String:
		return "a string"
	case unstable.Integer:
		return "an integer"
	case unstable.Float:
		return "a number with a fraction"
	case unstable.Bool:
		return "a boolean"
	case unstable.Array:
		return "an array"
	case unstable.Table, unstable.InlineTable:
		return "a table"
	case unstable.ArrayTable:
		return "an array of tables"
	case unstable.LocalDate, unstable.LocalTime, unstable.LocalDateTime, unstable.DateTime:
		return "a date or time"
	}
	return k.String()
}

package admin

// These tests keep docs/API.md honest: every endpoint Handler serves has a
// section there and every section is served, every JSON field of the API's
// types is in its table, and every JSON example decodes strictly into the
// type it is shown for.

import (
	"bytes"
	"encoding/json"
	"os"
	"reflect"
	"slices"
	"strings"
	"testing"
)

const apiDocPath = "../../docs/API.md"

func readAPIDoc(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile(apiDocPath)
	if err != nil {
		t.Fatalf("the admin API must be documented: %v", err)
	}
	return string(b)
}

// docHeadings returns the doc's headings of the given level ("###"),
// without the hashes, outside code blocks.
func docHeadings(doc, level string) []string {
	var out []string
	fenced := false
	for line := range strings.SplitSeq(doc, "\n") {
		if strings.HasPrefix(strings.TrimSpace(line), "```") {
			fenced = !fenced
		}
		if !fenced && strings.HasPrefix(line, level+" ") {
			out = append(out, strings.TrimSpace(strings.TrimPrefix(line, level)))
		}
	}
	return out
}

// endpointHeading is how the doc heads the section of a ServeMux pattern:
// "GET /{$}" is "### `GET /`".
func endpointHeading(pattern string) string {
	return "`" + strings.TrimSuffix(pattern, "{$}") + "`"
}

func TestAPIDocEndpoints(t *testing.T) {
	doc := readAPIDoc(t)
	headings := docHeadings(doc, "###")
	_, patterns := newHandler(&fakeAPI{}, "t", nil)
	if len(patterns) == 0 {
		t.Fatal("newHandler reports no patterns")
	}
	served := map[string]bool{}
	for _, p := range patterns {
		h := endpointHeading(p)
		served[h] = true
		if !slices.Contains(headings, h) {
			t.Errorf("%s has no section for the endpoint %s: add a heading ### %s with its method, path, request and response", apiDocPath, p, h)
		}
	}
	for _, h := range headings {
		if strings.HasPrefix(h, "`") && !served[h] {
			t.Errorf("%s documents ### %s, which Handler does not serve", apiDocPath, h)
		}
	}
	// The summary table lists the API's endpoints too.
	for _, p := range patterns {
		if strings.Contains(p, " /api/") {
			if !strings.Contains(doc, "| "+endpointHeading(p)+" |") {
				t.Errorf("the table under ## Endpoints has no row | %s | ... |", endpointHeading(p))
			}
		}
	}
}

// docTypes are the types the doc describes, by the name it gives them.
var docTypes = map[string]any{
	"Status":           Status{},
	"Agent":            Agent{},
	"Route":            Route{},
	"Session":          Session{},
	"Throughput":       Throughput{},
	"ThroughputSample": ThroughputSample{},
	"RouteBytes":       RouteBytes{},
	"AddAgentRequest":  AddAgentRequest{},
	"AddRouteRequest":  AddRouteRequest{},

	"EnrollTokenRequest": EnrollTokenRequest{},
	"EnrollToken":        EnrollToken{},
	"RotateKeyResult":    RotateKeyResult{},
}

// docSection returns the text under "### name" up to the next heading.
func docSection(t *testing.T, doc, heading string) string {
	t.Helper()
	_, rest, ok := strings.Cut(doc, "\n"+heading+"\n")
	if !ok {
		t.Fatalf("%s has no section %q", apiDocPath, heading)
	}
	if i := strings.Index(rest, "\n#"); i >= 0 {
		rest = rest[:i]
	}
	return rest
}

func TestAPIDocTypes(t *testing.T) {
	doc := readAPIDoc(t)
	for name, v := range docTypes {
		sec := docSection(t, doc, "### "+name)
		typ := reflect.TypeOf(v)
		var fields []string
		for i := range typ.NumField() {
			tag, _, _ := strings.Cut(typ.Field(i).Tag.Get("json"), ",")
			if tag == "" || tag == "-" {
				t.Fatalf("%s.%s has no JSON name", name, typ.Field(i).Name)
			}
			fields = append(fields, tag)
			if !strings.Contains(sec, "\n| `"+tag+"` |") {
				t.Errorf("### %s in %s has no row | `%s` | type | meaning |", name, apiDocPath, tag)
			}
		}
		for line := range strings.SplitSeq(sec, "\n") {
			if f, ok := strings.CutPrefix(line, "| `"); ok {
				f, _, _ = strings.Cut(f, "`")
				if !slices.Contains(fields, f) {
					t.Errorf("### %s in %s documents a field %q that %s does not have", name, apiDocPath, f, name)
				}
			}
		}
	}
}

// exampleTypes are the types a JSON example may be marked with, by its
// "<!-- type: NAME -->" line.
func exampleType(name string) (any, bool) {
	if name == "error" {
		return &errorBody{}, true
	}
	elem, isSlice := strings.CutPrefix(name, "[]")
	v, ok := docTypes[elem]
	if !ok {
		return nil, false
	}
	typ := reflect.TypeOf(v)
	if isSlice {
		typ = reflect.SliceOf(typ)
	}
	return reflect.New(typ).Interface(), true
}

func TestAPIDocExamples(t *testing.T) {
	doc := readAPIDoc(t)
	lines := strings.Split(doc, "\n")
	n := 0
	for i := 0; i < len(lines); i++ {
		if strings.TrimSpace(lines[i]) != "```json" {
			continue
		}
		start := i
		var body strings.Builder
		for i++; i < len(lines) && strings.TrimSpace(lines[i]) != "```"; i++ {
			body.WriteString(lines[i])
			body.WriteByte('\n')
		}
		n++
		marker := ""
		if start > 0 {
			marker = strings.TrimSpace(lines[start-1])
		}
		name, ok := strings.CutPrefix(marker, "<!-- type: ")
		name, ok2 := strings.CutSuffix(name, " -->")
		if !ok || !ok2 {
			t.Errorf("%s:%d: a ```json block needs a line <!-- type: NAME --> just before it, naming what it shows", apiDocPath, start+1)
			continue
		}
		v, ok := exampleType(name)
		if !ok {
			t.Errorf("%s:%d: unknown example type %q", apiDocPath, start, name)
			continue
		}
		dec := json.NewDecoder(bytes.NewReader([]byte(body.String())))
		dec.DisallowUnknownFields()
		if err := dec.Decode(v); err != nil {
			t.Errorf("%s:%d: the %s example does not decode: %v", apiDocPath, start+2, name, err)
		}
	}
	if n == 0 {
		t.Fatalf("%s has no JSON examples", apiDocPath)
	}
}

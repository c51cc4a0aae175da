package cli

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"sort"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/jmespath-community/go-jmespath"
	"gopkg.in/yaml.v3"
)

// This file holds the output formats other than the commands' own tables:
// -o json|yaml|tsv and --query, as az has them. A command prints JSON (its
// -o json output); render turns that JSON into the format asked for, after
// applying the JMESPath query, so every command that has a JSON output
// has them all.
//
// --query uses github.com/jmespath-community/go-jmespath: it passes the
// JMESPath compliance suite, is maintained (the original
// github.com/jmespath/go-jmespath has had no release since 2020), and
// accepts every expression az's Python jmespath does.

// outputFormats lists the values -o takes.
var outputFormats = []string{OutputTable, OutputJSON, OutputYAML, OutputTSV}

// checkOutput validates -o and --query before a command runs, so that a
// bad value changes nothing.
func checkOutput(format, query string) error {
	ok := false
	for _, f := range outputFormats {
		ok = ok || f == format
	}
	if !ok {
		return fmt.Errorf("--output must be one of %s, not %q", strings.Join(outputFormats, ", "), format)
	}
	if query != "" {
		if _, err := jmespath.Compile(query); err != nil {
			return fmt.Errorf("--query %q is not a valid JMESPath expression: %w", query, err)
		}
	}
	return nil
}

// structured reports whether output in format with query must go through
// render: everything but a plain table or plain JSON.
func structured(format, query string) bool {
	return query != "" || (format != OutputTable && format != OutputJSON)
}

// render writes doc, one JSON value a command printed, to w in format
// (table, json, yaml or tsv) after applying query ("" for none). A doc that
// is not one JSON value (a command that prints text, such as logs) is
// written unchanged.
func render(w io.Writer, doc []byte, format, query string) error {
	if len(bytes.TrimSpace(doc)) == 0 {
		return nil
	}
	if !json.Valid(doc) {
		_, err := w.Write(doc)
		return err
	}
	if query != "" {
		var v any
		if err := json.Unmarshal(doc, &v); err != nil {
			return fmt.Errorf("read output: %w", err)
		}
		res, err := jmespath.Search(query, v)
		if err != nil {
			return fmt.Errorf("--query: %w", err)
		}
		if doc, err = json.MarshalIndent(res, "", "  "); err != nil {
			return fmt.Errorf("--query: %w", err)
		}
		doc = append(doc, '\n')
	}
	if format == OutputJSON {
		_, err := w.Write(doc)
		return err
	}
	// YAML is a superset of JSON: reading the JSON as a YAML node keeps
	// the order of its keys, which a Go map would lose.
	var n yaml.Node
	if err := yaml.Unmarshal(doc, &n); err != nil {
		return fmt.Errorf("read output: %w", err)
	}
	root := &n
	if n.Kind == yaml.DocumentNode && len(n.Content) == 1 {
		root = n.Content[0]
	}
	switch format {
	case OutputYAML:
		blockStyle(root)
		enc := yaml.NewEncoder(w)
		enc.SetIndent(2)
		if err := enc.Encode(root); err != nil {
			return fmt.Errorf("write yaml: %w", err)
		}
		return enc.Close()
	case OutputTSV:
		for _, row := range rows(root) {
			if _, err := fmt.Fprintln(w, strings.Join(row, "\t")); err != nil {
				return err
			}
		}
		return nil
	}
	return genericTable(w, root)
}

// blockStyle clears the flow and quoting styles a JSON document has, so
// that the YAML encoder writes block style and quotes only where needed.
func blockStyle(n *yaml.Node) {
	n.Style = 0
	for _, c := range n.Content {
		blockStyle(c)
	}
}

// scalar returns the text of a scalar node, escaped for a terminal; null
// is "".
func scalar(n *yaml.Node) string {
	if n.Tag == "!!null" {
		return ""
	}
	return escapeControl(n.Value)
}

// rows flattens a value into tab-separated rows as az's tsv does: a list
// gives a row per element; an object gives one row of its scalar values in
// key order, leaving out nested objects and lists; a scalar is a row of
// one value.
func rows(n *yaml.Node) [][]string {
	switch n.Kind {
	case yaml.SequenceNode:
		var out [][]string
		for _, c := range n.Content {
			out = append(out, row(c))
		}
		return out
	case yaml.MappingNode:
		return [][]string{row(n)}
	}
	return [][]string{{scalar(n)}}
}

// row is one element's cells: see rows.
func row(n *yaml.Node) []string {
	var cells []string
	switch n.Kind {
	case yaml.MappingNode:
		for i := 1; i < len(n.Content); i += 2 {
			if v := n.Content[i]; v.Kind == yaml.ScalarNode {
				cells = append(cells, scalar(v))
			}
		}
	case yaml.SequenceNode:
		for _, v := range n.Content {
			if v.Kind == yaml.ScalarNode {
				cells = append(cells, scalar(v))
			}
		}
	default:
		cells = append(cells, scalar(n))
	}
	return cells
}

// genericTable writes a query's result as a table: a list of objects gives
// a column per scalar key (in the order the keys first appear); anything
// else gives the rows of tsv under a "Result" header.
func genericTable(w io.Writer, n *yaml.Node) error {
	objs := n.Kind == yaml.SequenceNode && len(n.Content) > 0
	for _, c := range n.Content {
		objs = objs && c.Kind == yaml.MappingNode
	}
	if n.Kind == yaml.MappingNode {
		n, objs = &yaml.Node{Kind: yaml.SequenceNode, Content: []*yaml.Node{n}}, true
	}
	if !objs {
		t := newTable(w, "Result")
		for _, r := range rows(n) {
			t.row(strings.Join(r, "  "))
		}
		return t.flush()
	}
	var keys []string
	seen := map[string]bool{}
	for _, c := range n.Content {
		for i := 0; i+1 < len(c.Content); i += 2 {
			k := c.Content[i].Value
			if c.Content[i+1].Kind == yaml.ScalarNode && !seen[k] {
				seen[k] = true
				keys = append(keys, k)
			}
		}
	}
	headers := make([]string, len(keys))
	for i, k := range keys {
		headers[i] = strings.ToUpper(k)
	}
	t := newTable(w, headers...)
	for _, c := range n.Content {
		vals := map[string]string{}
		for i := 0; i+1 < len(c.Content); i += 2 {
			if v := c.Content[i+1]; v.Kind == yaml.ScalarNode {
				vals[c.Content[i].Value] = scalar(v)
			}
		}
		cells := make([]any, len(keys))
		for i, k := range keys {
			cells[i] = orDash(vals[k])
		}
		t.row(cells...)
	}
	return t.flush()
}

// EscapeControl is escapeControl, for the commands outside this package
// that print values read from the store (such as kumo admin leader).
func EscapeControl(s string) string { return escapeControl(s) }

// escapeControl makes s safe to print in a table, a tsv row or a one-line
// message: control characters (C0, DEL, C1, including tab, newline and
// ESC) and invalid UTF-8 are written as Go escapes such as \n, \t and \x1b,
// and a backslash that would make the result ambiguous stays as is. Text
// without control characters is returned unchanged. It is the one place
// CLI output escapes user-supplied names, descriptions and tags.
func escapeControl(s string) string {
	clean := true
	for i, r := range s {
		if unsafeRune(r) || (r == utf8.RuneError && !validAt(s, i)) {
			clean = false
			break
		}
	}
	if clean {
		return s
	}
	var b strings.Builder
	for i, r := range s {
		switch {
		case r == utf8.RuneError && !validAt(s, i):
			fmt.Fprintf(&b, `\x%02x`, s[i])
		case unsafeRune(r):
			q := strconv.QuoteRune(r) // such as '\x1b' or '\n'
			b.WriteString(q[1 : len(q)-1])
		default:
			b.WriteRune(r)
		}
	}
	return b.String()
}

// escapeText is escapeControl for a message of several lines: it keeps
// line breaks and tabs and escapes every other control character.
func escapeText(s string) string {
	lines := strings.Split(s, "\n")
	for i, l := range lines {
		cells := strings.Split(l, "\t")
		for j, c := range cells {
			cells[j] = escapeControl(c)
		}
		lines[i] = strings.Join(cells, "\t")
	}
	return strings.Join(lines, "\n")
}

// unsafeRune reports whether r would move the cursor or start a terminal
// escape sequence: C0 and C1 controls, DEL, and the Unicode line and
// paragraph separators and bidirectional overrides.
func unsafeRune(r rune) bool {
	switch {
	case unicode.IsControl(r):
		return true
	case r == '\u2028' || r == '\u2029':
		return true
	case r >= '\u202a' && r <= '\u202e', r >= '\u2066' && r <= '\u2069':
		return true
	}
	return false
}

// validAt reports whether s holds a real U+FFFD at byte i, not an
// invalid byte.
func validAt(s string, i int) bool {
	r, size := utf8.DecodeRuneInString(s[i:])
	return r == utf8.RuneError && size == 3
}

// sortedKeys returns m's keys in order.
func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// money formats a USD amount: "$0.15", or "$0.0292" below a cent's
// precision (hourly prices).
func money(usd float64) string {
	if usd == math.Round(usd*100)/100 {
		return fmt.Sprintf("$%.2f", usd)
	}
	return "$" + strconv.FormatFloat(usd, 'f', -1, 64)
}

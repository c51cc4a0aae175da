package cli

import (
	"bytes"
	"testing"
)

func TestEscapeControl(t *testing.T) {
	tests := []struct{ in, want string }{
		{"cpu-cluster", "cpu-cluster"},
		{"日本語 ok", "日本語 ok"},
		{"a\x1b[31mred", `a\x1b[31mred`},
		{"two\nlines", `two\nlines`},
		{"tab\there", `tab\there`},
		{"cr\rx", `cr\rx`},
		{"del\x7f", `del\x7f`},
		{"c1\u009b2J", `c1\u009b2J`},
		{"bidi\u202eevil", `bidi\u202eevil`},
		{"bad\xffbyte", `bad\xffbyte`},
		{"real \ufffd", "real \ufffd"},
	}
	for _, tt := range tests {
		if got := escapeControl(tt.in); got != tt.want {
			t.Errorf("escapeControl(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
	if got, want := escapeText("line one\n\tline \x1b two"), "line one\n\tline \\x1b two"; got != want {
		t.Errorf("escapeText = %q, want %q", got, want)
	}
}

func TestTableEscapesCells(t *testing.T) {
	var b bytes.Buffer
	tb := newTable(&b, "NAME", "NOTE")
	tb.row("evil\x1b]0;title\x07", "a\nb")
	if err := tb.flush(); err != nil {
		t.Fatal(err)
	}
	want := "NAME                NOTE\nevil\\x1b]0;title\\a  a\\nb\n"
	if got := b.String(); got != want {
		t.Errorf("table:\n%q\nwant:\n%q", got, want)
	}
}

const doc = `[
  {"name": "b", "properties": {"state": "Succeeded", "max": 4}, "tags": {"x": "1"}, "note": null},
  {"name": "a\u001b[2J", "properties": {"state": "Creating", "max": 1000000}, "tags": {}, "note": "hi"}
]
`

func TestRender(t *testing.T) {
	tests := []struct {
		name, format, query, want string
	}{
		{"json as is", OutputJSON, "", doc},
		{"json query", OutputJSON, "[].name", "[\n  \"b\",\n  \"a\\u001b[2J\"\n]\n"},
		{"yaml", OutputYAML, "", "- name: b\n  properties:\n    state: Succeeded\n    max: 4\n  tags:\n    x: \"1\"\n  note: null\n" +
			"- name: \"a\\e[2J\"\n  properties:\n    state: Creating\n    max: 1000000\n  tags: {}\n  note: hi\n"},
		{"yaml query number", OutputYAML, "[1].properties.max", "1000000\n"},
		{"tsv objects skip nested", OutputTSV, "", "b\t\na\\x1b[2J\thi\n"},
		{"tsv query lists", OutputTSV, "[].[name, properties.state, properties.max]", "b\tSucceeded\t4\na\\x1b[2J\tCreating\t1000000\n"},
		{"tsv scalar", OutputTSV, "[0].properties.state", "Succeeded\n"},
		{"table query objects", OutputTable, "[].{Name:name, State:properties.state}", "NAME      STATE\nb         Succeeded\na\\x1b[2J  Creating\n"},
		{"table query scalars", OutputTable, "[].name", "Result\nb\na\\x1b[2J\n"},
		{"empty query result", OutputTSV, "[?name=='zz']", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := checkOutput(tt.format, tt.query); err != nil {
				t.Fatal(err)
			}
			var b bytes.Buffer
			if err := render(&b, []byte(doc), tt.format, tt.query); err != nil {
				t.Fatal(err)
			}
			if got := b.String(); got != tt.want {
				t.Errorf("got:\n%q\nwant:\n%q", got, tt.want)
			}
		})
	}
}

func TestRenderPassesTextThrough(t *testing.T) {
	var b bytes.Buffer
	if err := render(&b, []byte("hello from a job\n"), OutputYAML, ""); err != nil {
		t.Fatal(err)
	}
	if b.String() != "hello from a job\n" {
		t.Errorf("got %q", b.String())
	}
}

func TestCheckOutput(t *testing.T) {
	for _, tt := range []struct {
		format, query string
		ok            bool
	}{
		{OutputTable, "", true},
		{OutputTSV, "[].name", true},
		{"xml", "", false},
		{OutputJSON, "[?", false},
	} {
		if err := checkOutput(tt.format, tt.query); (err == nil) != tt.ok {
			t.Errorf("checkOutput(%q, %q) = %v, want ok %v", tt.format, tt.query, err, tt.ok)
		}
	}
}

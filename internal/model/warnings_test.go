package model

import (
	"fmt"
	"slices"
	"testing"
)

func TestAddWarnings(t *testing.T) {
	many := make([]string, MaxWarnings+5)
	for i := range many {
		many[i] = fmt.Sprint("w", i)
	}
	tests := []struct {
		name        string
		have, add   []string
		want        []string
		wantChanged bool
	}{
		{"to none", nil, []string{"a", "b"}, []string{"a", "b"}, true},
		{"repeated", []string{"a"}, []string{"a"}, []string{"a"}, false},
		{"some new", []string{"a"}, []string{"a", "b"}, []string{"a", "b"}, true},
		{"nothing", []string{"a"}, nil, []string{"a"}, false},
		{"bounded", nil, many, many[:MaxWarnings], true},
		{"full", many[:MaxWarnings], []string{"x"}, many[:MaxWarnings], false},
	}
	for _, tt := range tests {
		j := Job{Warnings: slices.Clone(tt.have)}
		changed := j.AddWarnings(tt.add...)
		if changed != tt.wantChanged || !slices.Equal(j.Warnings, tt.want) {
			t.Errorf("%s: AddWarnings = %v, warnings %q; want %v, %q", tt.name, changed, j.Warnings, tt.wantChanged, tt.want)
		}
	}
}

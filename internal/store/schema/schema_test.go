package schema

import (
	"strings"
	"testing"
	"testing/fstest"
)

func TestLoad(t *testing.T) {
	file := func(s string) *fstest.MapFile { return &fstest.MapFile{Data: []byte(s)} }
	tests := []struct {
		name    string
		files   fstest.MapFS
		want    []int  // versions, in order
		wantErr string // part of the error, "" for none
	}{
		{"in version order, not name order", fstest.MapFS{
			"migrations/10_b.sql": file("B"), "migrations/0002_a.sql": file("A"), "migrations/notes.txt": file("x"),
		}, []int{2, 10}, ""},
		{"no number", fstest.MapFS{"migrations/init.sql": file("")}, nil, "positive number"},
		{"zero", fstest.MapFS{"migrations/0000_x.sql": file("")}, nil, "positive number"},
		{"same version twice", fstest.MapFS{
			"migrations/0001_a.sql": file(""), "migrations/1_b.sql": file(""),
		}, nil, "share version 1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ms, err := Load(tt.files)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("Load = %v, want an error containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var got []int
			for _, m := range ms {
				got = append(got, m.Version)
			}
			if !slicesEqual(got, tt.want) {
				t.Fatalf("versions %v, want %v", got, tt.want)
			}
			if ms[0].SQL != "A" || ms[0].Name != "0002_a.sql" {
				t.Errorf("first migration %+v, want 0002_a.sql with its text", ms[0])
			}
		})
	}
}

func slicesEqual(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

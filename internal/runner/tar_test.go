package runner

import (
	"archive/tar"
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"
)

type entry struct {
	name, body, link string
	typ              byte // 0 means regular file
	mode             int64
}

func tarOf(t testing.TB, entries ...entry) io.Reader {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		h := &tar.Header{Name: e.name, Linkname: e.link, Typeflag: e.typ, Mode: e.mode, Size: int64(len(e.body))}
		if h.Typeflag == 0 {
			h.Typeflag = tar.TypeReg
		}
		if h.Mode == 0 {
			h.Mode = 0o644
		}
		if h.Typeflag != tar.TypeReg {
			h.Size = 0
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if h.Size > 0 {
			tw.Write([]byte(e.body))
		}
	}
	tw.Close()
	return &buf
}

func TestExtractTar(t *testing.T) {
	tests := []struct {
		name    string
		entries []entry
		unsafe  bool
		want    map[string]string // file → content, read through the job dir
	}{
		{
			name: "files, dirs, links",
			entries: []entry{
				{name: "src/", typ: tar.TypeDir, mode: 0o755},
				{name: "src/train.py", body: "print(1)\n"},
				{name: "./deep/er/f.txt", body: "f"},
				{name: "src/link.py", typ: tar.TypeSymlink, link: "train.py"},
				{name: "src/up", typ: tar.TypeSymlink, link: "../deep"},
				{name: "run.sh", body: "#!/bin/sh\n", mode: 0o4755},
			},
			want: map[string]string{"src/train.py": "print(1)\n", "deep/er/f.txt": "f", "src/link.py": "print(1)\n", "src/up/er/f.txt": "f"},
		},
		{name: "absolute path", entries: []entry{{name: "/tmp/evil", body: "x"}}, unsafe: true},
		{name: "dot-dot", entries: []entry{{name: "../evil", body: "x"}}, unsafe: true},
		{name: "dot-dot inside", entries: []entry{{name: "a/../../evil", body: "x"}}, unsafe: true},
		{name: "symlink absolute", entries: []entry{{name: "l", typ: tar.TypeSymlink, link: "/etc"}}, unsafe: true},
		{name: "symlink outside", entries: []entry{{name: "a/l", typ: tar.TypeSymlink, link: "../../x"}}, unsafe: true},
		{name: "hard link outside", entries: []entry{{name: "h", typ: tar.TypeLink, link: "../evil"}}, unsafe: true},
		{name: "hard link inside", entries: []entry{{name: "a", body: "x"}, {name: "h", typ: tar.TypeLink, link: "a"}}, unsafe: true},
		{name: "device", entries: []entry{{name: "dev", typ: tar.TypeChar}}, unsafe: true},
		{
			name: "write through symlink to outside",
			entries: []entry{
				{name: "l", typ: tar.TypeSymlink, link: "."},
				{name: "l/ok", body: "ok"},
				{name: "d/", typ: tar.TypeDir},
				{name: "d/b", typ: tar.TypeSymlink, link: ".."},
				{name: "a", typ: tar.TypeSymlink, link: "d/b/.."}, // looks inside, resolves to the parent
				{name: "a/evil", body: "x"},
			},
			unsafe: true, // nothing is written through a link, and nothing stays
			want:   map[string]string{},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			parent := t.TempDir()
			dir := filepath.Join(parent, "job")
			os.Mkdir(dir, 0o755)
			err := ExtractTar(dir, tarOf(t, tt.entries...))
			if tt.unsafe && !errors.Is(err, ErrUnsafeEntry) {
				t.Errorf("err = %v, want ErrUnsafeEntry", err)
			}
			if !tt.unsafe && err != nil {
				t.Errorf("err = %v", err)
			}
			if ents, _ := os.ReadDir(dir); tt.unsafe && len(ents) != 0 {
				t.Errorf("a refused snapshot left %d entries", len(ents))
			}
			if _, err := os.Lstat(filepath.Join(parent, "evil")); err == nil {
				t.Error("a file escaped the directory")
			}
			for name, want := range tt.want {
				b, err := os.ReadFile(filepath.Join(dir, name))
				if err != nil || string(b) != want {
					t.Errorf("%s = %q, %v; want %q", name, b, err, want)
				}
			}
			if fi, err := os.Stat(filepath.Join(dir, "run.sh")); err == nil && fi.Mode()&os.ModeSetuid != 0 {
				t.Error("set-user-ID bit kept")
			}
		})
	}
}

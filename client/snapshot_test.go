package client

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"kumo/api"
)

func TestIgnoreRules(t *testing.T) {
	tests := []struct {
		rules string
		name  string
		isDir bool
		want  bool
	}{
		{"*.log", "a.log", false, true},
		{"*.log", "deep/er/a.log", false, true},
		{"*.log", "a.logs", false, false},
		{"# comment\n\n*.log", "a.log", false, true},
		{"#a.txt", "#a.txt", false, false},
		{`\#a.txt`, "#a.txt", false, true},
		{"data/", "data", true, true},
		{"data/", "data", false, false},
		{"data/", "sub/data", true, true},
		{"/data", "data", true, true},
		{"/data", "sub/data", true, false},
		{"sub/data", "sub/data", false, true},
		{"sub/data", "x/sub/data", false, false},
		{"**/data", "x/y/data", true, true},
		{"**/data", "data", true, true},
		{"logs/**", "logs/a/b.txt", false, true},
		{"logs/**", "logs", true, false},
		{"a/**/b", "a/b", false, true},
		{"a/**/b", "a/x/y/b", false, true},
		{"a/**/b", "a/x/y/c", false, false},
		{"*.txt\n!keep.txt", "keep.txt", false, false},
		{"*.txt\n!keep.txt", "drop.txt", false, true},
		{"!keep.txt\n*.txt", "keep.txt", false, true},
		{"file?.py", "file1.py", false, true},
		{"file?.py", "file10.py", false, false},
		{"[abc].py", "b.py", false, true},
		{"[!abc].py", "b.py", false, false},
		{"[!abc].py", "d.py", false, true},
		{"trailing.txt   ", "trailing.txt", false, true},
		{"crlf.txt\r\n", "crlf.txt", false, true},
		{"*", "anything/at/all", false, true},
		{"[", "[", false, false}, // a bad pattern matches nothing
		{"/", "x", false, false},
	}
	for _, tt := range tests {
		if got := parseIgnore(tt.rules).ignored(tt.name, tt.isDir); got != tt.want {
			t.Errorf("rules %q: ignored(%q, dir=%v) = %v, want %v", tt.rules, tt.name, tt.isDir, got, tt.want)
		}
	}
}

// snapshotFiles uploads dir to a fake server and returns the tar's files.
func snapshotFiles(t *testing.T, dir string) map[string]string {
	t.Helper()
	f := newFakeARM(t)
	var got map[string]string
	f.mux.HandleFunc("POST "+testWS+"/snapshots", func(w http.ResponseWriter, r *http.Request) {
		got, _ = readTar(t, r.Body)
		writeJSON(w, http.StatusCreated, api.Snapshot{ID: "snap-1", SizeBytes: 42, FileCount: len(got)})
	})
	if _, err := f.workspace().UploadSnapshot(context.Background(), dir); err != nil {
		t.Fatalf("UploadSnapshot: %v", err)
	}
	return got
}

// TestUploadSnapshotLeavesOutKumoFiles: the README's layout, code next to
// .kumo/, does not send the CLI's token, nor kumo's data, nor git's.
func TestUploadSnapshotLeavesOutKumoFiles(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "train.py"), "print(1)\n", 0o644)
	writeFile(t, filepath.Join(dir, ".kumo", "config.json"), `{"token":"SECRET"}`, 0o600)
	writeFile(t, filepath.Join(dir, "sub", ".kumo", "config.json"), `{"token":"SECRET"}`, 0o600)
	writeFile(t, filepath.Join(dir, ".kumo-data", "kumo.db"), "db", 0o600)
	writeFile(t, filepath.Join(dir, ".git", "config"), "[core]", 0o644)
	if err := os.Symlink(".kumo/config.json", filepath.Join(dir, "token-link")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("../.git/config", filepath.Join(dir, "sub", "git-link")); err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"train.py": "print(1)\n", "sub/": "<dir>"}
	if diff := cmp.Diff(want, snapshotFiles(t, dir)); diff != "" {
		t.Errorf("snapshot (-want +got):\n%s", diff)
	}
}

func TestUploadSnapshotHonoursIgnoreFiles(t *testing.T) {
	tree := func(t *testing.T, ignoreFiles map[string]string) string {
		dir := t.TempDir()
		for name, content := range map[string]string{
			"train.py": "p", "data/big.bin": "d", "logs/run.log": "l", "keep.log": "k", "sub/cache/x": "c",
		} {
			writeFile(t, filepath.Join(dir, name), content, 0o644)
		}
		for name, content := range ignoreFiles {
			writeFile(t, filepath.Join(dir, name), content, 0o644)
		}
		return dir
	}
	tests := []struct {
		name  string
		files map[string]string
		want  []string
	}{
		{"no ignore file", nil,
			[]string{"data/", "data/big.bin", "keep.log", "logs/", "logs/run.log", "sub/", "sub/cache/", "sub/cache/x", "train.py"}},
		{".gitignore", map[string]string{".gitignore": "/data/\n*.log\n!keep.log\ncache/\n"},
			[]string{".gitignore", "keep.log", "logs/", "sub/", "train.py"}},
		{".amlignore wins over .gitignore", map[string]string{".amlignore": "data\n", ".gitignore": "*.py\n"},
			[]string{".amlignore", ".gitignore", "keep.log", "logs/", "logs/run.log", "sub/", "sub/cache/", "sub/cache/x", "train.py"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got []string
			for name := range snapshotFiles(t, tree(t, tt.files)) {
				got = append(got, name)
			}
			if diff := cmp.Diff(tt.want, got, cmpopts.SortSlices(func(a, b string) bool { return a < b })); diff != "" {
				t.Errorf("snapshot (-want +got):\n%s", diff)
			}
		})
	}
}

func TestUploadSnapshotRefusesManyFiles(t *testing.T) {
	dir := t.TempDir()
	for i := range MaxSnapshotEntries + 1 {
		if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("f%06d", i)), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	f := newFakeARM(t)
	_, err := f.workspace().UploadSnapshot(context.Background(), dir)
	if err == nil || !strings.Contains(err.Error(), "20000 files") {
		t.Errorf("UploadSnapshot of %d files: err = %v, want one naming the limit", MaxSnapshotEntries+1, err)
	}
	if reqs := f.requests(); len(reqs) != 0 {
		t.Errorf("requests = %v, want none", reqs)
	}
}

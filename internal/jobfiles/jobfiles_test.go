package jobfiles

import (
	"archive/tar"
	"bytes"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"kumo/internal/archive"
	"kumo/internal/runner"
)

func newFiles(t *testing.T) *Files {
	t.Helper()
	f, err := New(t.TempDir())
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return f
}

// readAll returns the whole of a job's stream.
func readAll(t *testing.T, f *Files, runID, stream string) string {
	t.Helper()
	var buf bytes.Buffer
	if _, err := f.ReadLog(runID, stream, 0, &buf); err != nil {
		t.Fatalf("ReadLog(%s, %s): %v", runID, stream, err)
	}
	return buf.String()
}

type chunk struct {
	stream  string
	offset  int64
	data    string
	wantErr bool
}

func TestAppend(t *testing.T) {
	tests := []struct {
		name       string
		chunks     []chunk
		wantStdout string
		wantStderr string
		wantStdLog string
	}{
		{
			name:       "in order",
			chunks:     []chunk{{Stdout, 0, "ab", false}, {Stderr, 0, "E", false}, {Stdout, 2, "cd", false}},
			wantStdout: "abcd", wantStderr: "E", wantStdLog: "abEcd",
		},
		{
			name:       "resent whole chunk",
			chunks:     []chunk{{Stdout, 0, "abc", false}, {Stdout, 0, "abc", false}},
			wantStdout: "abc", wantStdLog: "abc",
		},
		{
			name:       "resent overlapping chunk writes only the new bytes",
			chunks:     []chunk{{Stdout, 0, "abc", false}, {Stdout, 1, "bcdef", false}, {Stderr, 0, "X", false}},
			wantStdout: "abcdef", wantStderr: "X", wantStdLog: "abcdefX",
		},
		{
			name:       "gap is refused",
			chunks:     []chunk{{Stdout, 0, "ab", false}, {Stdout, 5, "zz", true}, {Stderr, 1, "E", true}},
			wantStdout: "ab", wantStdLog: "ab",
		},
		{
			name:   "not an output stream",
			chunks: []chunk{{StdLog, 0, "x", true}, {"other", 0, "x", true}},
		},
		{
			name:   "empty chunk",
			chunks: []chunk{{Stdout, 0, "", false}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFiles(t)
			for _, c := range tt.chunks {
				err := f.Append("run1", c.stream, c.offset, []byte(c.data))
				if gotErr := err != nil; gotErr != c.wantErr {
					t.Errorf("Append(%s, %d, %q) error = %v, want error: %v", c.stream, c.offset, c.data, err, c.wantErr)
				}
			}
			got := []string{readAll(t, f, "run1", Stdout), readAll(t, f, "run1", Stderr), readAll(t, f, "run1", StdLog)}
			want := []string{tt.wantStdout, tt.wantStderr, tt.wantStdLog}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("stdout, stderr, std_log (-want +got):\n%s", diff)
			}
			out, errOut, err := f.Offsets("run1")
			if err != nil {
				t.Fatalf("Offsets: %v", err)
			}
			if out != int64(len(tt.wantStdout)) || errOut != int64(len(tt.wantStderr)) {
				t.Errorf("Offsets = %d, %d; want %d, %d", out, errOut, len(tt.wantStdout), len(tt.wantStderr))
			}
		})
	}
}

func TestAppendInvalidRunID(t *testing.T) {
	f := newFiles(t)
	for _, id := range []string{"", "../x", "a/b", strings.Repeat("a", 129)} {
		if err := f.Append(id, Stdout, 0, []byte("x")); err == nil {
			t.Errorf("Append(%q) error = nil, want an error", id)
		}
	}
}

// Offsets survive a Close: a reopened job continues at the end of its files.
func TestOffsetsAfterClose(t *testing.T) {
	f := newFiles(t)
	if err := f.Append("run1", Stdout, 0, []byte("abc")); err != nil {
		t.Fatal(err)
	}
	if err := f.Append("run1", Stderr, 0, []byte("de")); err != nil {
		t.Fatal(err)
	}
	f.Close("run1")
	out, errOut, err := f.Offsets("run1")
	if err != nil || out != 3 || errOut != 2 {
		t.Errorf("Offsets after Close = %d, %d, %v; want 3, 2, nil", out, errOut, err)
	}
	if err := f.Append("run1", Stdout, 3, []byte("f")); err != nil {
		t.Fatal(err)
	}
	f.Close("run1")
	if got, want := readAll(t, f, "run1", StdLog), "abcdef"; got != want {
		t.Errorf("std_log = %q, want %q", got, want)
	}
}

func TestReadLog(t *testing.T) {
	f := newFiles(t)
	for _, c := range []chunk{{Stdout, 0, "hello ", false}, {Stderr, 0, "oops", false}, {Stdout, 6, "world", false}} {
		if err := f.Append("run1", c.stream, c.offset, []byte(c.data)); err != nil {
			t.Fatal(err)
		}
	}
	tests := []struct {
		runID, stream string
		offset        int64
		want          string
		wantOffset    int64
		wantErr       bool
	}{
		{runID: "run1", stream: Stdout, offset: 0, want: "hello world", wantOffset: 11},
		{runID: "run1", stream: Stdout, offset: 6, want: "world", wantOffset: 11},
		{runID: "run1", stream: Stdout, offset: 11, want: "", wantOffset: 11},
		{runID: "run1", stream: Stderr, offset: 2, want: "ps", wantOffset: 4},
		{runID: "run1", stream: StdLog, offset: 6, want: "oopsworld", wantOffset: 15},
		{runID: "nothing-yet", stream: Stdout, offset: 0, want: "", wantOffset: 0},
		{runID: "run1", stream: "bogus", offset: 3, wantOffset: 3, wantErr: true},
		{runID: "../run1", stream: Stdout, offset: 0, wantErr: true},
	}
	for _, tt := range tests {
		var buf bytes.Buffer
		got, err := f.ReadLog(tt.runID, tt.stream, tt.offset, &buf)
		if (err != nil) != tt.wantErr {
			t.Errorf("ReadLog(%s, %s, %d) error = %v, want error: %v", tt.runID, tt.stream, tt.offset, err, tt.wantErr)
		}
		if got != tt.wantOffset || buf.String() != tt.want {
			t.Errorf("ReadLog(%s, %s, %d) = %d, %q; want %d, %q", tt.runID, tt.stream, tt.offset, got, buf.String(), tt.wantOffset, tt.want)
		}
	}
}

func isClosed(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

func TestChanged(t *testing.T) {
	f := newFiles(t)
	ch := f.Changed("run1")
	if isClosed(ch) {
		t.Fatal("Changed is closed before anything happened")
	}
	if f.Changed("run1") != ch {
		t.Error("a second Changed before a change returned another channel")
	}
	other := f.Changed("run2")

	if err := f.Append("run1", Stdout, 0, []byte("x")); err != nil {
		t.Fatal(err)
	}
	if !isClosed(ch) {
		t.Error("Changed is not closed after Append")
	}
	if isClosed(other) {
		t.Error("another job's Changed was closed by Append")
	}

	ch = f.Changed("run1")
	if isClosed(ch) {
		t.Fatal("a fresh Changed is already closed")
	}
	if err := f.Append("run1", Stdout, 0, []byte("x")); err != nil {
		t.Fatal(err)
	}
	if isClosed(ch) {
		t.Error("Changed was closed by a resent chunk that added nothing")
	}
	f.Close("run1")
	if !isClosed(ch) {
		t.Error("Changed is not closed after Close")
	}
}

type entry struct {
	name     string
	typeflag byte
	body     string
	linkname string
}

func makeTar(t *testing.T, entries []entry) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		h := &tar.Header{Name: e.name, Typeflag: e.typeflag, Mode: 0o644, Size: int64(len(e.body)), Linkname: e.linkname}
		if e.typeflag != tar.TypeReg {
			h.Size = 0
		}
		if e.typeflag == tar.TypeDir {
			h.Mode = 0o755
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write([]byte(e.body)); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// listTar returns name → body (or "-> target" for a symlink) of a tar.
func listTar(t *testing.T, r io.Reader) map[string]string {
	t.Helper()
	got := map[string]string{}
	tr := tar.NewReader(r)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return got
		}
		if err != nil {
			t.Fatalf("read tar: %v", err)
		}
		switch h.Typeflag {
		case tar.TypeSymlink:
			got[h.Name] = "-> " + h.Linkname
		default:
			b, err := io.ReadAll(tr)
			if err != nil {
				t.Fatal(err)
			}
			got[h.Name] = string(b)
		}
	}
}

func TestSaveArtifactsRefusesEscape(t *testing.T) {
	tests := []struct {
		name    string
		entries []entry
	}{
		{"dot dot", []entry{{name: "outputs/../../escaped", typeflag: tar.TypeReg, body: "x"}}},
		{"absolute", []entry{{name: "/tmp/escaped", typeflag: tar.TypeReg, body: "x"}}},
		{"symlink out", []entry{{name: "outputs/l", typeflag: tar.TypeSymlink, linkname: "../../.."}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			root := t.TempDir()
			f, err := New(filepath.Join(root, "files"))
			if err != nil {
				t.Fatal(err)
			}
			err = f.SaveArtifacts("run1", bytes.NewReader(makeTar(t, tt.entries)), "")
			if !errors.Is(err, runner.ErrUnsafeEntry) {
				t.Errorf("SaveArtifacts error = %v, want ErrUnsafeEntry", err)
			}
			if _, err := os.Stat(filepath.Join(root, "escaped")); !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("an escaping entry was written: stat error = %v", err)
			}
		})
	}
}

func TestWriteArtifacts(t *testing.T) {
	f := newFiles(t)
	if err := f.Append("run1", Stdout, 0, []byte("out")); err != nil {
		t.Fatal(err)
	}
	f.Close("run1")
	art := makeTar(t, []entry{
		{name: "outputs/", typeflag: tar.TypeDir},
		{name: "outputs/model.bin", typeflag: tar.TypeReg, body: "weights"},
		{name: "outputs/sub/", typeflag: tar.TypeDir},
		{name: "outputs/sub/metrics.json", typeflag: tar.TypeReg, body: "{}"},
		{name: "outputs/latest", typeflag: tar.TypeSymlink, linkname: "model.bin"},
		{name: "logs/", typeflag: tar.TypeDir},
		{name: "logs/train.log", typeflag: tar.TypeReg, body: "step 1"},
		{name: "scratch/", typeflag: tar.TypeDir},
		{name: "scratch/tmp", typeflag: tar.TypeReg, body: "not an artifact"},
		{name: "top.txt", typeflag: tar.TypeReg, body: "not an artifact"},
	})
	if err := f.SaveArtifacts("run1", bytes.NewReader(art), ""); err != nil {
		t.Fatalf("SaveArtifacts: %v", err)
	}
	var buf bytes.Buffer
	if err := f.WriteArtifacts("run1", &buf); err != nil {
		t.Fatalf("WriteArtifacts: %v", err)
	}
	got := listTar(t, &buf)
	want := map[string]string{
		"outputs/":                 "",
		"outputs/model.bin":        "weights",
		"outputs/sub/":             "",
		"outputs/sub/metrics.json": "{}",
		"outputs/latest":           "-> model.bin",
		"logs/":                    "",
		"logs/train.log":           "step 1",
		"user_logs/":               "",
		"user_logs/stdout.txt":     "out",
		"user_logs/stderr.txt":     "",
		"user_logs/std_log.txt":    "out",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("WriteArtifacts tar (-want +got):\n%s", diff)
	}
}

func TestWriteArtifactsEmpty(t *testing.T) {
	f := newFiles(t)
	var buf bytes.Buffer
	if err := f.WriteArtifacts("never-ran", &buf); err != nil {
		t.Fatalf("WriteArtifacts: %v", err)
	}
	if got := listTar(t, &buf); len(got) != 0 {
		t.Errorf("WriteArtifacts of a job without files = %v, want an empty tar", got)
	}
}

// snapshotNames lists the files in the snapshots directory.
func snapshotNames(t *testing.T, f *Files) []string {
	t.Helper()
	entries, err := os.ReadDir(filepath.Join(f.root, "snapshots"))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	sort.Strings(names)
	return names
}

type zeros struct{}

func (zeros) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}

func TestSaveSnapshot(t *testing.T) {
	good := makeTar(t, []entry{{name: "train.py", typeflag: tar.TypeReg, body: "print(1)"}})
	tests := []struct {
		name    string
		id      string
		in      io.Reader
		wantN   int64
		wantErr error // nil: success; errAny: some error
	}{
		{name: "good", id: "snap-1", in: bytes.NewReader(good), wantN: int64(len(good))},
		{name: "dot dot", id: "snap-2", in: bytes.NewReader(makeTar(t, []entry{
			{name: "ok.txt", typeflag: tar.TypeReg, body: "x"},
			{name: "../x", typeflag: tar.TypeReg, body: "x"},
		})), wantErr: runner.ErrUnsafeEntry},
		{name: "absolute", id: "snap-3", in: bytes.NewReader(makeTar(t, []entry{{name: "/etc/x", typeflag: tar.TypeReg, body: "x"}})),
			wantErr: runner.ErrUnsafeEntry},
		{name: "too large", id: "snap-4", in: bytes.NewReader(makeTar(t, []entry{{name: "big", typeflag: tar.TypeReg, body: strings.Repeat("x", 5000)}})),
			wantErr: &archive.LimitError{Limit: archive.LimitEntryBytes}},
		{name: "too many files", id: "snap-6", in: bytes.NewReader(makeTar(t, []entry{
			{name: "a", typeflag: tar.TypeReg}, {name: "b", typeflag: tar.TypeReg}, {name: "c", typeflag: tar.TypeReg},
		})), wantErr: &archive.LimitError{Limit: archive.LimitEntries}},
		{name: "endless zeros after the end", id: "snap-7", in: io.MultiReader(bytes.NewReader(good), io.LimitReader(zeros{}, 3<<20)),
			wantErr: &archive.LimitError{Limit: archive.LimitBytes}},
		{name: "malformed", id: "snap-5", in: strings.NewReader("this is not a tar file, but it is long enough to be read as a header block" + strings.Repeat("!", 600)), wantErr: errAny},
		{name: "invalid ID", id: "../snap", in: bytes.NewReader(good), wantErr: errAny},
	}
	f := newFiles(t)
	f.SetLimits(archive.Limits{MaxBytes: 4096, MaxEntries: 2}, archive.Limits{})
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			info, err := f.SaveSnapshot(tt.id, tt.in)
			n := info.Size
			var le, wle *archive.LimitError
			switch {
			case errors.As(tt.wantErr, &wle):
				if !errors.As(err, &le) || le.Limit != wle.Limit {
					t.Fatalf("SaveSnapshot error = %v, want the %s limit", err, wle.Limit)
				}
			case tt.wantErr == nil && err != nil:
				t.Fatalf("SaveSnapshot error = %v, want nil", err)
			case tt.wantErr == errAny && err == nil:
				t.Fatalf("SaveSnapshot error = nil, want an error")
			case tt.wantErr != nil && tt.wantErr != errAny && !errors.Is(err, tt.wantErr):
				t.Fatalf("SaveSnapshot error = %v, want %v", err, tt.wantErr)
			}
			if n != tt.wantN {
				t.Errorf("SaveSnapshot = %d bytes, want %d", n, tt.wantN)
			}
		})
	}
	// Only the good snapshot is stored; no temporary files are left.
	if diff := cmp.Diff([]string{"snap-1.tar"}, snapshotNames(t, f)); diff != "" {
		t.Errorf("snapshots directory (-want +got):\n%s", diff)
	}
	if entries, err := os.ReadDir(f.root); err != nil || len(entries) != 2 {
		t.Errorf("root holds %v (err %v), want only jobs and snapshots", entries, err)
	}

	r, err := f.OpenSnapshot("snap-1")
	if err != nil {
		t.Fatalf("OpenSnapshot: %v", err)
	}
	defer r.Close()
	got, err := io.ReadAll(r)
	if err != nil || !bytes.Equal(got, good) {
		t.Errorf("OpenSnapshot content = %d bytes (err %v), want the %d bytes saved", len(got), err, len(good))
	}
}

var errAny = errors.New("any error")

func TestOpenSnapshotMissing(t *testing.T) {
	f := newFiles(t)
	for _, id := range []string{"missing", "snap-2", "../snapshots/x", "a/b", "", "x.tar"} {
		r, err := f.OpenSnapshot(id)
		if !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("OpenSnapshot(%q) error = %v, want fs.ErrNotExist", id, err)
		}
		if r != nil {
			r.Close()
		}
	}
}

// A new attempt starts its streams at offset 0, and the previous attempt's
// logs and outputs stay readable under attempts/<N>/, in the artifacts too.
func TestStartAttempt(t *testing.T) {
	f := newFiles(t)
	if err := f.Append("r1", Stdout, 0, []byte("first try\n")); err != nil {
		t.Fatal(err)
	}
	dir, _ := f.JobDir("r1")
	if err := os.MkdirAll(filepath.Join(dir, "outputs"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "outputs", "ckpt"), []byte("step 7"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := f.StartAttempt("r1", 2); err != nil {
		t.Fatalf("StartAttempt: %v", err)
	}
	if out, _, err := f.Offsets("r1"); err != nil || out != 0 {
		t.Fatalf("Offsets after StartAttempt = %d, %v; want 0", out, err)
	}
	if err := f.Append("r1", Stdout, 0, []byte("second\n")); err != nil {
		t.Fatal(err)
	}
	if err := f.StartAttempt("r1", 2); err != nil { // again: nothing moves
		t.Fatalf("StartAttempt: %v", err)
	}
	if got := readAll(t, f, "r1", StdLog); got != "second\n" {
		t.Errorf("current std_log = %q, want the second attempt's only", got)
	}
	old, err := os.ReadFile(filepath.Join(dir, "attempts", "1", runner.StdLogFile))
	if err != nil || string(old) != "first try\n" {
		t.Errorf("attempt 1's std_log = %q, %v", old, err)
	}
	var buf bytes.Buffer
	if err := f.WriteArtifacts("r1", &buf); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(buf.String(), "attempts/1/outputs/ckpt") {
		t.Errorf("artifacts lack attempts/1/outputs/ckpt")
	}
	if err := f.StartAttempt("r1", 1); err != nil {
		t.Errorf("StartAttempt(1) = %v, want nil", err)
	}
}

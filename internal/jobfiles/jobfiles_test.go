package jobfiles

import (
	"archive/tar"
	"bytes"
	"errors"
	"fmt"
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

// TestAppendLogLimit: the limit counts what the log stores, the streams'
// bytes and 8 index bytes per switch between stdout and stderr.
func TestAppendLogLimit(t *testing.T) {
	tests := []struct {
		name       string
		limit      int64
		chunks     []chunk
		wantCutAt  int // index of the chunk that gets ErrLogCut; -1 none
		wantStdout string
		wantStderr string
		wantStdLog string
	}{
		{
			name:       "under the limit",
			limit:      100,
			chunks:     []chunk{{Stdout, 0, "abc\n", false}, {Stderr, 0, "E\n", false}},
			wantCutAt:  -1,
			wantStdout: "abc\n", wantStderr: "E\n", wantStdLog: "abc\nE\n",
		},
		{
			name:       "exactly the limit is not cut",
			limit:      4 + 8 + 2 + 8,
			chunks:     []chunk{{Stdout, 0, "abc\n", false}, {Stderr, 0, "E\n", false}},
			wantCutAt:  -1,
			wantStdout: "abc\n", wantStderr: "E\n", wantStdLog: "abc\nE\n",
		},
		{
			name:       "cut inside a chunk",
			limit:      4 + 8 + 2 + 8,
			chunks:     []chunk{{Stdout, 0, "abc\n", false}, {Stderr, 0, "EFGH", false}, {Stderr, 4, "more", false}, {Stdout, 4, "late", false}},
			wantCutAt:  1,
			wantStdout: "abc\n",
			wantStderr: "EF\n" + CutLine(Stderr, 2, 22),
			wantStdLog: "abc\nEF\n" + CutLine(Stderr, 2, 22),
		},
		{
			name:       "cut right after a full chunk",
			limit:      4 + 8,
			chunks:     []chunk{{Stdout, 0, "abc\n", false}, {Stdout, 4, "x", false}},
			wantCutAt:  1,
			wantStdout: "abc\n" + CutLine(Stdout, 4, 12),
			wantStdLog: "abc\n" + CutLine(Stdout, 4, 12),
		},
		{
			name:       "a resent chunk after the cut changes nothing",
			limit:      3 + 8,
			chunks:     []chunk{{Stdout, 0, "abcdef", false}, {Stdout, 0, "abcdef", false}},
			wantCutAt:  0,
			wantStdout: "abc\n" + CutLine(Stdout, 3, 11),
			wantStdLog: "abc\n" + CutLine(Stdout, 3, 11),
		},
		{
			name:       "no limit",
			limit:      0,
			chunks:     []chunk{{Stdout, 0, strings.Repeat("x", 100), false}},
			wantCutAt:  -1,
			wantStdout: strings.Repeat("x", 100), wantStdLog: strings.Repeat("x", 100),
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFiles(t)
			f.SetLogLimit(tt.limit)
			for i, c := range tt.chunks {
				err := f.Append("run1", c.stream, c.offset, []byte(c.data))
				if gotCut := errors.Is(err, ErrLogCut); gotCut != (i == tt.wantCutAt) {
					t.Errorf("Append chunk %d: err %v, want ErrLogCut %v", i, err, i == tt.wantCutAt)
				} else if err != nil && !gotCut {
					t.Errorf("Append chunk %d: %v", i, err)
				}
			}
			for _, s := range []struct{ stream, want string }{{Stdout, tt.wantStdout}, {Stderr, tt.wantStderr}, {StdLog, tt.wantStdLog}} {
				if got := readAll(t, f, "run1", s.stream); got != s.want {
					t.Errorf("%s = %q, want %q", s.stream, got, s.want)
				}
			}
		})
	}
}

// TestLogLimitAfterReopen checks that a cut log stays cut when the store is
// opened again (a control plane restart): resent output is not stored.
func TestLogLimitAfterReopen(t *testing.T) {
	dir := t.TempDir()
	f, err := New(dir)
	if err != nil {
		t.Fatal(err)
	}
	f.SetLogLimit(12)
	if err := f.Append("run1", Stdout, 0, []byte("abcdefgh")); !errors.Is(err, ErrLogCut) {
		t.Fatalf("Append: %v, want ErrLogCut", err)
	}
	f.Close("run1")
	want := readAll(t, f, "run1", StdLog)

	g, err := New(dir)
	if err != nil {
		t.Fatal(err)
	}
	g.SetLogLimit(12)
	out, _, err := g.Offsets("run1")
	if err != nil {
		t.Fatal(err)
	}
	if err := g.Append("run1", Stdout, out, []byte("more")); err != nil {
		t.Fatalf("Append after reopen: %v", err)
	}
	if got := readAll(t, g, "run1", StdLog); got != want {
		t.Errorf("std_log after reopen = %q, want %q", got, want)
	}
}

// TestStdLogStoredOnce: std_log is read through the index from the two
// stream files, at every offset, and the output is on disk once.
func TestStdLogStoredOnce(t *testing.T) {
	f := newFiles(t)
	var want strings.Builder
	var offs [2]int64
	for i := range 300 {
		stream, k := Stdout, 0
		if i%3 == 2 {
			stream, k = Stderr, 1
		}
		data := fmt.Sprintf("%s line %d\n", stream, i)
		if err := f.Append("run1", stream, offs[k], []byte(data)); err != nil {
			t.Fatal(err)
		}
		offs[k] += int64(len(data))
		want.WriteString(data)
	}
	for _, off := range []int64{0, 1, 17, int64(want.Len()) / 2, int64(want.Len()) - 1, int64(want.Len())} {
		var buf bytes.Buffer
		next, err := f.ReadLog("run1", StdLog, off, &buf)
		if err != nil {
			t.Fatal(err)
		}
		if got := buf.String(); got != want.String()[off:] || next != int64(want.Len()) {
			t.Errorf("ReadLog(std_log, %d) = %d, %.30q...; want %d, %.30q...", off, next, got, want.Len(), want.String()[off:])
		}
	}
	dir, _ := f.JobDir("run1")
	if _, err := os.Stat(filepath.Join(dir, runner.StdLogFile)); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("a copy of the output in %s: stat %v", runner.StdLogFile, err)
	}
	// 200 switches between streams cost 8 bytes each.
	if fi, err := os.Stat(filepath.Join(dir, stdLogIndex)); err != nil || fi.Size() != 200*segmentSize {
		t.Errorf("index: %v, %v; want %d bytes", fi, err, 200*segmentSize)
	}
}

// TestStdLogIndexOneStream: chunks of one stream lengthen one segment.
func TestStdLogIndexOneStream(t *testing.T) {
	f := newFiles(t)
	for i := range 1000 {
		if err := f.Append("run1", Stdout, int64(i), []byte("x")); err != nil {
			t.Fatal(err)
		}
	}
	dir, _ := f.JobDir("run1")
	if fi, err := os.Stat(filepath.Join(dir, stdLogIndex)); err != nil || fi.Size() != segmentSize {
		t.Errorf("index after 1000 stdout chunks: %v, %v; want one segment", fi, err)
	}
	if got := readAll(t, f, "run1", StdLog); got != strings.Repeat("x", 1000) {
		t.Errorf("std_log = %.20q... (%d bytes), want 1000 x", got, len(got))
	}
}

// TestStdLogReopen: a log opened again (a control plane restart) goes on
// where it was, and bytes a crash left in a stream file without an index
// entry are indexed at the end.
func TestStdLogReopen(t *testing.T) {
	dir := t.TempDir()
	f, err := New(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []chunk{{Stdout, 0, "a1 ", false}, {Stderr, 0, "b1 ", false}} {
		if err := f.Append("run1", c.stream, c.offset, []byte(c.data)); err != nil {
			t.Fatal(err)
		}
	}
	f.Close("run1")
	jobDir, _ := f.JobDir("run1")
	out, err := os.OpenFile(filepath.Join(jobDir, runner.StdoutFile), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	out.WriteString("lost ")
	out.Close()

	g, err := New(dir)
	if err != nil {
		t.Fatal(err)
	}
	stdout, stderr, err := g.Offsets("run1")
	if err != nil || stdout != 8 || stderr != 3 {
		t.Fatalf("Offsets = %d, %d, %v; want 8, 3", stdout, stderr, err)
	}
	if err := g.Append("run1", Stderr, 3, []byte("b2")); err != nil {
		t.Fatal(err)
	}
	if got, want := readAll(t, g, "run1", StdLog), "a1 b1 lost b2"; got != want {
		t.Errorf("std_log = %q, want %q", got, want)
	}
}

// TestStdLogLegacy: a job written before the index, with its own
// std_log.txt, is read and appended to as before.
func TestStdLogLegacy(t *testing.T) {
	f := newFiles(t)
	dir, _ := f.JobDir("old")
	for name, body := range map[string]string{runner.StdoutFile: "o1", runner.StderrFile: "e1", runner.StdLogFile: "e1o1"} {
		if err := os.MkdirAll(filepath.Dir(filepath.Join(dir, name)), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if err := f.Append("old", Stdout, 2, []byte("o2")); err != nil {
		t.Fatal(err)
	}
	if got, want := readAll(t, f, "old", StdLog), "e1o1o2"; got != want {
		t.Errorf("std_log = %q, want %q", got, want)
	}
	if _, err := os.Stat(filepath.Join(dir, stdLogIndex)); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("a legacy log got an index: %v", err)
	}
	var buf bytes.Buffer
	if err := f.WriteArtifacts("old", &buf); err != nil {
		t.Fatal(err)
	}
	if got := listTar(t, &buf)["user_logs/std_log.txt"]; got != "e1o1o2" {
		t.Errorf("downloaded std_log.txt = %q, want %q", got, "e1o1o2")
	}
}

// TestStdLogManySegments reads a log whose index spans several blocks,
// from several offsets, while it is open and after it is closed.
func TestStdLogManySegments(t *testing.T) {
	f := newFiles(t)
	var want strings.Builder
	var offs [2]int64
	for i := range 10001 {
		stream, k, b := Stdout, 0, byte('a'+i%26)
		if i%2 == 1 {
			stream, k, b = Stderr, 1, byte('A'+i%26)
		}
		if err := f.Append("run1", stream, offs[k], []byte{b}); err != nil {
			t.Fatal(err)
		}
		offs[k]++
		want.WriteByte(b)
	}
	for _, closed := range []bool{false, true} {
		if closed {
			f.Close("run1")
		}
		for _, off := range []int64{0, 1, 4095, 4096, 4097, 9000, 10000, 10001} {
			var buf bytes.Buffer
			next, err := f.ReadLog("run1", StdLog, off, &buf)
			if err != nil {
				t.Fatal(err)
			}
			if got := buf.String(); got != want.String()[off:] || next != 10001 {
				t.Errorf("closed %v: ReadLog(std_log, %d) = %d, %.20q (%d bytes); want 10001, %.20q (%d bytes)", closed, off, next, got, len(got), want.String()[off:], 10001-off)
			}
		}
	}
}

// A multi-node job's nodes each upload their per-process logs, which land
// side by side; only node 0's outputs are kept, and nothing else of
// another node's upload (not the job's own log files) is taken.
func TestSaveProcessLogs(t *testing.T) {
	f := newFiles(t)
	other := makeTar(t, []entry{
		{name: "outputs/x", typeflag: tar.TypeReg, body: "node 1's output"},
		{name: "user_logs/std_log_node_1_process_0.txt", typeflag: tar.TypeReg, body: "rank 2"},
		{name: "user_logs/std_log.txt", typeflag: tar.TypeReg, body: "node 1's stream"},
		{name: "user_logs/stdout.txt", typeflag: tar.TypeReg, body: "overwrite?"},
	})
	if err := f.SaveProcessLogs("run1", bytes.NewReader(other)); err != nil {
		t.Fatal(err)
	}
	first := makeTar(t, []entry{
		{name: "outputs/y", typeflag: tar.TypeReg, body: "node 0's output"},
		{name: "user_logs/std_log_node_0_process_0.txt", typeflag: tar.TypeReg, body: "rank 0"},
	})
	if err := f.SaveArtifacts("run1", bytes.NewReader(first), ""); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := f.WriteArtifacts("run1", &buf); err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		"outputs/":                               "",
		"outputs/y":                              "node 0's output",
		"user_logs/":                             "",
		"user_logs/std_log_node_0_process_0.txt": "rank 0",
		"user_logs/std_log_node_1_process_0.txt": "rank 2",
	}
	if diff := cmp.Diff(want, listTar(t, &buf)); diff != "" {
		t.Errorf("artifacts (-want +got):\n%s", diff)
	}
}

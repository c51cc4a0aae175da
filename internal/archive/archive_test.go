package archive

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

	"kumo/internal/archive/archivetest"
)

// entry is one tar entry for tarOf.
type entry struct {
	name, body, link string
	typ              byte // 0 means a regular file
}

// tarOf returns a tar of entries, written by archive/tar.
func tarOf(t testing.TB, entries ...entry) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		h := &tar.Header{Name: e.name, Linkname: e.link, Typeflag: e.typ, Mode: 0o644, Size: int64(len(e.body))}
		if h.Typeflag == 0 {
			h.Typeflag = tar.TypeReg
		}
		if h.Typeflag != tar.TypeReg {
			h.Size = 0
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatalf("tar header %q: %v", e.name, err)
		}
		if h.Size > 0 {
			if _, err := tw.Write([]byte(e.body)); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// readerCase is one crafted archive and what the reader must make of it.
type readerCase struct {
	name string
	tar  func(t testing.TB) []byte
	lim  Limits
	// wantErr is ErrUnsafe, ErrMalformed, or a *LimitError whose Limit
	// must match; nil means the archive is good.
	wantErr error
	want    map[string]string // for a good archive: file → content, "->target" for a link, "/" for a dir
}

func tarFn(entries ...entry) func(t testing.TB) []byte {
	return func(t testing.TB) []byte { return tarOf(t, entries...) }
}

func readerCases() []readerCase {
	small := Limits{MaxBytes: 100, MaxEntries: 5, MaxEntryBytes: 50, MaxNameBytes: 40}
	return []readerCase{
		{name: "good tree", tar: tarFn(
			entry{name: "src/", typ: tar.TypeDir},
			entry{name: "src/train.py", body: "print(1)\n"},
			entry{name: "./deep/er/f.txt", body: "f"},
			entry{name: "src/link.py", typ: tar.TypeSymlink, link: "train.py"},
			entry{name: "src/up", typ: tar.TypeSymlink, link: "../deep"},
			entry{name: "chain", typ: tar.TypeSymlink, link: "src/up/er"},
			entry{name: "later", typ: tar.TypeSymlink, link: "notyet/x"},
			entry{name: "notyet/x", body: "x"},
		), want: map[string]string{
			"src": "/", "src/train.py": "print(1)\n", "deep": "/", "deep/er": "/", "deep/er/f.txt": "f",
			"src/link.py": "->train.py", "src/up": "->../deep", "chain": "->src/up/er", "later": "->notyet/x",
			"notyet": "/", "notyet/x": "x",
		}},
		{name: "sparse PAX 1.0, 4 GiB in a few KB", tar: func(testing.TB) []byte { return archivetest.SparseTar() }, wantErr: ErrUnsafe},
		{name: "sparse PAX 0.1, 4 GiB in a few KB", tar: func(testing.TB) []byte { return archivetest.Sparse01Tar() }, wantErr: ErrUnsafe},
		{name: "many files", tar: func(t testing.TB) []byte {
			r := archivetest.ManyFiles(30)
			defer r.Close()
			b, err := io.ReadAll(r)
			if err != nil {
				t.Fatal(err)
			}
			return b
		}, lim: Limits{MaxEntries: 20}, wantErr: &LimitError{Limit: LimitEntries}},
		{name: "total size", tar: tarFn(entry{name: "a", body: strings.Repeat("a", 40)}, entry{name: "b", body: strings.Repeat("b", 40)}, entry{name: "c", body: strings.Repeat("c", 40)}),
			lim: small, wantErr: &LimitError{Limit: LimitBytes}},
		{name: "file size", tar: tarFn(entry{name: "a", body: strings.Repeat("a", 51)}), lim: small, wantErr: &LimitError{Limit: LimitEntryBytes}},
		{name: "long name", tar: tarFn(entry{name: strings.Repeat("n", 41), body: "x"}), lim: small, wantErr: &LimitError{Limit: LimitNameBytes}},
		{name: "long link target", tar: tarFn(entry{name: "l", typ: tar.TypeSymlink, link: strings.Repeat("n/", 21)}), lim: small, wantErr: &LimitError{Limit: LimitNameBytes}},
		{name: "very long name", tar: tarFn(entry{name: strings.Repeat("d/", 5000) + "f", body: "x"}), wantErr: &LimitError{Limit: LimitNameBytes}},
		{name: "symlink out", tar: tarFn(entry{name: "evil", typ: tar.TypeSymlink, link: "../../etc/passwd"}), wantErr: ErrUnsafe},
		{name: "symlink absolute", tar: tarFn(entry{name: "evil", typ: tar.TypeSymlink, link: "/etc/passwd"}), wantErr: ErrUnsafe},
		{name: "symlink chain out", tar: tarFn(
			entry{name: "a/b/c/", typ: tar.TypeDir},
			entry{name: "a/b/c/s", typ: tar.TypeSymlink, link: "../../.."},
			entry{name: "t", typ: tar.TypeSymlink, link: "a/b/c/s/../x"},
		), wantErr: ErrUnsafe},
		{name: "symlink chain out, target made a link later", tar: tarFn(
			entry{name: "t", typ: tar.TypeSymlink, link: "a/b/c/s/../x"},
			entry{name: "a/b/c/s", typ: tar.TypeSymlink, link: "../../.."},
		), wantErr: ErrUnsafe},
		{name: "symlink through symlink out", tar: tarFn(
			entry{name: "up", typ: tar.TypeSymlink, link: "."},
			entry{name: "x", typ: tar.TypeSymlink, link: "up/up/up/.."},
		), wantErr: ErrUnsafe},
		{name: "symlink loop", tar: tarFn(
			entry{name: "a", typ: tar.TypeSymlink, link: "b"},
			entry{name: "b", typ: tar.TypeSymlink, link: "a"},
		), wantErr: ErrUnsafe},
		{name: "link then file through the link", tar: tarFn(
			entry{name: "d/", typ: tar.TypeDir},
			entry{name: "l", typ: tar.TypeSymlink, link: "d"},
			entry{name: "l/f", body: "x"},
		), wantErr: ErrUnsafe},
		{name: "file then file under it", tar: tarFn(entry{name: "f", body: "x"}, entry{name: "f/g", body: "y"}), wantErr: ErrUnsafe},
		{name: "dotdot name", tar: tarFn(entry{name: "../evil", body: "x"}), wantErr: ErrUnsafe},
		{name: "dotdot inside name", tar: tarFn(entry{name: "a/../../evil", body: "x"}), wantErr: ErrUnsafe},
		{name: "absolute name", tar: tarFn(entry{name: "/tmp/evil", body: "x"}), wantErr: ErrUnsafe},
		{name: "char device", tar: tarFn(entry{name: "dev", typ: tar.TypeChar}), wantErr: ErrUnsafe},
		{name: "block device", tar: tarFn(entry{name: "dev", typ: tar.TypeBlock}), wantErr: ErrUnsafe},
		{name: "fifo", tar: tarFn(entry{name: "fifo", typ: tar.TypeFifo}), wantErr: ErrUnsafe},
		{name: "hard link inside", tar: tarFn(entry{name: "a", body: "x"}, entry{name: "b", typ: tar.TypeLink, link: "a"}), wantErr: ErrUnsafe},
		{name: "hard link outside", tar: tarFn(entry{name: "b", typ: tar.TypeLink, link: "../../etc/passwd"}), wantErr: ErrUnsafe},
		{name: "duplicate file", tar: tarFn(entry{name: "a", body: "x"}, entry{name: "a", body: "y"}), wantErr: ErrUnsafe},
		{name: "file over link", tar: tarFn(entry{name: "a", typ: tar.TypeSymlink, link: "b"}, entry{name: "a", body: "y"}), wantErr: ErrUnsafe},
		{name: "dir over file", tar: tarFn(entry{name: "a", body: "x"}, entry{name: "a/", typ: tar.TypeDir}), wantErr: ErrUnsafe},
		{name: "truncated", tar: func(t testing.TB) []byte { return tarOf(t, entry{name: "a", body: strings.Repeat("x", 1000)})[:700] }, wantErr: ErrMalformed},
		{name: "garbage", tar: func(testing.TB) []byte { return bytes.Repeat([]byte("kumo"), 300) }, wantErr: ErrMalformed},
		{name: "empty", tar: func(testing.TB) []byte { return nil }, want: map[string]string{}},
	}
}

// tree lists dir: file → content, link → "->target", dir → "/".
func listTree(t testing.TB, dir string) map[string]string {
	t.Helper()
	got := map[string]string{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		switch {
		case rel == ".":
		case d.IsDir():
			got[filepath.ToSlash(rel)] = "/"
		case d.Type()&fs.ModeSymlink != 0:
			l, _ := os.Readlink(p)
			got[filepath.ToSlash(rel)] = "->" + l
		default:
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			got[filepath.ToSlash(rel)] = string(b)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return got
}

func checkErr(t *testing.T, what string, err, want error) {
	t.Helper()
	var le, wle *LimitError
	switch {
	case want == nil:
		if err != nil {
			t.Fatalf("%s error = %v, want nil", what, err)
		}
	case errors.As(want, &wle):
		if !errors.As(err, &le) || le.Limit != wle.Limit {
			t.Fatalf("%s error = %v, want the %s limit", what, err, wle.Limit)
		}
	case !errors.Is(err, want):
		t.Fatalf("%s error = %v, want %v", what, err, want)
	}
}

func TestExtract(t *testing.T) {
	for _, tt := range readerCases() {
		t.Run(tt.name, func(t *testing.T) {
			data := tt.tar(t)
			// The directory holds what a job's directory holds before its
			// code comes, next to a sibling that must stay untouched.
			parent := t.TempDir()
			dir := filepath.Join(parent, "job")
			for _, d := range []string{"job/outputs", "job/logs", "etc"} {
				if err := os.MkdirAll(filepath.Join(parent, d), 0o755); err != nil {
					t.Fatal(err)
				}
			}
			before := listTree(t, parent)
			_, err := Extract(dir, bytes.NewReader(data), tt.lim)
			checkErr(t, "Extract", err, tt.wantErr)
			_, cerr := Check(bytes.NewReader(data), tt.lim)
			checkErr(t, "Check", cerr, tt.wantErr)
			if tt.wantErr != nil {
				if diff := cmp.Diff(before, listTree(t, parent)); diff != "" {
					t.Errorf("a refused archive changed the disk (-before +after):\n%s", diff)
				}
				return
			}
			got := listTree(t, dir)
			delete(got, "outputs")
			delete(got, "logs")
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("extracted tree (-want +got):\n%s", diff)
			}
		})
	}
}

func TestExtractStats(t *testing.T) {
	data := tarOf(t, entry{name: "d/", typ: tar.TypeDir}, entry{name: "d/a", body: "abc"}, entry{name: "b", body: "de"}, entry{name: "l", typ: tar.TypeSymlink, link: "b"})
	want := Stats{Entries: 4, Files: 2, Bytes: 5}
	got, err := Extract(t.TempDir(), bytes.NewReader(data), Limits{})
	if err != nil || got != want {
		t.Errorf("Extract = %+v, %v; want %+v, nil", got, err, want)
	}
	if got, err := Check(bytes.NewReader(data), Limits{}); err != nil || got != want {
		t.Errorf("Check = %+v, %v; want %+v, nil", got, err, want)
	}
}

// TestExtractRefusesExisting: what is already in the directory is neither
// written through nor replaced.
func TestExtractRefusesExisting(t *testing.T) {
	parent := t.TempDir()
	dir := filepath.Join(parent, "job")
	secret := filepath.Join(parent, "secret")
	os.MkdirAll(dir, 0o755)
	os.WriteFile(secret, []byte("secret"), 0o600)
	os.Symlink(secret, filepath.Join(dir, "planted"))
	os.Symlink(parent, filepath.Join(dir, "planteddir"))
	for _, e := range []entry{
		{name: "planted", body: "x"},
		{name: "planteddir/secret", body: "x"},
		{name: "planteddir/new", body: "x"},
		{name: "via", typ: tar.TypeSymlink, link: "planteddir/secret"},
		{name: "via", typ: tar.TypeSymlink, link: "planteddir/../x"},
	} {
		_, err := Extract(dir, bytes.NewReader(tarOf(t, e)), Limits{})
		if !errors.Is(err, ErrUnsafe) {
			t.Errorf("Extract of %q (-> %q) with a planted link = %v, want ErrUnsafe", e.name, e.link, err)
		}
	}
	if b, _ := os.ReadFile(secret); string(b) != "secret" {
		t.Errorf("secret = %q, want it untouched", b)
	}
	if _, err := os.Lstat(filepath.Join(parent, "new")); err == nil {
		t.Errorf("a file was written through a planted directory link")
	}
}

// TestManyFilesStopsEarly: the 203k-file tar is refused after reading
// little more than the entry limit.
func TestManyFilesStopsEarly(t *testing.T) {
	r := archivetest.ManyFiles(203_000)
	defer r.Close()
	cr := &countReader{r: r}
	_, err := Check(cr, Limits{})
	var le *LimitError
	if !errors.As(err, &le) || le.Limit != LimitEntries {
		t.Fatalf("Check = %v, want the entry count limit", err)
	}
	if max := int64(DefaultLimits.MaxEntries+10) * 512 * 2; cr.n > max {
		t.Errorf("Check read %d bytes, want at most %d", cr.n, max)
	}
}

type countReader struct {
	r io.Reader
	n int64
}

func (c *countReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

func TestLimitErrorMessage(t *testing.T) {
	err := error(&LimitError{Limit: LimitBytes, Max: 100 << 20, Name: "data/big.bin"})
	want := `archive exceeds the total size limit of 104857600 bytes at "data/big.bin"`
	if err.Error() != want {
		t.Errorf("Error() = %q, want %q", err.Error(), want)
	}
}

func TestResolvesInside(t *testing.T) {
	links := map[string]string{"a/b/c/s": "../../..", "up": ".", "loop1": "loop2", "loop2": "loop1", "abs": "/etc"}
	read := func(p string) (string, bool) { l, ok := links[p]; return l, ok }
	tests := []struct {
		name, target string
		ok           bool
	}{
		{"x", "y", true},
		{"d/x", "../y", true},
		{"d/x", "../../y", false},
		{"x", "a/b/c/s", true},
		{"x", "a/b/c/s/../y", false},
		{"x", "up/up/up", true},
		{"x", "up/..", false},
		{"x", "loop1", false},
		{"x", "abs", false},
		{"x", "abs/../y", false},
		{"x", "/y", false},
		{"x", "", false},
		{"x", "a/./b/../b/c", true},
	}
	for _, tt := range tests {
		err := resolvesInside(tt.name, tt.target, read)
		if (err == nil) != tt.ok {
			t.Errorf("resolvesInside(%q -> %q) = %v, want ok %v", tt.name, tt.target, err, tt.ok)
		}
	}
}

func TestWrite(t *testing.T) {
	parent := t.TempDir()
	dir := filepath.Join(parent, "job")
	secret := filepath.Join(parent, "secret.txt")
	mustWrite(t, secret, "SECRET")
	mustWrite(t, filepath.Join(dir, "outputs", "good.txt"), "good")
	mustWrite(t, filepath.Join(dir, "outputs", "sub", "x.txt"), "x")
	mustWrite(t, filepath.Join(dir, "logs", "l.txt"), "log")
	mustWrite(t, filepath.Join(dir, "private", "p.txt"), "PRIVATE")
	d := strings.Repeat("d", 200)
	long := "outputs/" + d + "/" + d + "/" + d + "/" + d + "/" + strings.Repeat("l", 250)
	mustWrite(t, filepath.Join(dir, long), "long")
	links := map[string]string{
		"outputs/evil":       secret,                    // absolute, outside
		"outputs/evilrel":    "../../secret.txt",        // relative, outside
		"outputs/evildir":    parent,                    // a directory outside
		"outputs/hop":        "sub/../..",               // the job dir: inside
		"outputs/chain":      "hop/../secret.txt",       // through a link, outside
		"outputs/inside":     "good.txt",                // kept
		"outputs/toprivate":  "../private/p.txt",        // inside dir: kept as a link, not read
		"outputs/sub/loopy":  "loopy",                   // a loop
		"outputs/dangling":   "nowhere/../good.txt",     // inside, dangling part
		"outputs/deep/chain": "../hop/../../secret.txt", // outside through a link
	}
	for name, target := range links {
		os.MkdirAll(filepath.Dir(filepath.Join(dir, name)), 0o755)
		if err := os.Symlink(target, filepath.Join(dir, name)); err != nil {
			t.Fatal(err)
		}
	}
	var buf bytes.Buffer
	warnings, err := Write(&buf, dir, "outputs", "logs", "missing")
	if err != nil {
		t.Fatalf("Write: %v", err)
	}
	if bytes.Contains(buf.Bytes(), []byte("SECRET")) || bytes.Contains(buf.Bytes(), []byte("PRIVATE")) {
		t.Errorf("the tar holds what links point to")
	}
	var warned []string
	longWarned := false
	for _, w := range warnings {
		if strings.Contains(w, "name longer than 1024 bytes") {
			longWarned = true
			continue
		}
		name, _, _ := strings.Cut(w, ":")
		warned = append(warned, strings.Trim(name, `"`))
	}
	sort.Strings(warned)
	if !longWarned {
		t.Errorf("no warning about the long name in %q", warnings)
	}
	wantWarned := []string{"outputs/chain", "outputs/deep/chain", "outputs/evil", "outputs/evildir", "outputs/evilrel", "outputs/sub/loopy"}
	if diff := cmp.Diff(wantWarned, warned); diff != "" {
		t.Errorf("warned about (-want +got):\n%s\nwarnings: %q", diff, warnings)
	}
	// What Write writes, Extract takes whole.
	out := t.TempDir()
	if _, err := Extract(out, bytes.NewReader(buf.Bytes()), Limits{}); err != nil {
		t.Fatalf("Extract of Write's tar: %v", err)
	}
	want := map[string]string{
		"outputs": "/", "outputs/good.txt": "good", "outputs/sub": "/", "outputs/sub/x.txt": "x",
		"outputs/hop": "->sub/../..", "outputs/inside": "->good.txt", "outputs/toprivate": "->../private/p.txt",
		"outputs/dangling": "->nowhere/../good.txt", "outputs/deep": "/",
		"outputs/" + d: "/", "outputs/" + d + "/" + d: "/", "outputs/" + d + "/" + d + "/" + d: "/", "outputs/" + d + "/" + d + "/" + d + "/" + d: "/",
		"logs": "/", "logs/l.txt": "log",
	}
	if diff := cmp.Diff(want, listTree(t, out)); diff != "" {
		t.Errorf("tree from Write's tar (-want +got):\n%s", diff)
	}
}

func TestWriteWarningsBounded(t *testing.T) {
	dir := t.TempDir()
	os.MkdirAll(filepath.Join(dir, "outputs"), 0o755)
	for i := range 30 {
		os.Symlink("/etc/passwd", filepath.Join(dir, "outputs", fmt.Sprint("evil", i)))
	}
	warnings, err := Write(io.Discard, dir, "outputs")
	if err != nil {
		t.Fatal(err)
	}
	if len(warnings) != maxWarnings+1 || warnings[maxWarnings] != "10 more left out" {
		t.Errorf("Write warnings = %d, last %q; want %d, the last counting 10 more", len(warnings), warnings[len(warnings)-1], maxWarnings+1)
	}
}

func mustWrite(t *testing.T, name, data string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(name), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(name, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
}

package archive

import (
	"archive/tar"
	"bytes"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// FuzzExtract extracts arbitrary bytes and checks that nothing escapes the
// directory, nothing panics, no more than the limits reach the disk, a
// refused archive leaves nothing, and Check agrees with Extract.
func FuzzExtract(f *testing.F) {
	for _, tt := range readerCases() {
		f.Add(tt.tar(f))
	}
	f.Add(tarOf(f, entry{name: "a/b", typ: tar.TypeSymlink, link: "../c"}, entry{name: "c/d", body: "x"}))
	lim := Limits{MaxBytes: 4096, MaxEntries: 64, MaxEntryBytes: 2048, MaxNameBytes: 128}
	f.Fuzz(func(t *testing.T, data []byte) {
		parent := t.TempDir()
		dir := filepath.Join(parent, "dir")
		if err := os.Mkdir(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		st, err := Extract(dir, bytes.NewReader(data), lim)
		_, cerr := Check(bytes.NewReader(data), lim)
		if (err == nil) != (cerr == nil) {
			t.Fatalf("Extract = %v but Check = %v", err, cerr)
		}
		if err != nil && !errors.Is(err, ErrUnsafe) && !errors.Is(err, ErrMalformed) && !errors.As(err, new(*LimitError)) {
			t.Fatalf("Extract error %v is none of the kinds a server can map", err)
		}
		// Nothing but dir in parent.
		ents, rerr := os.ReadDir(parent)
		if rerr != nil || len(ents) != 1 {
			t.Fatalf("parent holds %v, want dir alone", ents)
		}
		var bytesOnDisk int64
		entries := 0
		werr := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if p == dir {
				return nil
			}
			entries++
			info, err := d.Info()
			if err != nil {
				return err
			}
			switch {
			case info.Mode().IsRegular():
				bytesOnDisk += info.Size()
			case info.Mode()&fs.ModeSymlink != 0:
				target, err := filepath.EvalSymlinks(p)
				if err != nil {
					return nil // dangling: it resolves nowhere
				}
				if rel, err := filepath.Rel(dir, target); err != nil || rel == ".." || strings.HasPrefix(rel, "../") {
					t.Errorf("link %s resolves to %s, outside the directory", p, target)
				}
			case !info.IsDir():
				t.Errorf("%s is a %v", p, info.Mode().Type())
			}
			return nil
		})
		if werr != nil {
			t.Fatal(werr)
		}
		if err != nil && entries != 0 {
			t.Fatalf("refused archive (%v) left %d entries", err, entries)
		}
		if bytesOnDisk > lim.MaxBytes || entries > lim.MaxEntries {
			t.Fatalf("disk holds %d bytes in %d entries, over the limits", bytesOnDisk, entries)
		}
		if err == nil && st.Bytes != bytesOnDisk {
			t.Fatalf("Stats.Bytes = %d, disk holds %d", st.Bytes, bytesOnDisk)
		}
	})
}

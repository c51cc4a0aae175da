package archive

import (
	"archive/tar"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"slices"
	"strings"
	"syscall"
	"time"
)

// maxWarnings bounds the warnings Write returns; the rest are counted in
// a last one.
const maxWarnings = 20

// Write writes a tar of the subdirectories subs of dir (all of dir when
// subs is empty) to w, with names relative to dir ("outputs/x.txt",
// directories ending in "/"), in a stable order. A missing subdirectory is
// skipped.
//
// Write never reads through a symbolic link: a job may have planted one to
// a file it cannot read itself, and Write may run as root. Every file is
// opened relative to an [os.Root] of dir and checked to be the regular
// file that was listed. A link that resolves inside dir is written as a
// link; one that points outside dir, and anything that is not a regular
// file, a directory or a link (a FIFO, a socket, a device), is left out
// with a warning, and so is a name longer than DefaultLimits.MaxNameBytes;
// the rest is written. The warnings, at most 21 of
// them, name what was left out and why; an error means the tar is
// unusable.
func Write(w io.Writer, dir string, subs ...string) (warnings []string, err error) {
	root, err := os.OpenRoot(dir)
	if err != nil {
		return nil, fmt.Errorf("tar %s: %w", dir, err)
	}
	defer root.Close()
	wr := &writer{root: root, tw: tar.NewWriter(w), readLink: rootLinkReader(root)}
	if len(subs) == 0 {
		subs = []string{"."}
	}
	for _, sub := range subs {
		fi, err := root.Lstat(sub)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return wr.warnings(), fmt.Errorf("tar %s: %w", sub, err)
		}
		if !fi.IsDir() {
			wr.warn(sub, "not a directory; left out")
			continue
		}
		if err := wr.walk(path.Clean(sub), fi); err != nil {
			return wr.warnings(), fmt.Errorf("tar %s: %w", sub, err)
		}
	}
	if err := wr.tw.Close(); err != nil {
		return wr.warnings(), fmt.Errorf("tar: %w", err)
	}
	return wr.warnings(), nil
}

type writer struct {
	root     *os.Root
	readLink linkReader
	tw       *tar.Writer
	warns    []string
	dropped  int // warnings past maxWarnings
}

func (wr *writer) warn(name, why string) {
	if len(wr.warns) >= maxWarnings {
		wr.dropped++
		return
	}
	wr.warns = append(wr.warns, quote(name)+": "+why)
}

func (wr *writer) warnings() []string {
	if wr.dropped == 0 {
		return wr.warns
	}
	return append(wr.warns, fmt.Sprintf("%d more left out", wr.dropped))
}

// rootLinkReader is a linkReader over the disk, through root.
func rootLinkReader(root *os.Root) linkReader {
	return func(p string) (string, bool) {
		fi, err := root.Lstat(p)
		if err != nil || fi.Mode()&fs.ModeSymlink == 0 {
			return "", false
		}
		t, err := root.Readlink(p)
		if err != nil {
			// Unreadable: judge it as a link to nowhere safe.
			return "/", true
		}
		return t, true
	}
}

// walk writes the directory name (whose Lstat is fi) and what it holds.
func (wr *writer) walk(name string, fi fs.FileInfo) error {
	if name != "." {
		if err := wr.header(name+"/", fi, tar.TypeDir, "", 0); err != nil {
			return err
		}
	}
	d, err := wr.root.OpenFile(name, os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_DIRECTORY, 0)
	if err != nil {
		wr.warn(name, "cannot be read; left out")
		return nil
	}
	entries, err := d.ReadDir(-1)
	d.Close()
	if err != nil {
		wr.warn(name, "cannot be listed; its files are left out")
		return nil
	}
	sortEntries(entries)
	for _, e := range entries {
		child := path.Join(name, e.Name())
		if len(child)+1 > DefaultLimits.MaxNameBytes {
			wr.warn(child, fmt.Sprintf("name longer than %d bytes; left out", DefaultLimits.MaxNameBytes))
			continue
		}
		cfi, err := wr.root.Lstat(child)
		if err != nil {
			wr.warn(child, "vanished while being read; left out")
			continue
		}
		switch m := cfi.Mode(); {
		case m.IsDir():
			if err := wr.walk(child, cfi); err != nil {
				return err
			}
		case m.IsRegular():
			if err := wr.file(child, cfi); err != nil {
				return err
			}
		case m&fs.ModeSymlink != 0:
			target, err := wr.root.Readlink(child)
			if err != nil {
				wr.warn(child, "link cannot be read; left out")
				continue
			}
			if err := resolvesInside(child, target, wr.readLink); err != nil {
				wr.warn(child, "link to "+quote(target)+" points outside the directory; left out")
				continue
			}
			if len(target) > DefaultLimits.MaxNameBytes {
				wr.warn(child, "link target too long; left out")
				continue
			}
			if err := wr.header(child, cfi, tar.TypeSymlink, target, 0); err != nil {
				return err
			}
		default:
			wr.warn(child, "not a regular file, directory or link; left out")
		}
	}
	return nil
}

// file writes the regular file name, listed with fi.
func (wr *writer) file(name string, fi fs.FileInfo) error {
	// The root keeps the open inside dir; O_NOFOLLOW and the check below
	// keep it to the file that was listed, not a link put in its place.
	f, err := wr.root.OpenFile(name, os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_NONBLOCK, 0)
	if err != nil {
		wr.warn(name, "cannot be read; left out")
		return nil
	}
	defer f.Close()
	ofi, err := f.Stat()
	if err != nil || !ofi.Mode().IsRegular() || !os.SameFile(fi, ofi) {
		wr.warn(name, "changed while being read; left out")
		return nil
	}
	size := ofi.Size()
	if err := wr.header(name, ofi, tar.TypeReg, "", size); err != nil {
		return err
	}
	n, err := io.CopyN(wr.tw, f, size)
	if n < size {
		// The file shrank (or could not be read): fill the rest with
		// zeros so the tar stays whole.
		wr.warn(name, "changed while being read; its end is zeros")
		if _, err := io.CopyN(wr.tw, zeros{}, size-n); err != nil {
			return err
		}
		return nil
	}
	return err
}

func (wr *writer) header(name string, fi fs.FileInfo, typ byte, link string, size int64) error {
	return wr.tw.WriteHeader(&tar.Header{
		Typeflag: typ,
		Name:     name,
		Linkname: link,
		Size:     size,
		Mode:     int64(fi.Mode().Perm()),
		ModTime:  fi.ModTime().Truncate(time.Second),
		Format:   tar.FormatPAX,
	})
}

// zeros reads as endless zero bytes.
type zeros struct{}

func (zeros) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}

// sortEntries sorts directory entries by name, for a stable tar.
func sortEntries(es []fs.DirEntry) {
	slices.SortFunc(es, func(a, b fs.DirEntry) int { return strings.Compare(a.Name(), b.Name()) })
}

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
)

// Stats count what an archive held.
type Stats struct {
	Entries int   // files, directories and links
	Files   int   // regular files
	Bytes   int64 // the files' contents
}

// Check reads the tar stream r to its end marker and reports what
// [Extract] would do with it, writing nothing: the same errors for the
// same stream. It reads no further than the end marker.
func Check(r io.Reader, lim Limits) (Stats, error) {
	t := newTree(lim, nil)
	return t.read(r)
}

// Extract extracts the tar stream r into dir, which must exist and should
// be empty or hold only directories (a job's directory before its code is
// extracted; a fresh directory otherwise). It takes directories, regular
// files and symbolic links that resolve inside dir, and refuses, with an
// error wrapping ErrUnsafe, names that are absolute or hold "..", links
// that resolve outside dir (through chains of links too, checked once
// every entry is in), entries under a link, duplicates of a file or link,
// hard links, devices, FIFOs and sparse files. It stops with a
// *LimitError before writing past lim, and with an error wrapping
// ErrMalformed on a broken stream. All writes go through an [os.Root], and
// none through a link. On any error everything Extract made is removed.
// Set-user-ID, set-group-ID and sticky bits are dropped.
func Extract(dir string, r io.Reader, lim Limits) (Stats, error) {
	root, err := os.OpenRoot(dir)
	if err != nil {
		return Stats{}, fmt.Errorf("extract: %w", err)
	}
	defer root.Close()
	d := &diskSink{root: root}
	t := newTree(lim, d)
	// Links already in dir count when judging the archive's links.
	t.onDisk = rootLinkReader(root)
	st, err := t.read(r)
	if err != nil {
		d.undo()
		return Stats{}, err
	}
	return st, nil
}

// kind is what a tree path holds.
type kind uint8

const (
	kindDir kind = iota + 1
	kindFile
	kindLink
)

// node is one path of the tree the archive built.
type node struct {
	kind kind
	link string // kindLink: the target
}

// sink receives the entries a tree accepts; a nil sink writes nothing.
type sink interface {
	// mkdir makes the directory name, whose parent exists.
	mkdir(name string, mode fs.FileMode) error
	// file writes size bytes of r to the new file name.
	file(name string, mode fs.FileMode, r io.Reader, size int64) error
	// symlink makes the link name to target.
	symlink(target, name string) error
}

// tree tracks the paths an archive made, to refuse what is unsafe before
// the sink sees it.
type tree struct {
	lim   Limits
	sink  sink
	nodes map[string]node
	links []string // names of links, in order
	st    Stats
	// onDisk, when not nil, reads the links of paths the archive did not
	// make.
	onDisk linkReader
}

func newTree(lim Limits, s sink) *tree {
	return &tree{lim: lim.orDefault(), sink: s, nodes: map[string]node{}}
}

func (t *tree) read(r io.Reader) (Stats, error) {
	tr := tar.NewReader(r)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return t.st, fmt.Errorf("%w: %w", ErrMalformed, err)
		}
		if err := t.entry(tr, h); err != nil {
			return t.st, err
		}
	}
	// A link's target may have become a link after the link was made:
	// judge every link against the finished tree.
	for _, name := range t.links {
		if err := resolvesInside(name, t.nodes[name].link, t.readLink); err != nil {
			return t.st, err
		}
	}
	return t.st, nil
}

func (t *tree) readLink(p string) (string, bool) {
	n, ok := t.nodes[p]
	if !ok && t.onDisk != nil {
		return t.onDisk(p)
	}
	return n.link, ok && n.kind == kindLink
}

func (t *tree) entry(tr *tar.Reader, h *tar.Header) error {
	if h.Typeflag == tar.TypeXGlobalHeader {
		return nil
	}
	if t.st.Entries++; t.st.Entries > t.lim.MaxEntries {
		return &LimitError{Limit: LimitEntries, Max: int64(t.lim.MaxEntries), Name: h.Name}
	}
	if len(h.Name) > t.lim.MaxNameBytes || len(h.Linkname) > t.lim.MaxNameBytes {
		return &LimitError{Limit: LimitNameBytes, Max: int64(t.lim.MaxNameBytes), Name: h.Name}
	}
	name, err := cleanName(h.Name)
	if err != nil {
		return err
	}
	if h.Typeflag == tar.TypeGNUSparse || hasSparseRecords(h) {
		return unsafef(h.Name, "sparse file")
	}
	mode := fs.FileMode(h.Mode).Perm()
	switch h.Typeflag {
	case tar.TypeDir:
		if name == "." {
			return nil
		}
		return t.mkdirAll(name, h.Name, mode|0o700)
	case tar.TypeReg:
		if name == "." {
			return unsafef(h.Name, "file with the root's name")
		}
		switch {
		case h.Size < 0:
			return fmt.Errorf("%w: %s: negative size", ErrMalformed, quote(h.Name))
		case h.Size > t.lim.MaxEntryBytes:
			return &LimitError{Limit: LimitEntryBytes, Max: t.lim.MaxEntryBytes, Name: h.Name}
		case h.Size > t.lim.MaxBytes-t.st.Bytes:
			return &LimitError{Limit: LimitBytes, Max: t.lim.MaxBytes, Name: h.Name}
		}
		if err := t.add(name, h.Name, node{kind: kindFile}); err != nil {
			return err
		}
		t.st.Files++
		t.st.Bytes += h.Size
		if t.sink == nil {
			if _, err := io.CopyN(io.Discard, tr, h.Size); err != nil {
				return fmt.Errorf("%w: %s: %w", ErrMalformed, quote(h.Name), err)
			}
			return nil
		}
		return t.sink.file(name, mode, tr, h.Size)
	case tar.TypeSymlink:
		if name == "." {
			return unsafef(h.Name, "link with the root's name")
		}
		if err := resolvesInside(name, h.Linkname, t.readLink); err != nil {
			return err
		}
		if err := t.add(name, h.Name, node{kind: kindLink, link: h.Linkname}); err != nil {
			return err
		}
		t.links = append(t.links, name)
		if t.sink == nil {
			return nil
		}
		return t.sink.symlink(h.Linkname, name)
	case tar.TypeLink:
		return unsafef(h.Name, "hard link to %s", quote(h.Linkname))
	case tar.TypeChar, tar.TypeBlock:
		return unsafef(h.Name, "device file")
	case tar.TypeFifo:
		return unsafef(h.Name, "FIFO")
	default:
		return unsafef(h.Name, "unsupported entry type %q", h.Typeflag)
	}
}

// hasSparseRecords reports whether h carries GNU sparse PAX records.
func hasSparseRecords(h *tar.Header) bool {
	for k := range h.PAXRecords {
		if strings.HasPrefix(k, "GNU.sparse.") {
			return true
		}
	}
	return false
}

// add records a new file or link at name after making its parents; a
// name already taken is refused.
func (t *tree) add(name, raw string, n node) error {
	if d := path.Dir(name); d != "." {
		if err := t.mkdirAll(d, raw, 0o755); err != nil {
			return err
		}
	}
	if _, ok := t.nodes[name]; ok {
		return unsafef(raw, "duplicate entry")
	}
	t.nodes[name] = n
	return nil
}

// mkdirAll makes the directory name and its parents; a part that is a
// file or a link is refused.
func (t *tree) mkdirAll(name, raw string, mode fs.FileMode) error {
	if n, ok := t.nodes[name]; ok {
		if n.kind == kindDir {
			return nil
		}
		return unsafef(raw, "path through a file or link %s", quote(name))
	}
	if d := path.Dir(name); d != "." {
		if err := t.mkdirAll(d, raw, 0o755); err != nil {
			return err
		}
	}
	t.nodes[name] = node{kind: kindDir}
	if t.sink == nil {
		return nil
	}
	return t.sink.mkdir(name, mode)
}

// diskSink writes entries under an os.Root and remembers what it made, to
// remove it again.
type diskSink struct {
	root *os.Root
	made []string // paths made, parents before children
}

func (d *diskSink) mkdir(name string, mode fs.FileMode) error {
	err := d.root.Mkdir(name, mode)
	if errors.Is(err, fs.ErrExist) {
		// Only a real directory that was there before will do.
		fi, lerr := d.root.Lstat(name)
		if lerr == nil && fi.IsDir() {
			return nil
		}
		return unsafef(name, "a file or link of that name is already there")
	}
	if err != nil {
		return fmt.Errorf("extract %s: %w", quote(name), err)
	}
	d.made = append(d.made, name)
	return nil
}

func (d *diskSink) file(name string, mode fs.FileMode, r io.Reader, size int64) error {
	// O_EXCL: never write through, or over, what is already there.
	f, err := d.root.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
	if errors.Is(err, fs.ErrExist) {
		return unsafef(name, "a file or link of that name is already there")
	}
	if err != nil {
		return fmt.Errorf("extract %s: %w", quote(name), err)
	}
	d.made = append(d.made, name)
	src := &errReader{r: r}
	n, err := io.CopyN(f, src, size)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	switch {
	case n < size && src.err == io.EOF:
		return fmt.Errorf("%w: %s: %w", ErrMalformed, quote(name), io.ErrUnexpectedEOF)
	case n < size && src.err != nil:
		return fmt.Errorf("%w: %s: %w", ErrMalformed, quote(name), src.err)
	case err != nil:
		return fmt.Errorf("extract %s: %w", quote(name), err)
	}
	return nil
}

// errReader remembers its reader's error, to tell a broken stream from a
// failed write.
type errReader struct {
	r   io.Reader
	err error
}

func (e *errReader) Read(p []byte) (int, error) {
	n, err := e.r.Read(p)
	if err != nil {
		e.err = err
	}
	return n, err
}

func (d *diskSink) symlink(target, name string) error {
	err := d.root.Symlink(target, name)
	if errors.Is(err, fs.ErrExist) {
		return unsafef(name, "a file or link of that name is already there")
	}
	if err != nil {
		return fmt.Errorf("extract %s: %w", quote(name), err)
	}
	d.made = append(d.made, name)
	return nil
}

// undo removes what the sink made, children before parents.
func (d *diskSink) undo() {
	for _, name := range slices.Backward(d.made) {
		d.root.Remove(name)
	}
	d.made = nil
}

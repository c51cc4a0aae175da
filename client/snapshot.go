package client

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"

	"kumo/api"
)

// MaxSnapshotBytes is the largest code snapshot the server accepts by
// default, as an uncompressed tar stream: 100 MiB.
const MaxSnapshotBytes = 100 << 20

// MaxSnapshotEntries is the most files and directories a code snapshot may
// hold by default on the server.
const MaxSnapshotEntries = 20_000

// maxSnapshotName is the longest path a code snapshot may hold, in bytes.
const maxSnapshotName = 1024

// excludedNames are left out of every snapshot, at any depth: kumo's
// configuration (with the CLI's token), its data directory, and git's.
var excludedNames = map[string]bool{".kumo": true, ".kumo-data": true, ".git": true}

// snapshotEntry is one file or directory to put in a snapshot.
type snapshotEntry struct {
	name string // slash-separated, relative to the snapshot root; directories end in "/"
	path string // file to read; for a symlink, the file it points to
	info fs.FileInfo
}

// tarSize is the number of bytes e takes in a tar stream: a header block
// (two more for a PAX header when the name is long) and the content padded
// to whole 512-byte blocks.
func (e snapshotEntry) tarSize() int64 {
	n := int64(512)
	if len(e.name) > 100 {
		n += 3 * 512
	}
	if e.info.Mode().IsRegular() {
		n += (e.info.Size() + 511) / 512 * 512
	}
	return n
}

// UploadSnapshot uploads the directory dir as a code snapshot and returns
// the snapshot, whose ID goes in a job's codeId. The snapshot holds dir's
// regular files and directories under their paths relative to dir.
//
// It never holds kumo's own files or a repository's: .kumo/ (which holds
// the CLI's token), .kumo-data/ and .git/ are left out wherever they are.
// As in AML, dir's .amlignore, or else its .gitignore, names more to leave
// out, in gitignore syntax. Sockets, devices and the like are left out,
// and so are symbolic links that point outside dir, to a directory, or to
// something left out; a link to a file inside dir is stored as a copy of
// that file. A directory whose tar stream would exceed MaxSnapshotBytes or
// hold more than MaxSnapshotEntries entries is refused before anything is
// sent.
func (w *Workspace) UploadSnapshot(ctx context.Context, dir string) (*api.Snapshot, error) {
	entries, size, err := snapshotEntries(dir)
	if err != nil {
		return nil, err
	}
	if size > MaxSnapshotBytes {
		return nil, fmt.Errorf("snapshot %s: the directory holds more than the %d MiB a code snapshot may hold; move data out of the code directory or list it in .amlignore",
			dir, MaxSnapshotBytes>>20)
	}
	if len(entries) > MaxSnapshotEntries {
		return nil, fmt.Errorf("snapshot %s: the directory holds more than the %d files and directories a code snapshot may hold; move data out of the code directory or list it in .amlignore",
			dir, MaxSnapshotEntries)
	}
	pr, pw := io.Pipe()
	done := make(chan error, 1)
	go func() {
		err := writeSnapshot(pw, entries)
		pw.CloseWithError(err)
		done <- err
	}()
	res, err := w.send(ctx, http.MethodPost, w.workspacePath(w.cfg.WorkspaceName)+"/snapshots", "application/x-tar", pr)
	// The transport may close the body after send returns, or never read
	// it all when the server answers early: stop the writer either way.
	pr.CloseWithError(errUploadEnded)
	werr := <-done
	if errors.Is(werr, errUploadEnded) || errors.Is(werr, io.ErrClosedPipe) {
		werr = nil
	}
	if err == nil {
		defer res.Body.Close()
	}
	if werr != nil {
		// A local read error also breaks the request: report the cause.
		return nil, fmt.Errorf("snapshot %s: %w", dir, werr)
	}
	if err != nil {
		return nil, err
	}
	var out api.Snapshot
	if err := decodeJSON(res, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// snapshotEntries lists what UploadSnapshot puts in a snapshot of dir, in
// a stable order, and the size of their tar stream.
func snapshotEntries(dir string) ([]snapshotEntry, int64, error) {
	root, err := filepath.Abs(dir)
	if err != nil {
		return nil, 0, fmt.Errorf("snapshot %s: %w", dir, err)
	}
	fi, err := os.Stat(root)
	if err != nil {
		return nil, 0, fmt.Errorf("snapshot: %w", err)
	}
	if !fi.IsDir() {
		return nil, 0, fmt.Errorf("snapshot: %s is not a directory", dir)
	}
	// Walk, and judge links against, the real path of root, which may
	// itself be or sit behind a link.
	if root, err = filepath.EvalSymlinks(root); err != nil {
		return nil, 0, fmt.Errorf("snapshot %s: %w", dir, err)
	}
	rules, err := readIgnore(root)
	if err != nil {
		return nil, 0, fmt.Errorf("snapshot %s: %w", dir, err)
	}
	var entries []snapshotEntry
	var size int64 = 1024 // the two zero blocks that end a tar stream
	err = filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if path == root {
			return nil
		}
		rel, err := filepath.Rel(root, path)
		if err != nil {
			return err
		}
		name := filepath.ToSlash(rel)
		if excluded(rules, name, d.IsDir()) {
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		if len(name) > maxSnapshotName {
			return fmt.Errorf("%s: path longer than %d bytes", name, maxSnapshotName)
		}
		var e snapshotEntry
		switch t := d.Type(); {
		case t.IsDir():
			info, err := d.Info()
			if err != nil {
				return err
			}
			e = snapshotEntry{name: name + "/", path: path, info: info}
		case t.IsRegular():
			info, err := d.Info()
			if err != nil {
				return err
			}
			e = snapshotEntry{name: name, path: path, info: info}
		case t&fs.ModeSymlink != 0:
			target, err := filepath.EvalSymlinks(path)
			if err != nil {
				return nil // dangling
			}
			r, err := filepath.Rel(root, target)
			if err != nil || !filepath.IsLocal(r) {
				return nil // points outside dir
			}
			info, err := os.Stat(target)
			if err != nil || !info.Mode().IsRegular() {
				return nil // a directory (could loop) or something odd
			}
			if excludedPath(rules, filepath.ToSlash(r)) {
				return nil // points to something left out, such as .kumo/config.json
			}
			e = snapshotEntry{name: name, path: target, info: info}
		default:
			return nil
		}
		entries = append(entries, e)
		size += e.tarSize()
		if size > MaxSnapshotBytes || len(entries) > MaxSnapshotEntries {
			return errSnapshotTooBig
		}
		return nil
	})
	if errors.Is(err, errSnapshotTooBig) {
		return entries, size, nil
	}
	if err != nil {
		return nil, 0, fmt.Errorf("snapshot %s: %w", dir, err)
	}
	sort.Slice(entries, func(i, j int) bool { return entries[i].name < entries[j].name })
	return entries, size, nil
}

// readIgnore reads root's .amlignore, or else its .gitignore, as AML does;
// no file means no rules.
func readIgnore(root string) (ignoreRules, error) {
	for _, name := range []string{".amlignore", ".gitignore"} {
		b, err := os.ReadFile(filepath.Join(root, name))
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, err
		}
		return parseIgnore(string(b)), nil
	}
	return nil, nil
}

// excluded reports whether the entry name (slash-separated, relative to
// the snapshot's root) is left out: one of excludedNames, or ignored by
// rules. The walk does not enter a left-out directory.
func excluded(rules ignoreRules, name string, isDir bool) bool {
	return excludedNames[path.Base(name)] || rules.ignored(name, isDir)
}

// excludedPath reports whether the file name, or any directory above it,
// is left out.
func excludedPath(rules ignoreRules, name string) bool {
	parts := strings.Split(name, "/")
	for i := range parts {
		if excluded(rules, strings.Join(parts[:i+1], "/"), i < len(parts)-1) {
			return true
		}
	}
	return false
}

// errUploadEnded stops the tar writer of an upload whose request is over.
var errUploadEnded = errors.New("upload ended")

// errSnapshotTooBig stops the walk of a directory over MaxSnapshotBytes.
var errSnapshotTooBig = errors.New("snapshot too big")

// writeSnapshot writes entries to w as a tar stream.
func writeSnapshot(w io.Writer, entries []snapshotEntry) error {
	tw := tar.NewWriter(w)
	for _, e := range entries {
		hdr := &tar.Header{
			Name:    e.name,
			Mode:    int64(e.info.Mode().Perm()),
			ModTime: e.info.ModTime(),
		}
		if strings.HasSuffix(e.name, "/") {
			hdr.Typeflag = tar.TypeDir
			if err := tw.WriteHeader(hdr); err != nil {
				return err
			}
			continue
		}
		hdr.Typeflag = tar.TypeReg
		hdr.Size = e.info.Size()
		if err := tw.WriteHeader(hdr); err != nil {
			return err
		}
		if err := copyFile(tw, e); err != nil {
			return err
		}
	}
	return tw.Close()
}

// copyFile writes e's content, exactly the size listed, to w.
func copyFile(w io.Writer, e snapshotEntry) error {
	f, err := os.Open(e.path)
	if err != nil {
		return err
	}
	defer f.Close()
	n, err := io.CopyN(w, f, e.info.Size())
	if err == io.EOF {
		return fmt.Errorf("%s shrank to %d bytes while being read", e.name, n)
	}
	return err
}

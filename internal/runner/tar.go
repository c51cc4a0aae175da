package runner

import (
	"archive/tar"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"strings"
)

// ErrUnsafeEntry is wrapped by [ExtractTar]'s error when an entry would
// escape the target directory.
var ErrUnsafeEntry = errors.New("unsafe tar entry")

// ExtractTar extracts the tar stream r into dir, which must exist. It accepts
// directories, regular files, symbolic links and hard links. It refuses, with
// an error wrapping [ErrUnsafeEntry], any entry whose name is absolute or has
// a ".." element, any symbolic link whose target is absolute or leaves dir,
// and any hard link to a name that is not safe; other entry types (devices,
// FIFOs) are refused too. Extraction stops at the first refused entry:
// earlier, safe entries stay. All writes go through an [os.Root], so even a
// chain of links cannot reach outside dir. Set-user-ID, set-group-ID and
// sticky bits are dropped.
func ExtractTar(dir string, r io.Reader) error {
	root, err := os.OpenRoot(dir)
	if err != nil {
		return fmt.Errorf("extract code: %w", err)
	}
	defer root.Close()
	tr := tar.NewReader(r)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return fmt.Errorf("extract code: %w", err)
		}
		if err := extractEntry(root, tr, h); err != nil {
			return fmt.Errorf("extract code: %s: %w", h.Name, err)
		}
	}
}

func extractEntry(root *os.Root, tr *tar.Reader, h *tar.Header) error {
	if h.Typeflag == tar.TypeXGlobalHeader {
		return nil
	}
	name, err := safeName(h.Name)
	if err != nil {
		return err
	}
	mode := os.FileMode(h.Mode).Perm()
	switch h.Typeflag {
	case tar.TypeDir:
		if name == "." {
			return nil
		}
		return root.MkdirAll(name, mode|0o700)
	case tar.TypeReg:
		if err := mkParent(root, name); err != nil {
			return err
		}
		f, err := root.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, mode)
		if err != nil {
			return err
		}
		_, err = io.Copy(f, tr)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		return err
	case tar.TypeSymlink:
		if path.IsAbs(h.Linkname) {
			return fmt.Errorf("%w: symlink to absolute path %q", ErrUnsafeEntry, h.Linkname)
		}
		if t := path.Join(path.Dir(name), h.Linkname); t == ".." || strings.HasPrefix(t, "../") {
			return fmt.Errorf("%w: symlink %q points outside the directory", ErrUnsafeEntry, h.Linkname)
		}
		if err := mkParent(root, name); err != nil {
			return err
		}
		return root.Symlink(h.Linkname, name)
	case tar.TypeLink:
		target, err := safeName(h.Linkname)
		if err != nil {
			return fmt.Errorf("hard link target: %w", err)
		}
		if err := mkParent(root, name); err != nil {
			return err
		}
		return root.Link(target, name)
	default:
		return fmt.Errorf("%w: unsupported type %q", ErrUnsafeEntry, h.Typeflag)
	}
}

// safeName checks a tar entry name and returns it cleaned.
func safeName(name string) (string, error) {
	if name == "" {
		return "", fmt.Errorf("%w: empty name", ErrUnsafeEntry)
	}
	if path.IsAbs(name) || strings.HasPrefix(name, `\`) {
		return "", fmt.Errorf("%w: absolute path", ErrUnsafeEntry)
	}
	for _, el := range strings.Split(name, "/") {
		if el == ".." {
			return "", fmt.Errorf("%w: path with \"..\"", ErrUnsafeEntry)
		}
	}
	return path.Clean(name), nil
}

func mkParent(root *os.Root, name string) error {
	if d := path.Dir(name); d != "." {
		return root.MkdirAll(d, 0o755)
	}
	return nil
}

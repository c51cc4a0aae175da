package client

import (
	"archive/tar"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path"
	"path/filepath"
	"strings"
)

// Download fetches the job's artifacts (the files it wrote to outputs/ and
// logs/, and its user_logs/ with std_log.txt) and writes them under dir,
// creating dir if needed, like "az ml job download --all". Paths keep
// their layout relative to the job's directory, such as
// dir/outputs/model.pt. Existing files of the same name are overwritten.
//
// Download refuses, with an error and before writing it, any entry whose
// path is absolute or climbs out of dir; it writes through os.Root, so
// links already inside dir cannot lead outside either. Link and device
// entries are skipped. Files written before a refused entry are kept.
func (j *Job) Download(ctx context.Context, dir string) error {
	res, err := j.ws.send(ctx, http.MethodGet, j.ws.jobPath(j.name)+"/artifacts", "", nil)
	if err != nil {
		return markNotFound(err, ErrJobNotFound)
	}
	defer res.Body.Close()
	if err := extractTar(res.Body, dir); err != nil {
		return fmt.Errorf("download job %s: %w", j.name, err)
	}
	return nil
}

// extractTar writes the regular files and directories of the tar stream r
// under dir.
func extractTar(r io.Reader, dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		return err
	}
	defer root.Close()
	tr := tar.NewReader(r)
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return fmt.Errorf("read artifacts: %w", err)
		}
		name, err := localName(hdr.Name)
		if err != nil {
			return err
		}
		if name == "." {
			continue
		}
		switch hdr.Typeflag {
		case tar.TypeDir:
			if err := root.MkdirAll(name, 0o755); err != nil {
				return err
			}
		case tar.TypeReg:
			if d := filepath.Dir(name); d != "." {
				if err := root.MkdirAll(d, 0o755); err != nil {
					return err
				}
			}
			if err := writeEntry(root, name, hdr, tr); err != nil {
				return err
			}
		}
	}
}

// localName turns a tar entry name into a local relative path, refusing
// names that are absolute or climb out of the extraction directory.
func localName(name string) (string, error) {
	clean := path.Clean(strings.TrimSuffix(name, "/"))
	if name == "" || path.IsAbs(name) || !filepath.IsLocal(filepath.FromSlash(clean)) {
		return "", fmt.Errorf("artifact %q: refusing a path outside the download directory", name)
	}
	for _, seg := range strings.Split(name, "/") {
		if seg == ".." {
			return "", fmt.Errorf("artifact %q: refusing a path outside the download directory", name)
		}
	}
	return filepath.FromSlash(clean), nil
}

// writeEntry writes the content of the current entry of tr to name in
// root.
func writeEntry(root *os.Root, name string, hdr *tar.Header, tr io.Reader) error {
	perm := os.FileMode(hdr.Mode).Perm() | 0o600
	f, err := root.OpenFile(name, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, perm)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, tr); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", name, err)
	}
	return f.Close()
}

package agent

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"kumo/internal/agentproto"
)

// artifactDirs are the job directory's subdirectories uploaded as artifacts.
var artifactDirs = []string{"outputs", "logs"}

// permanentError is an upload the server refused; retrying will not help.
type permanentError struct{ err error }

func (e *permanentError) Error() string { return e.err.Error() }
func (e *permanentError) Unwrap() error { return e.err }

// fetchSnapshot downloads a code snapshot; the caller closes the body.
func (a *agent) fetchSnapshot(ctx context.Context, id string) (io.ReadCloser, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, a.base+agentproto.SnapshotPath+id, nil)
	if err != nil {
		return nil, fmt.Errorf("download code snapshot: %w", err)
	}
	a.authorize(req, nil)
	resp, err := a.client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("download code snapshot: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("download code snapshot %s: %s: %s", id, resp.Status, errorDetail(resp))
	}
	return resp.Body, nil
}

// uploadArtifacts uploads the job's artifacts, retrying with backoff until
// the server takes them, refuses them (a *permanentError) or the agent
// stops.
func (a *agent) uploadArtifacts(j *job) error {
	backoff := a.cfg.ReconnectMin
	for {
		err := a.putArtifacts(j)
		if err == nil || errors.As(err, new(*permanentError)) {
			return err
		}
		wait := backoff/2 + rand.N(backoff/2+1)
		a.log.Warn("agent: uploading artifacts; retrying", "runId", j.id, "err", err, "in", wait)
		t := time.NewTimer(wait)
		select {
		case <-a.stopping:
			t.Stop()
			return err
		case <-t.C:
		}
		backoff = min(2*backoff, a.cfg.ReconnectMax)
	}
}

// putArtifacts makes one upload: a tar of outputs/ and logs/, streamed.
func (a *agent) putArtifacts(j *job) error {
	pr, pw := io.Pipe()
	wrote := make(chan error, 1)
	go func() {
		err := writeArtifacts(pw, j.dir)
		pw.CloseWithError(err)
		wrote <- err
	}()
	// Uploads go on while the agent stops after Shutdown, and end with
	// Run's context.
	target := a.base + agentproto.ArtifactsPath + j.id + "/artifacts?" + agentproto.AttemptQuery + "=" + strconv.Itoa(j.spec.Attempt)
	req, err := http.NewRequestWithContext(a.runCtx, http.MethodPut, target, pr)
	if err != nil {
		pr.Close()
		<-wrote
		return &permanentError{fmt.Errorf("upload artifacts: %w", err)}
	}
	req.Header.Set("Content-Type", "application/x-tar")
	a.authorize(req, nil)
	resp, err := a.client.Do(req)
	pr.CloseWithError(errors.New("upload ended"))
	werr := <-wrote
	if err != nil {
		return fmt.Errorf("upload artifacts: %w", err)
	}
	if resp.StatusCode/100 == 2 {
		resp.Body.Close()
		return nil
	}
	err = fmt.Errorf("upload artifacts: %s: %s", resp.Status, errorDetail(resp))
	if werr != nil {
		err = fmt.Errorf("%w (reading files: %v)", err, werr)
	}
	if resp.StatusCode/100 == 4 && resp.StatusCode != http.StatusRequestTimeout && resp.StatusCode != http.StatusTooManyRequests {
		return &permanentError{err}
	}
	return err
}

// writeArtifacts writes a tar of dir's artifact directories to w, with
// names relative to dir (outputs/x.txt). It includes directories, regular
// files and symbolic links, and skips anything else.
func writeArtifacts(w io.Writer, dir string) error {
	tw := tar.NewWriter(w)
	for _, sub := range artifactDirs {
		err := filepath.WalkDir(filepath.Join(dir, sub), func(name string, d fs.DirEntry, err error) error {
			if errors.Is(err, fs.ErrNotExist) && name == filepath.Join(dir, sub) {
				return fs.SkipDir
			}
			if err != nil {
				return err
			}
			rel, err := filepath.Rel(dir, name)
			if err != nil {
				return err
			}
			return addTarEntry(tw, name, filepath.ToSlash(rel), d)
		})
		if err != nil {
			return fmt.Errorf("tar artifacts: %w", err)
		}
	}
	if err := tw.Close(); err != nil {
		return fmt.Errorf("tar artifacts: %w", err)
	}
	return nil
}

func addTarEntry(tw *tar.Writer, name, rel string, d fs.DirEntry) error {
	info, err := d.Info()
	if err != nil {
		return err
	}
	link := ""
	switch {
	case info.Mode().IsRegular(), info.IsDir():
	case info.Mode()&fs.ModeSymlink != 0:
		if link, err = os.Readlink(name); err != nil {
			return err
		}
	default:
		return nil
	}
	h, err := tar.FileInfoHeader(info, link)
	if err != nil {
		return err
	}
	h.Name = rel
	if info.IsDir() {
		h.Name += "/"
	}
	h.Uname, h.Gname = "", ""
	if err := tw.WriteHeader(h); err != nil {
		return err
	}
	if !info.Mode().IsRegular() {
		return nil
	}
	f, err := os.Open(name)
	if err != nil {
		return err
	}
	defer f.Close()
	// A file still growing is cut at its size in the header.
	_, err = io.Copy(tw, io.LimitReader(f, h.Size))
	return err
}

// hasFiles reports whether the tree at dir holds anything but directories.
func hasFiles(dir string) bool {
	found := false
	filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err != nil {
			return nil
		}
		if !d.IsDir() {
			found = true
			return fs.SkipAll
		}
		return nil
	})
	return found
}

// fileTime returns name's modification time, or now.
func fileTime(name string) time.Time {
	if fi, err := os.Stat(name); err == nil {
		return fi.ModTime()
	}
	return time.Now()
}

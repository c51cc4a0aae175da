package agent

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"time"

	"kumo/internal/agentproto"
	"kumo/internal/archive"
	"kumo/internal/model"
)

// artifactDirs are the job directory's subdirectories uploaded as artifacts.
var artifactDirs = []string{"outputs", "logs"}

// permanentError is an upload the server refused; retrying will not help.
type permanentError struct{ err error }

func (e *permanentError) Error() string { return e.err.Error() }
func (e *permanentError) Unwrap() error { return e.err }

// fetchSnapshot downloads a code snapshot; the caller closes the body.
func (a *agent) fetchSnapshot(ctx context.Context, id string) (io.ReadCloser, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, a.target().base+agentproto.SnapshotPath+id, nil)
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

// putArtifacts makes one upload: a tar of outputs/ and logs/, streamed,
// written with kumo's one archive writer. What the writer leaves out (a
// link pointing outside the job's directory) goes in the request's
// agentproto.WarningsTrailer, for the server to record on the job.
func (a *agent) putArtifacts(j *job) error {
	pr, pw := io.Pipe()
	trailer := http.Header{agentproto.WarningsTrailer: nil}
	wrote := make(chan error, 1)
	go func() {
		warnings, err := archive.Write(pw, j.dir, j.uploadDirs()...)
		if len(warnings) > 0 {
			a.log.Warn("agent: artifacts left out", "runId", j.id, "warnings", warnings)
		}
		// Set before the body ends, as net/http asks.
		trailer[agentproto.WarningsTrailer] = warnings
		pw.CloseWithError(err)
		wrote <- err
	}()
	// Uploads go on while the agent stops after Shutdown, and end with
	// Run's context.
	target := a.target().base + agentproto.ArtifactsPath + j.id + "/artifacts?" + agentproto.AttemptQuery + "=" + strconv.Itoa(j.spec.Attempt)
	req, err := http.NewRequestWithContext(a.runCtx, http.MethodPut, target, pr)
	if err != nil {
		pr.Close()
		<-wrote
		return &permanentError{fmt.Errorf("upload artifacts: %w", err)}
	}
	req.Header.Set("Content-Type", "application/x-tar")
	req.Trailer = trailer
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

// checkpoint returns the job's checkpoint directory relative to its
// directory (see model.CheckpointDir), or "".
func (j *job) checkpoint() string {
	c, err := model.CheckpointDir(j.spec.Env)
	if err != nil {
		return ""
	}
	return c
}

// uploadDirs are the job directory's subdirectories uploaded when it ends:
// outputs/, logs/, its checkpoint directory, and, for a distributed job,
// user_logs/ with its per-process logs (see gang.go).
func (j *job) uploadDirs() []string {
	dirs := artifactDirs
	if c := j.checkpoint(); c != "" {
		dirs = append(slices.Clone(dirs), c)
	}
	if j.spec.Gang != nil {
		dirs = append(slices.Clone(dirs), "user_logs")
	}
	return dirs
}

// restoreCheckpoint puts the checkpoint the job's earlier attempt left
// into the job's directory, before the process starts. A job without a
// checkpoint directory, or with none saved yet, gets an empty directory.
func (a *agent) restoreCheckpoint(ctx context.Context, j *job) error {
	c := j.checkpoint()
	if c == "" {
		return nil
	}
	if err := os.MkdirAll(filepath.Join(j.dir, c), 0o700); err != nil {
		return fmt.Errorf("restore checkpoint: %w", err)
	}
	if j.spec.Attempt <= 1 {
		return nil
	}
	var err error
	for try := range 3 {
		if try > 0 {
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(time.Duration(try) * time.Second):
			}
		}
		if err = a.fetchCheckpoint(ctx, j); err == nil {
			return nil
		}
		a.log.Warn("agent: fetching checkpoint", "runId", j.id, "err", err)
	}
	return err
}

func (a *agent) fetchCheckpoint(ctx context.Context, j *job) error {
	target := a.target().base + agentproto.ArtifactsPath + j.id + "/checkpoint?" + agentproto.AttemptQuery + "=" + strconv.Itoa(j.spec.Attempt)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, target, nil)
	if err != nil {
		return fmt.Errorf("restore checkpoint: %w", err)
	}
	a.authorize(req, nil)
	resp, err := a.client.Do(req)
	if err != nil {
		return fmt.Errorf("restore checkpoint: %w", err)
	}
	defer resp.Body.Close()
	switch resp.StatusCode {
	case http.StatusNoContent:
		return nil
	case http.StatusOK:
	default:
		return fmt.Errorf("restore checkpoint: %s: %s", resp.Status, errorDetail(resp))
	}
	if _, err := archive.Extract(j.dir, resp.Body, archive.ArtifactLimits); err != nil {
		return fmt.Errorf("restore checkpoint: %w", err)
	}
	return nil
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

// Package jobfiles keeps the files of jobs on the control plane's disk: each
// job's output streams (appended by byte offset, so a chunk resent after a
// reconnect is written once), its collected artifacts (outputs/, logs/), and
// uploaded code snapshots. Readers can follow a job's output as it grows.
//
// Layout under the root directory:
//
//	jobs/<runID>/user_logs/stdout.txt   stdout, byte for byte
//	jobs/<runID>/user_logs/stderr.txt   stderr, byte for byte
//	jobs/<runID>/std_log.idx            the order in which they arrived: std_log
//	                                    (AML's user_logs/std_log.txt) is read
//	                                    through it, so output is stored once
//	jobs/<runID>/outputs/, logs/        artifacts uploaded at the job's end
//	jobs/<runID>/attempts/<N>/          user_logs/, outputs/, logs/ of an earlier attempt N
//	jobs/<runID>/checkpoint/<dir>/      the job's checkpoint directory, as the latest attempt left it
//	snapshots/<id>.tar                  uploaded code
//
// A job's output is bounded: once its log reaches the log limit
// ([Files.SetLogLimit]), the chunk that passes it is cut there, one line
// saying where and why ends the cut stream and std_log, and later output is
// dropped.
package jobfiles

import (
	"archive/tar"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"

	"kumo/internal/archive"
	"kumo/internal/runner"
)

// Streams a job writes.
const (
	Stdout = "stdout"
	Stderr = "stderr"
	StdLog = "std_log" // stdout and stderr interleaved
)

var idRE = regexp.MustCompile(`^[A-Za-z0-9_-]{1,128}$`)

// Files is the job file store. Its methods are safe for concurrent use.
type Files struct {
	root  string
	limit int64 // bytes of stdout and stderr together per job; <= 0 means none

	snapLim archive.Limits // limits of an uploaded snapshot
	artLim  archive.Limits // limits of a job's artifacts

	mu      sync.Mutex
	open    map[string]*jobLog // runID -> open log files of jobs being written
	changed map[string]chan struct{}
}

// New returns the file store rooted at dir, creating it.
func New(dir string) (*Files, error) {
	for _, d := range []string{dir, filepath.Join(dir, "jobs"), filepath.Join(dir, "snapshots")} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, fmt.Errorf("create %s: %w", d, err)
		}
	}
	return &Files{root: dir, limit: DefaultLogLimit, snapLim: archive.DefaultLimits, artLim: archive.ArtifactLimits,
		open: map[string]*jobLog{}, changed: map[string]chan struct{}{}}, nil
}

// JobDir returns the directory of a job's files.
func (f *Files) JobDir(runID string) (string, error) {
	if !idRE.MatchString(runID) {
		return "", fmt.Errorf("invalid run ID %q", runID)
	}
	return filepath.Join(f.root, "jobs", runID), nil
}

// Close closes a job's open log files (once it is finished) and wakes its
// followers so they see the end.
func (f *Files) Close(runID string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if l, ok := f.open[runID]; ok {
		l.close()
		delete(f.open, runID)
	}
	f.wakeLocked(runID)
}

func (f *Files) wakeLocked(runID string) {
	if ch, ok := f.changed[runID]; ok {
		close(ch)
		delete(f.changed, runID)
	}
}

// Changed returns a channel closed the next time the job's logs grow or
// the job's files are closed.
func (f *Files) Changed(runID string) <-chan struct{} {
	f.mu.Lock()
	defer f.mu.Unlock()
	ch, ok := f.changed[runID]
	if !ok {
		ch = make(chan struct{})
		f.changed[runID] = ch
	}
	return ch
}

// artifactDirs are the top-level directories of a job's artifacts; an
// artifacts tar's other entries are dropped.
var artifactDirs = []string{"outputs", "logs"}

// SetLimits sets the limits of uploaded snapshots and of artifacts; a zero
// field means archive.DefaultLimits' for snapshots and
// archive.ArtifactLimits' for artifacts. Call it before the store is used.
func (f *Files) SetLimits(snapshots, artifacts archive.Limits) {
	f.snapLim = orLimits(snapshots, archive.DefaultLimits)
	f.artLim = orLimits(artifacts, archive.ArtifactLimits)
}

// SnapshotLimits returns the limits of an uploaded snapshot.
func (f *Files) SnapshotLimits() archive.Limits { return f.snapLim }

// ArtifactLimits returns the limits of a job's artifacts.
func (f *Files) ArtifactLimits() archive.Limits { return f.artLim }

func orLimits(l, def archive.Limits) archive.Limits {
	if l.MaxBytes <= 0 {
		l.MaxBytes = def.MaxBytes
	}
	if l.MaxEntries <= 0 {
		l.MaxEntries = def.MaxEntries
	}
	if l.MaxEntryBytes <= 0 {
		l.MaxEntryBytes = l.MaxBytes // one file may take it all
	}
	if l.MaxNameBytes <= 0 {
		l.MaxNameBytes = def.MaxNameBytes
	}
	return l
}

// extractStaged extracts an uploaded tar into a new staging directory in
// runID's job directory, within the artifact limits, and returns both; the
// caller moves what it keeps into place and removes stage. Extracting aside
// means a refused or broken upload leaves the job's files as they were.
func (f *Files) extractStaged(runID string, r io.Reader) (dir, stage string, err error) {
	if dir, err = f.JobDir(runID); err != nil {
		return "", "", err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", "", fmt.Errorf("create job dir: %w", err)
	}
	if stage, err = os.MkdirTemp(dir, ".artifacts-*"); err != nil {
		return "", "", err
	}
	if _, err := archive.Extract(stage, r, f.artLim); err != nil {
		os.RemoveAll(stage)
		return "", "", err
	}
	return dir, stage, nil
}

// SaveArtifacts stores an artifacts tar as the job's outputs/ and logs/,
// replacing what an earlier upload of the same job stored; other entries
// are dropped. The tar is read with kumo's one archive reader under the
// artifact limits: an error wrapping archive.ErrUnsafe or
// archive.ErrMalformed, or an *archive.LimitError, means the tar was
// refused, and then nothing is stored or changed.
//
// checkpoint, when not "", is the job's checkpoint directory (see
// model.CheckpointDir): the tar's entries under it are kept apart, under
// checkpoint/, replacing the previous attempt's, and outlive attempts.
func (f *Files) SaveArtifacts(runID string, r io.Reader, checkpoint string) error {
	dir, stage, err := f.extractStaged(runID, r)
	if err != nil {
		return fmt.Errorf("save artifacts: %w", err)
	}
	defer os.RemoveAll(stage)
	for _, sub := range artifactDirs {
		from := filepath.Join(stage, sub)
		fi, err := os.Lstat(from)
		if errors.Is(err, fs.ErrNotExist) || (err == nil && !fi.IsDir()) {
			continue
		}
		if err != nil {
			return fmt.Errorf("save artifacts: %w", err)
		}
		to := filepath.Join(dir, sub)
		if err := os.RemoveAll(to); err != nil {
			return fmt.Errorf("save artifacts: %w", err)
		}
		if err := os.Rename(from, to); err != nil {
			return fmt.Errorf("save artifacts: %w", err)
		}
	}
	if err := mergeProcessLogs(stage, dir); err != nil {
		return err
	}
	if checkpoint == "" || !filepath.IsLocal(checkpoint) {
		return nil
	}
	from := filepath.Join(stage, checkpoint)
	if fi, err := os.Lstat(from); err != nil || !fi.IsDir() {
		return nil // the job left no checkpoint this time: keep the last one
	}
	ck := filepath.Join(dir, checkpointDir)
	if err := os.RemoveAll(ck); err != nil {
		return fmt.Errorf("save checkpoint: %w", err)
	}
	to := filepath.Join(ck, checkpoint)
	if err := os.MkdirAll(filepath.Dir(to), 0o700); err != nil {
		return fmt.Errorf("save checkpoint: %w", err)
	}
	if err := os.Rename(from, to); err != nil {
		return fmt.Errorf("save checkpoint: %w", err)
	}
	return nil
}

// SaveProcessLogs stores, from an artifacts tar of one node of a
// multi-node job other than its first, only its per-process logs
// (user_logs/std_log_node_<r>_process_<p>.txt), beside those of the
// job's other nodes. The tar is checked as in SaveArtifacts.
func (f *Files) SaveProcessLogs(runID string, r io.Reader) error {
	dir, stage, err := f.extractStaged(runID, r)
	if err != nil {
		return fmt.Errorf("save process logs: %w", err)
	}
	defer os.RemoveAll(stage)
	return mergeProcessLogs(stage, dir)
}

// mergeProcessLogs moves the per-process logs of an extracted upload in
// stage into the job directory dir's user_logs/, replacing only files of
// the same name, so that every node's land side by side.
func mergeProcessLogs(stage, dir string) error {
	es, err := os.ReadDir(filepath.Join(stage, "user_logs"))
	if err != nil {
		return nil // none uploaded
	}
	for _, e := range es {
		name := e.Name()
		if !e.Type().IsRegular() || !strings.HasPrefix(name, "std_log_node_") || !strings.HasSuffix(name, ".txt") {
			continue
		}
		if err := os.MkdirAll(filepath.Join(dir, "user_logs"), 0o700); err != nil {
			return fmt.Errorf("save process logs: %w", err)
		}
		if err := os.Rename(filepath.Join(stage, "user_logs", name), filepath.Join(dir, "user_logs", name)); err != nil {
			return fmt.Errorf("save process logs: %w", err)
		}
	}
	return nil
}

// checkpointDir is where, in a job's directory, its checkpoint is kept.
const checkpointDir = "checkpoint"

// WriteCheckpoint writes a tar of the job's saved checkpoint directory
// (named checkpoint, as in SaveArtifacts; entries under that name) to w,
// and reports false, writing nothing, when none was saved.
func (f *Files) WriteCheckpoint(runID, checkpoint string, w io.Writer) (bool, error) {
	dir, err := f.JobDir(runID)
	if err != nil {
		return false, err
	}
	if !filepath.IsLocal(checkpoint) {
		return false, fmt.Errorf("checkpoint %q is not a local path", checkpoint)
	}
	ck := filepath.Join(dir, checkpointDir)
	if fi, err := os.Lstat(filepath.Join(ck, checkpoint)); err != nil || !fi.IsDir() {
		return false, nil
	}
	if _, err := archive.Write(w, ck, checkpoint); err != nil {
		return true, fmt.Errorf("write checkpoint: %w", err)
	}
	return true, nil
}

// StartAttempt makes room for attempt n (2 or more) of a job: the output
// streams (with std_log written out in full), outputs/ and logs/ of attempt
// n-1 move to attempts/<n-1>/, where they stay readable, and the streams
// start again from offset 0. It is idempotent: when attempts/<n-1> exists,
// nothing moves. Attempt 1 needs nothing.
func (f *Files) StartAttempt(runID string, n int) error {
	if n <= 1 {
		return nil
	}
	dir, err := f.JobDir(runID)
	if err != nil {
		return err
	}
	to := filepath.Join(dir, "attempts", strconv.Itoa(n-1))
	if _, err := os.Lstat(to); err == nil {
		return nil
	}
	stage := to + ".tmp"
	if err := os.RemoveAll(stage); err != nil {
		return fmt.Errorf("start attempt %d: %w", n, err)
	}
	if err := os.MkdirAll(stage, 0o700); err != nil {
		return fmt.Errorf("start attempt %d: %w", n, err)
	}
	// std_log is read through the index, which stays with the new attempt's
	// streams: write the old attempt's out while the index is in place. No
	// output of it comes any more (the job is assigned anew).
	stdLog := filepath.Join(stage, "std_log.txt")
	if v, ok, err := f.stdLogView(runID, dir); err != nil {
		return fmt.Errorf("start attempt %d: %w", n, err)
	} else if ok {
		fh, err := os.OpenFile(stdLog, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
		if err != nil {
			return fmt.Errorf("start attempt %d: %w", n, err)
		}
		_, err = v.copy(dir, 0, fh)
		if err = errors.Join(err, fh.Close()); err != nil {
			return fmt.Errorf("start attempt %d: %w", n, err)
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if l, ok := f.open[runID]; ok {
		l.close()
		delete(f.open, runID)
	}
	for _, sub := range []string{"user_logs", "outputs", "logs"} {
		err := os.Rename(filepath.Join(dir, sub), filepath.Join(stage, sub))
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("start attempt %d: %w", n, err)
		}
	}
	if _, err := os.Stat(stdLog); err == nil {
		if err := os.MkdirAll(filepath.Join(stage, "user_logs"), 0o700); err != nil {
			return fmt.Errorf("start attempt %d: %w", n, err)
		}
		if err := os.Rename(stdLog, filepath.Join(stage, runner.StdLogFile)); err != nil {
			return fmt.Errorf("start attempt %d: %w", n, err)
		}
	}
	if err := os.Remove(filepath.Join(dir, stdLogIndex)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("start attempt %d: %w", n, err)
	}
	if err := os.Rename(stage, to); err != nil {
		return fmt.Errorf("start attempt %d: %w", n, err)
	}
	f.wakeLocked(runID)
	return nil
}

// WriteArtifacts writes a tar of the job's outputs/, logs/ and user_logs/,
// and those of earlier attempts (attempts/), to w, with kumo's one archive
// writer.
func (f *Files) WriteArtifacts(runID string, w io.Writer) error {
	dir, err := f.JobDir(runID)
	if err != nil {
		return err
	}
	if _, err := os.Stat(dir); errors.Is(err, fs.ErrNotExist) {
		return tar.NewWriter(w).Close()
	}
	// std_log.txt is not on disk: it follows user_logs/, read through the
	// index, in a second tar written where the first one's end marker was.
	tw := &trailerWriter{w: w}
	if _, err := archive.Write(tw, dir, "outputs", "logs", "user_logs", "attempts"); err != nil {
		return fmt.Errorf("write artifacts: %w", err)
	}
	if err := tw.dropTrailer(); err != nil {
		return fmt.Errorf("write artifacts: %w", err)
	}
	t := tar.NewWriter(w)
	if err := f.tarStdLog(t, runID, dir); err != nil {
		return fmt.Errorf("write artifacts: std_log: %w", err)
	}
	return t.Close()
}

// maxTrailing bounds what a snapshot upload may carry after the tar's end
// marker (tar tools pad to whole records of 10 KiB).
const maxTrailing = 1 << 20

// SnapshotInfo describes a stored snapshot.
type SnapshotInfo struct {
	Size  int64 // bytes of the stored tar stream
	Files int   // regular files in it
	Bytes int64 // bytes of the files' contents
}

// SaveSnapshot stores an uploaded tar under id. It checks the tar with
// kumo's one archive reader as it arrives, under the snapshot limits, and
// stops at the first problem: an error wrapping archive.ErrUnsafe or
// archive.ErrMalformed, or an *archive.LimitError (for the stream too:
// see archive.Limits.StreamBytes). A refused tar stores nothing,
// and only the stored tar is ever written: nothing is extracted.
func (f *Files) SaveSnapshot(id string, r io.Reader) (SnapshotInfo, error) {
	if !idRE.MatchString(id) {
		return SnapshotInfo{}, fmt.Errorf("invalid snapshot ID %q", id)
	}
	final := filepath.Join(f.root, "snapshots", id+".tar")
	tmp, err := os.CreateTemp(filepath.Join(f.root, "snapshots"), ".upload-*")
	if err != nil {
		return SnapshotInfo{}, fmt.Errorf("store snapshot: %w", err)
	}
	defer os.Remove(tmp.Name())
	defer tmp.Close()
	streamMax := f.snapLim.StreamBytes()
	cr := &copyReader{r: r, w: tmp, left: streamMax, max: streamMax}
	st, err := archive.Check(cr, f.snapLim)
	if cr.werr != nil {
		return SnapshotInfo{}, fmt.Errorf("store snapshot: %w", cr.werr)
	}
	if err != nil {
		return SnapshotInfo{}, err
	}
	// Take what follows the end marker, without storing it.
	cr.w, cr.left = io.Discard, min(cr.left, maxTrailing)
	if _, err := io.Copy(io.Discard, cr); err != nil {
		return SnapshotInfo{}, err
	}
	if err := tmp.Close(); err != nil {
		return SnapshotInfo{}, fmt.Errorf("store snapshot: %w", err)
	}
	if err := os.Rename(tmp.Name(), final); err != nil {
		return SnapshotInfo{}, fmt.Errorf("store snapshot: %w", err)
	}
	return SnapshotInfo{Size: cr.n - cr.trailing, Files: st.Files, Bytes: st.Bytes}, nil
}

// copyReader reads at most left bytes of r, copying them to w, and fails
// with an *archive.LimitError when r holds more.
type copyReader struct {
	r        io.Reader
	w        io.Writer
	left     int64
	max      int64
	n        int64 // bytes read
	trailing int64 // bytes read once w is io.Discard
	werr     error // w's error
}

func (c *copyReader) Read(p []byte) (int, error) {
	if c.left <= 0 {
		// One more byte tells a stream that ends here from a longer one.
		var b [1]byte
		if n, _ := io.ReadFull(c.r, b[:]); n == 0 {
			return 0, io.EOF
		}
		return 0, &archive.LimitError{Limit: archive.LimitBytes, Max: c.max}
	}
	if int64(len(p)) > c.left {
		p = p[:c.left]
	}
	n, err := c.r.Read(p)
	c.left -= int64(n)
	c.n += int64(n)
	if c.w == io.Discard {
		c.trailing += int64(n)
	} else if n > 0 {
		if _, werr := c.w.Write(p[:n]); werr != nil {
			c.werr = werr
			return n, werr
		}
	}
	return n, err
}

// OpenSnapshot opens a stored snapshot; an error wrapping fs.ErrNotExist
// when there is none.
func (f *Files) OpenSnapshot(id string) (*os.File, error) {
	if !idRE.MatchString(id) {
		return nil, fmt.Errorf("snapshot %q: %w", id, fs.ErrNotExist)
	}
	return os.Open(filepath.Join(f.root, "snapshots", id+".tar"))
}

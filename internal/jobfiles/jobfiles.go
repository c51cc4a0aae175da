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
	"sync"

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
	return &Files{root: dir, limit: DefaultLogLimit, open: map[string]*jobLog{}, changed: map[string]chan struct{}{}}, nil
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

// SaveArtifacts extracts an artifacts tar into the job's directory,
// refusing entries that would escape it.
func (f *Files) SaveArtifacts(runID string, r io.Reader) error {
	dir, err := f.JobDir(runID)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("create job dir: %w", err)
	}
	if err := runner.ExtractTar(dir, r); err != nil {
		return fmt.Errorf("save artifacts: %w", err)
	}
	return nil
}

// WriteArtifacts writes a tar of the job's outputs/, logs/ and user_logs/
// to w.
func (f *Files) WriteArtifacts(runID string, w io.Writer) error {
	dir, err := f.JobDir(runID)
	if err != nil {
		return err
	}
	tw := tar.NewWriter(w)
	for _, sub := range []string{"outputs", "logs", "user_logs"} {
		base := filepath.Join(dir, sub)
		if _, err := os.Stat(base); errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err := tw.AddFS(subFS{os.DirFS(dir), sub}); err != nil {
			return fmt.Errorf("tar %s: %w", sub, err)
		}
	}
	if err := f.tarStdLog(tw, runID, dir); err != nil {
		return fmt.Errorf("tar std_log: %w", err)
	}
	return tw.Close()
}

// subFS limits an fs.FS walk to one top-level directory while keeping paths
// relative to the parent.
type subFS struct {
	fs.FS
	sub string
}

// ReadLink and Lstat pass through to the wrapped FS, so that tar.Writer.AddFS
// can add the symlinks that SaveArtifacts accepts (an embedded fs.FS hides
// them, and AddFS then fails on the first link).
func (s subFS) ReadLink(name string) (string, error) { return fs.ReadLink(s.FS, name) }

// Lstat is fs.Lstat of the wrapped FS.
func (s subFS) Lstat(name string) (fs.FileInfo, error) { return fs.Lstat(s.FS, name) }

// ReadDir lists only the chosen subdirectory at the top level.
func (s subFS) ReadDir(name string) ([]fs.DirEntry, error) {
	entries, err := fs.ReadDir(s.FS, name)
	if err != nil || name != "." {
		return entries, err
	}
	for _, e := range entries {
		if e.Name() == s.sub {
			return []fs.DirEntry{e}, nil
		}
	}
	return nil, nil
}

// MaxSnapshot bounds an uploaded code snapshot.
const MaxSnapshot = 100 << 20

// ErrTooLarge is returned for a snapshot over MaxSnapshot.
var ErrTooLarge = errors.New("snapshot is larger than 100 MiB")

// SaveSnapshot stores an uploaded tar under id after checking that every
// entry is safe to extract; an unsafe or malformed tar stores nothing.
func (f *Files) SaveSnapshot(id string, r io.Reader) (int64, error) {
	if !idRE.MatchString(id) {
		return 0, fmt.Errorf("invalid snapshot ID %q", id)
	}
	final := filepath.Join(f.root, "snapshots", id+".tar")
	tmp, err := os.CreateTemp(filepath.Join(f.root, "snapshots"), ".upload-*")
	if err != nil {
		return 0, fmt.Errorf("store snapshot: %w", err)
	}
	defer os.Remove(tmp.Name())
	defer tmp.Close()
	n, err := io.Copy(tmp, io.LimitReader(r, MaxSnapshot+1))
	if err != nil {
		return 0, fmt.Errorf("receive snapshot: %w", err)
	}
	if n > MaxSnapshot {
		return 0, ErrTooLarge
	}
	check, err := os.MkdirTemp(f.root, ".check-*")
	if err != nil {
		return 0, fmt.Errorf("check snapshot: %w", err)
	}
	defer os.RemoveAll(check)
	if _, err := tmp.Seek(0, io.SeekStart); err != nil {
		return 0, fmt.Errorf("check snapshot: %w", err)
	}
	if err := runner.ExtractTar(check, tmp); err != nil {
		return 0, err
	}
	if err := tmp.Close(); err != nil {
		return 0, fmt.Errorf("store snapshot: %w", err)
	}
	if err := os.Rename(tmp.Name(), final); err != nil {
		return 0, fmt.Errorf("store snapshot: %w", err)
	}
	return n, nil
}

// OpenSnapshot opens a stored snapshot; an error wrapping fs.ErrNotExist
// when there is none.
func (f *Files) OpenSnapshot(id string) (*os.File, error) {
	if !idRE.MatchString(id) {
		return nil, fmt.Errorf("snapshot %q: %w", id, fs.ErrNotExist)
	}
	return os.Open(filepath.Join(f.root, "snapshots", id+".tar"))
}

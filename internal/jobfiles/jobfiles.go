// Package jobfiles keeps the files of jobs on the control plane's disk: each
// job's output streams (appended by byte offset, so a chunk resent after a
// reconnect is written once), its collected artifacts (outputs/, logs/), and
// uploaded code snapshots. Readers can follow a job's output as it grows.
//
// Layout under the root directory:
//
//	jobs/<runID>/user_logs/stdout.txt   stdout, byte for byte
//	jobs/<runID>/user_logs/stderr.txt   stderr, byte for byte
//	jobs/<runID>/user_logs/std_log.txt  both, in the order they arrived
//	jobs/<runID>/outputs/, logs/        artifacts uploaded at the job's end
//	snapshots/<id>.tar                  uploaded code
//
// A job's output is bounded: once stdout and stderr together reach the log
// limit ([Files.SetLogLimit]), the chunk that passes it is cut there, one
// line saying where and why is appended to the cut stream and to std_log,
// and later output is dropped.
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

// DefaultLogLimit is the log limit of a new [Files]: bytes of stdout and
// stderr together that a job's log keeps.
const DefaultLogLimit = 256 << 20

// ErrLogCut is returned by [Files.Append] for the chunk that passed the log
// limit: the bytes before the limit and the cut line were stored, the rest
// dropped. Later chunks of the job are dropped without an error. The caller
// tells the job (for example with a warning).
var ErrLogCut = errors.New("job log cut at the log limit")

// Files is the job file store. Its methods are safe for concurrent use.
type Files struct {
	root  string
	limit int64 // bytes of stdout and stderr together per job; <= 0 means none

	mu      sync.Mutex
	open    map[string]*jobLog // runID -> open log files of jobs being written
	changed map[string]chan struct{}
}

type jobLog struct {
	files [3]*os.File // stdout, stderr, std_log
	sizes [3]int64
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

// SetLogLimit sets how many bytes of stdout and stderr together a job's log
// keeps; n <= 0 means no limit. Call it before the store is used.
func (f *Files) SetLogLimit(n int64) { f.limit = n }

// LogLimit returns the log limit set by SetLogLimit; <= 0 means none.
func (f *Files) LogLimit() int64 { return f.limit }

// CutWarning is the warning recorded on a job whose log was cut at limit
// bytes.
func CutWarning(limit int64) string {
	return "the job's output passed the log limit of " + strconv.FormatInt(limit, 10) +
		" bytes (kumo up --max-job-log-bytes): its log was cut there and later output dropped"
}

// CutLine is the line that ends a log cut at limit bytes: at byte at of the
// cut stream.
func CutLine(stream string, at, limit int64) string {
	return "[kumo] log cut: " + stream + " stopped at byte " + strconv.FormatInt(at, 10) +
		" because the job's output reached the limit of " + strconv.FormatInt(limit, 10) +
		" bytes (kumo up --max-job-log-bytes); later output was dropped\n"
}

// JobDir returns the directory of a job's files.
func (f *Files) JobDir(runID string) (string, error) {
	if !idRE.MatchString(runID) {
		return "", fmt.Errorf("invalid run ID %q", runID)
	}
	return filepath.Join(f.root, "jobs", runID), nil
}

func streamIndex(stream string) (int, error) {
	switch stream {
	case Stdout:
		return 0, nil
	case Stderr:
		return 1, nil
	case StdLog:
		return 2, nil
	}
	return 0, fmt.Errorf("unknown stream %q", stream)
}

func (f *Files) log(runID string) (*jobLog, error) {
	if l, ok := f.open[runID]; ok {
		return l, nil
	}
	dir, err := f.JobDir(runID)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(filepath.Join(dir, "user_logs"), 0o700); err != nil {
		return nil, fmt.Errorf("create job log dir: %w", err)
	}
	l := &jobLog{}
	for i, name := range []string{runner.StdoutFile, runner.StderrFile, runner.StdLogFile} {
		fh, err := os.OpenFile(filepath.Join(dir, name), os.O_CREATE|os.O_RDWR|os.O_APPEND, 0o600)
		if err != nil {
			l.close()
			return nil, fmt.Errorf("open job log: %w", err)
		}
		st, err := fh.Stat()
		if err != nil {
			fh.Close()
			l.close()
			return nil, fmt.Errorf("stat job log: %w", err)
		}
		l.files[i], l.sizes[i] = fh, st.Size()
	}
	f.open[runID] = l
	return l, nil
}

func (l *jobLog) close() {
	for _, fh := range l.files {
		if fh != nil {
			fh.Close()
		}
	}
}

// Append writes a chunk of stream (Stdout or Stderr) at offset. Bytes the
// store already holds are skipped, so a resent chunk is written once; a
// chunk that would leave a gap is refused with an error (the sender resends
// from Offsets after reconnecting). New bytes are also appended to the
// interleaved log. The chunk that passes the log limit is cut there and
// gets [ErrLogCut]; later chunks are dropped.
func (f *Files) Append(runID, stream string, offset int64, data []byte) error {
	i, err := streamIndex(stream)
	if err != nil || i == 2 {
		return fmt.Errorf("append to %q: not an output stream", stream)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	l, err := f.log(runID)
	if err != nil {
		return err
	}
	total := l.sizes[0] + l.sizes[1]
	if f.limit > 0 && total > f.limit {
		return nil // cut already: only the cut line passes the limit
	}
	size := l.sizes[i]
	if offset > size {
		return fmt.Errorf("append to %s of %s: gap at offset %d, have %d bytes", stream, runID, offset, size)
	}
	skip := size - offset
	if skip >= int64(len(data)) {
		return nil
	}
	data = data[skip:]
	cut := f.limit > 0 && total+int64(len(data)) > f.limit
	if cut {
		data = data[:f.limit-total]
	}
	for _, k := range []int{i, 2} {
		if err := l.put(k, data); err != nil {
			return fmt.Errorf("append to %s of %s: %w", stream, runID, err)
		}
	}
	if cut {
		line := CutLine(stream, l.sizes[i], f.limit)
		for _, k := range []int{i, 2} {
			if err := l.put(k, []byte(l.lineStart(k)+line)); err != nil {
				return fmt.Errorf("cut log of %s: %w", runID, err)
			}
		}
	}
	f.wakeLocked(runID)
	if cut {
		return ErrLogCut
	}
	return nil
}

// put appends data to file k.
func (l *jobLog) put(k int, data []byte) error {
	if len(data) == 0 {
		return nil
	}
	n, err := l.files[k].Write(data)
	l.sizes[k] += int64(n)
	return err
}

// lineStart is "\n" when file k does not end with a newline, so that the
// cut line starts a line of its own.
func (l *jobLog) lineStart(k int) string {
	if l.sizes[k] == 0 {
		return ""
	}
	b := make([]byte, 1)
	if _, err := l.files[k].ReadAt(b, l.sizes[k]-1); err != nil || b[0] == '\n' {
		return ""
	}
	return "\n"
}

// Offsets returns how many bytes of stdout and stderr a job has.
func (f *Files) Offsets(runID string) (stdout, stderr int64, err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	l, err := f.log(runID)
	if err != nil {
		return 0, 0, err
	}
	return l.sizes[0], l.sizes[1], nil
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

// ReadLog copies stream from offset to w, returning the new offset. A job
// with no output yet reads as empty.
func (f *Files) ReadLog(runID, stream string, offset int64, w io.Writer) (int64, error) {
	i, err := streamIndex(stream)
	if err != nil {
		return offset, err
	}
	dir, err := f.JobDir(runID)
	if err != nil {
		return offset, err
	}
	name := []string{runner.StdoutFile, runner.StderrFile, runner.StdLogFile}[i]
	fh, err := os.Open(filepath.Join(dir, name))
	if errors.Is(err, fs.ErrNotExist) {
		return offset, nil
	}
	if err != nil {
		return offset, fmt.Errorf("open log: %w", err)
	}
	defer fh.Close()
	if _, err := fh.Seek(offset, io.SeekStart); err != nil {
		return offset, fmt.Errorf("seek log: %w", err)
	}
	n, err := io.Copy(w, fh)
	return offset + n, err
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

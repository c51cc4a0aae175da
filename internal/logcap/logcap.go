// Package logcap bounds the log files a job process writes on the host
// that runs it (a node, or the control plane for compute "local").
//
// The runner ([runner.Start]) appends every chunk of a job's output to its
// stdout, stderr and std_log files before it hands the chunk to its Output
// callback. A [Cap] sees each chunk there: once stdout and stderr together
// pass the limit it cuts the files (the cut stream at the limit, std_log at
// the limit, each ending with the cut line that the control plane's log
// ends with too) and from then on truncates them back after every chunk,
// so the host's disk holds at most the limit plus one chunk. The callback
// runs while the runner writes nothing, so no write is lost or torn.
//
// Files are opened without following symbolic links: the job owns its
// directory and could replace a log file with a link to a file of kumo's.
// A job that removes its log files altogether escapes the cap on the host,
// as the runner goes on writing to the files it opened; the control plane's
// copy stays bounded.
package logcap

import (
	"errors"
	"os"
	"path/filepath"
	"syscall"

	"golang.org/x/sys/unix"

	"kumo/internal/jobfiles"
	"kumo/internal/runner"
)

// Cap bounds one job's log files. It is not safe for concurrent use; the
// runner's Output calls are never concurrent.
type Cap struct {
	dir   string // the job directory
	limit int64  // <= 0 means none

	seen   [2]int64 // bytes of stdout and stderr produced
	cut    bool
	keep   [3]int64 // once cut: sizes of the stdout, stderr and std_log files
	err    error    // the first error cutting or trimming the files
	failed bool     // err was returned
}

// New returns the Cap of the job whose directory is dir; limit is how many
// bytes of stdout and stderr together its files keep, <= 0 for no limit.
func New(dir string, limit int64) *Cap {
	return &Cap{dir: dir, limit: limit}
}

// Chunk is called from the runner's Output with each chunk, after the
// runner wrote it. It reports whether the chunk is still output to pass on:
// true up to and including the chunk that passes the limit (its receiver
// cuts it at the same byte), false after it. The first error met cutting or
// trimming the files is returned once, for the caller to log; the output
// goes on.
func (c *Cap) Chunk(ch runner.Chunk) (pass bool, err error) {
	pass = !c.cut
	if c.cut {
		c.trim()
	} else {
		i := 0
		if ch.Stream == runner.Stderr {
			i = 1
		}
		c.seen[i] = ch.Offset + int64(len(ch.Data))
		if c.limit > 0 && c.seen[0]+c.seen[1] > c.limit {
			c.cutAt(ch.Stream, i, c.limit-c.seen[1-i])
		}
	}
	if c.err != nil && !c.failed {
		c.failed = true
		return pass, c.err
	}
	return pass, nil
}

var files = [3]string{runner.StdoutFile, runner.StderrFile, runner.StdLogFile}

// cutAt ends the log: stream st (index i) keeps at bytes, the other stream
// what it has, std_log the limit; the cut stream and std_log end with the
// cut line.
func (c *Cap) cutAt(st runner.Stream, i int, at int64) {
	line := []byte(jobfiles.CutLine(string(st), at, c.limit))
	c.keep = [3]int64{c.seen[0], c.seen[1], c.limit}
	c.keep[i] = at
	for _, k := range []int{i, 2} {
		n, err := cutFile(filepath.Join(c.dir, files[k]), c.keep[k], line)
		c.fail(err)
		c.keep[k] = n
	}
	c.cut = true
	c.trim()
}

// trim truncates the files back to the sizes cutAt kept.
func (c *Cap) trim() {
	for k, name := range files {
		c.fail(truncate(filepath.Join(c.dir, name), c.keep[k]))
	}
}

func (c *Cap) fail(err error) {
	if c.err == nil && err != nil {
		c.err = err
	}
}

// cutFile truncates name to at most size bytes, appends line on a line of
// its own and returns the new size.
func cutFile(name string, size int64, line []byte) (int64, error) {
	f, err := openNoFollow(name)
	if err != nil {
		return size, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return size, err
	}
	size = min(size, fi.Size())
	if err := f.Truncate(size); err != nil {
		return size, err
	}
	b := make([]byte, 1)
	if size > 0 {
		if _, err := f.ReadAt(b, size-1); err == nil && b[0] != '\n' {
			line = append([]byte{'\n'}, line...)
		}
	}
	n, err := f.WriteAt(line, size)
	return size + int64(n), err
}

// truncate truncates name to size if it is larger.
func truncate(name string, size int64) error {
	f, err := openNoFollow(name)
	if err != nil {
		return err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil || fi.Size() <= size {
		return err
	}
	return f.Truncate(size)
}

// openNoFollow opens name for reading and writing, refusing symbolic links
// in any part of the path (in the last part only on kernels before 5.6).
func openNoFollow(name string) (*os.File, error) {
	fd, err := unix.Openat2(unix.AT_FDCWD, name, &unix.OpenHow{Flags: unix.O_RDWR | unix.O_CLOEXEC, Resolve: unix.RESOLVE_NO_SYMLINKS})
	if errors.Is(err, unix.ENOSYS) {
		return os.OpenFile(name, os.O_RDWR|syscall.O_NOFOLLOW, 0)
	}
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: name, Err: err}
	}
	return os.NewFile(uintptr(fd), name), nil
}

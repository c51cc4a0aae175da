// Package logcap bounds the log files a job process writes on the host
// that runs it (a node, or the control plane for compute "local").
//
// The runner ([runner.Start]) appends every chunk of a job's output to the
// stream's file ([runner.Stream.File]; today one std_log.txt for the one
// pipe that carries stdout and stderr) before it hands the chunk to its
// Output callback. A [Cap] sees each chunk there: once the output passes
// the limit it cuts the file at the limit, ending it with the cut line that
// the control plane's log ends with too, and from then on truncates it back
// after every chunk, so the host's disk holds at most the limit plus one
// chunk. The callback runs while the runner writes nothing, so no write is
// lost or torn. A runner that writes a stream's file and a separate
// std_log.txt gets both cut the same way.
//
// Files are opened without following symbolic links: the job owns its
// directory and could replace a log file with a link to a file of kumo's.
// A job that removes its log files altogether escapes the cap on the host,
// as the runner goes on writing to the files it opened; the control plane's
// copy stays bounded.
package logcap

import (
	"errors"
	"io/fs"
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

	seen    [2]int64 // bytes of stdout and stderr produced
	cut     bool
	keep    map[string]int64 // once cut: the size of each log file, by name in dir
	cutDone map[string]bool  // files that got the cut line
	err     error            // the first error cutting or trimming the files
	failed  bool             // err was returned
}

// New returns the Cap of the job whose directory is dir; limit is how many
// bytes of stdout and stderr together its files keep, <= 0 for no limit.
func New(dir string, limit int64) *Cap {
	return &Cap{dir: dir, limit: limit, cutDone: map[string]bool{}}
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

// cutAt ends the log: stream st (index i) keeps at bytes, the other stream
// what it has, std_log (when it is a file of its own) the limit; the cut
// stream's file and std_log end with the cut line.
func (c *Cap) cutAt(st runner.Stream, i int, at int64) {
	line := []byte(jobfiles.CutLine(string(st), at, c.limit))
	c.keep = map[string]int64{}
	for k, s := range []runner.Stream{runner.Stdout, runner.Stderr} {
		c.keep[s.File()] = c.seen[k]
	}
	c.keep[runner.StdLogFile] = c.limit
	c.keep[st.File()] = at
	for _, name := range []string{st.File(), runner.StdLogFile} {
		if _, done := c.cutDone[name]; done {
			continue
		}
		n, err := cutFile(filepath.Join(c.dir, name), c.keep[name], line)
		c.fail(err)
		c.keep[name] = n
		c.cutDone[name] = true
	}
	c.cut = true
	c.trim()
}

// trim truncates the files back to the sizes cutAt kept.
func (c *Cap) trim() {
	for name, size := range c.keep {
		c.fail(truncate(filepath.Join(c.dir, name), size))
	}
}

func (c *Cap) fail(err error) {
	if c.err == nil && err != nil && !errors.Is(err, fs.ErrNotExist) {
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

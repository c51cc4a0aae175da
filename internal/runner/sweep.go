package runner

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"kumo/internal/cgroup"
	"kumo/internal/jobuser"
)

// A Sweeper ends what the jobs of one user leave behind once a job's
// process group has ended: every process still running as the user (it
// escaped the group with setsid or a double fork, and would see the next
// job), and what the user owns at the top of [jobuser.TempDirs]. It is the
// user's alone, and its jobs run one at a time, as on a node.
//
// A Sweeper from [NewSweeper] does this without looking at every process
// and temporary file of the host after each job, which costs milliseconds
// on a busy host:
//   - Processes are looked for among the members of this process's own
//     cgroup (the one, of the hierarchies mounted, with the fewest members
//     when the Sweeper is made; on a node of the local provider, the node's
//     own group). Every process the job starts is born there, and a process
//     of an unprivileged user cannot leave it. A job whose processes are
//     moved elsewhere ([Spec.Limiter]) is swept by looking at every process.
//     On cgroup v2 the group's member list stays open and is read again
//     from its start, which lists the members anew; cgroup v1 would give
//     a list up to a second old that way, so there it is opened each time.
//   - A temporary directory is read again only when its modification time
//     changed since it was last found holding nothing of the user: a file
//     or directory appears at its top only by a change that moves the time
//     on. A time less than a second old is not trusted, as a change in the
//     same clock tick would leave it as it was.
//
// Its methods are safe for concurrent use.
type Sweeper struct {
	uid   int
	procs string // cgroup.procs of the group that holds this process's children; "" looks at every process
	self  int

	procsMu sync.Mutex
	procsFD int    // procs, kept open on cgroup v2; -1 opens it for each read
	dirFD   int    // the directory of procs (O_PATH), where a read opens it when procsFD is -1
	buf     []byte // the last read of procs

	mu    sync.Mutex
	clean map[string]time.Time // temporary directories found holding nothing of uid, with their modification time then; nil remembers nothing
}

// NewSweeper returns the Sweeper of uid, a job user (see [Spec.User]).
func NewSweeper(uid int) *Sweeper {
	procs, fewest := "", -1
	for _, f := range cgroup.OwnProcsFiles() {
		pids, err := readPIDs(f)
		if err == nil && (fewest < 0 || len(pids) < fewest) {
			procs, fewest = f, len(pids)
		}
	}
	return newSweeper(uid, procs)
}

// newSweeper returns the Sweeper of uid that looks for processes among
// the members listed by procs, a cgroup.procs file ("": every process). It
// keeps procs open, for as long as the Sweeper lives, when it is a cgroup
// v2 file, and else its directory, so that a read opens procs by its name
// alone.
func newSweeper(uid int, procs string) *Sweeper {
	s := &Sweeper{uid: uid, procs: procs, self: os.Getpid(), clean: map[string]time.Time{}, procsFD: -1, dirFD: -1}
	if procs == "" {
		return s
	}
	var st unix.Statfs_t
	if unix.Statfs(procs, &st) == nil && st.Type == unix.CGROUP2_SUPER_MAGIC {
		if fd, err := unix.Open(procs, unix.O_RDONLY|unix.O_CLOEXEC, 0); err == nil {
			s.procsFD = fd
		}
	} else if fd, err := unix.Open(filepath.Dir(procs), unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0); err == nil {
		s.dirFD = fd
	}
	return s
}

// members returns the pids that s.procs lists now.
func (s *Sweeper) members() ([]int, error) {
	s.procsMu.Lock()
	defer s.procsMu.Unlock()
	fd := s.procsFD
	if fd < 0 {
		// On cgroup v1 the list an open file gives is made at its first
		// read and served again for up to a second, so every read opens
		// it anew: by its name in its directory when that is open, a
		// shorter lookup than the whole path.
		var err error
		if s.dirFD >= 0 {
			fd, err = unix.Openat(s.dirFD, filepath.Base(s.procs), unix.O_RDONLY|unix.O_CLOEXEC, 0)
		} else {
			fd, err = unix.Open(s.procs, unix.O_RDONLY|unix.O_CLOEXEC, 0)
		}
		if err != nil {
			return nil, &os.PathError{Op: "open", Path: s.procs, Err: err}
		}
		defer unix.Close(fd)
	}
	s.buf = s.buf[:0]
	for {
		if len(s.buf) == cap(s.buf) {
			s.buf = slices.Grow(s.buf, 4096)
		}
		// Reading from offset 0 starts the kernel's walk of the group anew
		// (on cgroup v2; on v1, within one open file, it serves the list
		// made by the first read).
		n, err := unix.Pread(fd, s.buf[len(s.buf):cap(s.buf)], int64(len(s.buf)))
		switch {
		case err == unix.EINTR:
			continue
		case err != nil:
			return nil, &os.PathError{Op: "read", Path: s.procs, Err: err}
		case n == 0:
			return parsePIDs(s.buf), nil
		}
		s.buf = s.buf[:len(s.buf)+n]
	}
}

// Sweep kills every process of the user that spare (nil spares none) does
// not spare and, when none was spared, removes the user's temporary files;
// allProcs makes it look at every process of the host. It reports whether
// it spared any process.
func (s *Sweeper) Sweep(spare func(pid int) bool, allProcs bool) (spared bool, err error) {
	var candidates func() ([]int, error)
	if s.procs != "" && !allProcs {
		candidates = func() ([]int, error) {
			pids, err := s.members()
			return slices.DeleteFunc(pids, func(p int) bool { return p == s.self }), err
		}
	}
	spared, err = jobuser.KillAllExceptAmong(s.uid, spare, candidates)
	if !spared {
		err = errors.Join(err, s.removeTemp())
	}
	return spared, err
}

// removeTemp removes the user's files from the temporary directories that
// changed since they were last found holding none.
func (s *Sweeper) removeTemp() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	type seen struct {
		dir   string
		mtime time.Time
	}
	var dirs []string
	var settled []seen // read now, with a modification time old enough to remember
	now := time.Now()
	for _, d := range jobuser.TempDirs {
		fi, err := os.Stat(d)
		if err != nil {
			continue // as jobuser.RemoveTemp skips it
		}
		m := fi.ModTime()
		if t, ok := s.clean[d]; ok && t.Equal(m) {
			continue
		}
		dirs = append(dirs, d)
		if s.clean != nil {
			delete(s.clean, d)
			if m.Before(now.Add(-time.Second)) {
				settled = append(settled, seen{d, m})
			}
		}
	}
	if len(dirs) == 0 {
		return nil
	}
	if err := jobuser.RemoveTempIn(s.uid, dirs); err != nil {
		return err
	}
	for _, c := range settled {
		s.clean[c.dir] = c.mtime
	}
	return nil
}

// readPIDs reads a cgroup.procs file.
func readPIDs(file string) ([]int, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	return parsePIDs(b), nil
}

// parsePIDs parses what a cgroup.procs file holds.
func parsePIDs(b []byte) []int {
	var pids []int
	for _, f := range strings.Fields(string(b)) {
		if pid, err := strconv.Atoi(f); err == nil {
			pids = append(pids, pid)
		}
	}
	return pids
}

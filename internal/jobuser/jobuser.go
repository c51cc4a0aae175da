// Package jobuser gives jobs an identity of their own. When kumo runs as
// root, every job runs as an unprivileged uid (with the gid of the same
// number and no supplementary groups) that is neither kumo's nor its
// agents': one uid per node of a cluster, one per running job of compute
// "local", all taken from one configured [Range]. A job with a uid of its
// own cannot read kumo's data directory, node credentials, other jobs'
// directories or the agent's /proc entries; and because nothing else runs
// as that uid, [KillAll] ends whatever the job left behind (a daemonized
// process that left its process group included) before the uid runs the
// next job.
//
// When kumo does not run as root it cannot switch users: jobs run as
// kumo's own user, and only the clean environment and private working
// directories separate them from kumo ([Enabled] reports which).
package jobuser

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// DefaultRange is the uid range jobs run as when none is configured: far
// above the uids distributions hand to people and services.
var DefaultRange = Range{First: 900000, Last: 999999}

// Range is an inclusive range of uids.
type Range struct {
	First, Last int
}

// ParseRange parses "START-END" (inclusive, START >= 1000, START <= END).
func ParseRange(s string) (Range, error) {
	a, b, ok := strings.Cut(s, "-")
	first, err1 := strconv.Atoi(a)
	last, err2 := strconv.Atoi(b)
	if len(s) > 64 || !ok || err1 != nil || err2 != nil {
		return Range{}, fmt.Errorf("job uid range %q: want START-END, e.g. 900000-999999", truncate(s))
	}
	r := Range{First: first, Last: last}
	if err := r.Check(); err != nil {
		return Range{}, err
	}
	return r, nil
}

func truncate(s string) string {
	if len(s) > 64 {
		return s[:64] + "..."
	}
	return s
}

// Check reports whether r is usable: START >= 1000 (below are system
// users), START <= END, END < 2^31-1.
func (r Range) Check() error {
	switch {
	case r.First < 1000:
		return fmt.Errorf("job uid range %s starts below 1000, among system users", r)
	case r.Last < r.First:
		return fmt.Errorf("job uid range %s ends before it starts", r)
	case r.Last >= 1<<31-1:
		return fmt.Errorf("job uid range %s ends above 2147483646", r)
	}
	return nil
}

// String returns "START-END".
func (r Range) String() string { return strconv.Itoa(r.First) + "-" + strconv.Itoa(r.Last) }

// Len is how many uids r holds.
func (r Range) Len() int { return r.Last - r.First + 1 }

// Split cuts r in two: the first part for cluster nodes, the second (a
// quarter of r, at most 1024 uids, at least one) for compute "local".
func (r Range) Split() (nodes, local Range) {
	n := min(max(r.Len()/4, 1), 1024)
	if r.Len() < 2 {
		return r, r
	}
	return Range{r.First, r.Last - n}, Range{r.Last - n + 1, r.Last}
}

// Contains reports whether uid is in r.
func (r Range) Contains(uid int) bool { return uid >= r.First && uid <= r.Last }

// Free returns the lowest uid of r that used does not hold; false when
// every uid is held.
func (r Range) Free(used func(uid int) bool) (int, bool) {
	for uid := r.First; uid <= r.Last; uid++ {
		if !used(uid) {
			return uid, true
		}
	}
	return 0, false
}

// Enabled reports whether this process can run jobs as other users: it
// runs as root.
func Enabled() bool { return os.Geteuid() == 0 }

// User is the identity a job runs as.
type User struct {
	UID, GID int
}

// Chown gives dir and everything under it to u, never following symbolic
// links (a link is itself re-owned, not its target).
func Chown(dir string, u User) error {
	return filepath.WalkDir(dir, func(path string, _ fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		return os.Lchown(path, u.UID, u.GID)
	})
}

// Session returns the session ID of process pid (from /proc/<pid>/stat);
// false when it cannot be read.
func Session(pid int) (int, bool) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, false
	}
	// pid (comm) state ppid pgrp session ...; comm may hold spaces and ')'.
	i := strings.LastIndexByte(string(b), ')')
	if i < 0 {
		return 0, false
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 4 {
		return 0, false
	}
	sid, err := strconv.Atoi(f[3])
	return sid, err == nil
}

// Procs returns the processes whose real, effective or saved uid is uid.
func Procs(uid int) []int {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	var pids []int
	for _, e := range ents {
		if pid, err := strconv.Atoi(e.Name()); err == nil {
			pids = append(pids, pid)
		}
	}
	return procsAmong(uid, pids)
}

// procsAmong returns those of pids whose real, effective or saved uid is uid.
func procsAmong(uid int, pids []int) []int {
	want := strconv.Itoa(uid)
	buf := make([]byte, 8<<10)
	var out []int
	for _, pid := range pids {
		if status, ok := ReadProc(pid, "status", buf); ok && procUIDMatches(status, want) {
			out = append(out, pid)
		}
	}
	return out
}

// ReadProc reads /proc/<pid>/<name> into buf with plain system calls (a
// procfs file is produced whole by one read, up to len(buf)): it runs for
// every job, and os.ReadFile costs twice the calls. ok is false when the
// file could not be read, as when the process is gone.
func ReadProc(pid int, name string, buf []byte) (text string, ok bool) {
	path := "/proc/" + strconv.Itoa(pid) + "/" + name
	fd, err := syscall.Open(path, syscall.O_RDONLY|syscall.O_CLOEXEC, 0)
	for err == syscall.EINTR {
		fd, err = syscall.Open(path, syscall.O_RDONLY|syscall.O_CLOEXEC, 0)
	}
	if err != nil {
		return "", false
	}
	defer syscall.Close(fd)
	n, err := syscall.Read(fd, buf)
	for err == syscall.EINTR {
		n, err = syscall.Read(fd, buf)
	}
	if err != nil || n <= 0 {
		return "", false
	}
	return string(buf[:n]), true
}

// procUIDMatches reports whether a /proc/<pid>/status text names uid as
// the real, effective or saved uid of a live (non-zombie) process.
func procUIDMatches(status, uid string) bool {
	match := false
	for line := range strings.Lines(status) {
		if rest, ok := strings.CutPrefix(line, "State:"); ok {
			if s := strings.TrimSpace(rest); strings.HasPrefix(s, "Z") || strings.HasPrefix(s, "X") {
				return false
			}
		}
		if rest, ok := strings.CutPrefix(line, "Uid:"); ok {
			f := strings.Fields(rest)
			for i := 0; i < len(f) && i < 3; i++ {
				if f[i] == uid {
					match = true
				}
			}
		}
	}
	return match
}

// ErrSurvivors is returned by [KillAll] when processes outlive SIGKILL.
var ErrSurvivors = errors.New("processes survived SIGKILL")

// KillAll sends SIGKILL to every process running as uid until none is
// left (a process may fork while it is being killed), waiting at most 5s.
// uid 0 and this process's own uid are refused.
func KillAll(uid int) error {
	_, err := KillAllExcept(uid, nil)
	return err
}

// KillAllExcept is KillAll sparing the processes keep reports true for
// (nil keeps none); spared reports whether it spared any.
func KillAllExcept(uid int, keep func(pid int) bool) (spared bool, err error) {
	return KillAllExceptAmong(uid, keep, nil)
}

// KillAllExceptAmong is KillAllExcept looking only at the processes that
// candidates lists, instead of every process of the host: for example the
// members of a cgroup that holds every process uid can have, which a
// process of an unprivileged uid cannot leave. When candidates is nil or
// fails, every process of the host is looked at.
func KillAllExceptAmong(uid int, keep func(pid int) bool, candidates func() ([]int, error)) (spared bool, err error) {
	if uid == 0 || uid == os.Getuid() || uid == os.Geteuid() {
		return false, fmt.Errorf("kill processes of uid %d: not a job uid", uid)
	}
	procs := func() []int {
		if candidates != nil {
			if pids, err := candidates(); err == nil {
				return procsAmong(uid, pids)
			}
		}
		return Procs(uid)
	}
	for end := time.Now().Add(5 * time.Second); ; {
		var pids []int
		for _, pid := range procs() {
			if keep != nil && keep(pid) {
				spared = true
				continue
			}
			pids = append(pids, pid)
		}
		if len(pids) == 0 {
			return spared, nil
		}
		if time.Now().After(end) {
			return spared, fmt.Errorf("uid %d: %w: %v", uid, ErrSurvivors, pids)
		}
		for _, pid := range pids {
			syscall.Kill(pid, syscall.SIGKILL)
		}
		time.Sleep(2 * time.Millisecond) // SIGKILL is delivered asynchronously; no event tells when it was
	}
}

// CheckReachable reports an error naming the first ancestor of dir (dir
// must be absolute) that other users cannot search: a job running as its
// own uid could not reach its working directory under dir.
func CheckReachable(dir string) error {
	for d := filepath.Dir(dir); ; d = filepath.Dir(d) {
		fi, err := os.Stat(d)
		if err != nil {
			return err
		}
		if fi.Mode().Perm()&0o001 == 0 {
			return fmt.Errorf("jobs run as their own users and cannot reach %s: %s is not searchable by others (mode %04o); choose a work directory whose parents are (e.g. under /var/lib) or run chmod o+x %s", dir, d, fi.Mode().Perm(), d)
		}
		if d == filepath.Dir(d) {
			return nil
		}
	}
}

// TempDirs are the shared directories where a job may leave files for the
// next job of its uid: [RemoveTemp] clears them.
var TempDirs = []string{"/tmp", "/var/tmp", "/dev/shm"}

// RemoveTemp removes what uid owns at the top level of [TempDirs] (files,
// links, and directories with all they hold), so that a job's temporary
// files do not reach the next job that runs as the same uid. Links are
// removed, never followed.
func RemoveTemp(uid int) error { return RemoveTempIn(uid, TempDirs) }

// RemoveTempIn is RemoveTemp for the given directories only.
func RemoveTempIn(uid int, dirs []string) error {
	if uid == 0 || uid == os.Getuid() || uid == os.Geteuid() {
		return fmt.Errorf("remove temporary files of uid %d: not a job uid", uid)
	}
	var errs []error
	for _, dir := range dirs {
		ents, err := os.ReadDir(dir)
		if err != nil {
			continue
		}
		for _, e := range ents {
			p := filepath.Join(dir, e.Name())
			fi, err := os.Lstat(p)
			if err != nil {
				continue
			}
			if st, ok := fi.Sys().(*syscall.Stat_t); ok && int(st.Uid) == uid {
				if err := os.RemoveAll(p); err != nil {
					errs = append(errs, err)
				}
			}
		}
	}
	return errors.Join(errs...)
}

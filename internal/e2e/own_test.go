package e2e

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"kumo/internal/cgroup"
	"kumo/internal/jobuser"
)

// A test owns exactly what it starts. Its kumo up processes run in a cgroup
// of the test's own (where the host offers cgroups), named with this test
// binary's unique prefix, so the cgroups kumo makes for nodes nest inside it
// and every process the test caused (control plane, node agents, jobs) is
// listed in that subtree. The node records kumo keeps in the test's data
// directories (instance.json: pid, session) name the nodes' processes too,
// also on hosts without cgroups. Nothing is looked up machine-wide by name.
// When the test ends, its owner kills what is left, removes its cgroups and
// fails the test if any process or cgroup of its own survives.

// cgroupPrefix starts the name of every cgroup this test binary makes.
var cgroupPrefix = fmt.Sprintf("kumo-e2e-%d-", os.Getpid())

// owner is what one test started.
type owner struct {
	t     testing.TB
	group *cgroup.Group // nil where the host offers no cgroups

	mu   sync.Mutex
	dirs []string // the test's directories that hold kumo data directories
}

var (
	ownersMu sync.Mutex
	owners   = map[testing.TB]*owner{}
	ownerSeq int
	host     = sync.OnceValue(cgroup.Detect)
)

// ownerOf returns t's owner, making it (and its cgroup) on first use and
// registering its cleanup, which runs after every later cleanup of t.
func ownerOf(t testing.TB) *owner {
	t.Helper()
	ownersMu.Lock()
	defer ownersMu.Unlock()
	if o, ok := owners[t]; ok {
		return o
	}
	o := &owner{t: t}
	if h := host(); h.CPU() || h.Memory() {
		ownerSeq++
		g, err := h.New(cgroupPrefix+strconv.Itoa(ownerSeq), cgroup.Limits{})
		if err != nil {
			t.Fatalf("test cgroup: %v", err)
		}
		o.group = g
	}
	owners[t] = o
	t.Cleanup(func() {
		o.cleanup()
		ownersMu.Lock()
		delete(owners, t)
		ownersMu.Unlock()
	})
	return o
}

// addDir records a directory of the test that holds kumo data.
func (o *owner) addDir(dir string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if !slices.Contains(o.dirs, dir) {
		o.dirs = append(o.dirs, dir)
	}
}

// start starts cmd inside the test's cgroup: cmd runs through a shell that
// waits on stdin until its pid joined the group, then execs the command, so
// nothing of it runs outside.
func (o *owner) start(cmd *exec.Cmd) error {
	if o.group == nil {
		return cmd.Start()
	}
	cmd.Args = append([]string{"/bin/sh", "-c", `read -r _ || exit 1; exec "$@"`, "kumo-e2e", cmd.Path}, cmd.Args[1:]...)
	cmd.Path = "/bin/sh"
	gate, err := cmd.StdinPipe()
	if err != nil {
		return err
	}
	if err := cmd.Start(); err != nil {
		return err
	}
	defer gate.Close()
	if err := o.group.Add(cmd.Process.Pid); err != nil {
		cmd.Process.Kill()
		cmd.Wait()
		return err
	}
	_, err = gate.Write([]byte("\n"))
	return err
}

// procs returns the live processes the test started: those in its cgroup
// subtree and those in the sessions of its nodes' records.
func (o *owner) procs() []int {
	var pids []int
	if o.group != nil {
		for _, d := range o.group.Dirs {
			pids = append(pids, subtreeProcs(d)...)
		}
	}
	for _, r := range o.nodes() {
		pids = append(pids, r.members()...)
	}
	slices.Sort(pids)
	return slices.Compact(pids)
}

// procsMatching returns the test's live processes whose command line
// contains s.
func (o *owner) procsMatching(s string) []int {
	var out []int
	for _, pid := range o.procs() {
		if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid)); err == nil && strings.Contains(strings.ReplaceAll(string(b), "\x00", " "), s) {
			out = append(out, pid)
		}
	}
	return out
}

// nodeRecord is the part of a local node's instance.json the tests read.
type nodeRecord struct {
	Instance struct {
		ID string `json:"id"`
	} `json:"instance"`
	PID       int    `json:"pid"`
	StartTime uint64 `json:"start_time"`
	Session   int    `json:"session"`
	SessStart uint64 `json:"session_start"`
}

// nodes reads the records of the nodes in the test's data directories.
func (o *owner) nodes() []nodeRecord {
	o.mu.Lock()
	dirs := slices.Clone(o.dirs)
	o.mu.Unlock()
	var out []nodeRecord
	for _, dir := range dirs {
		files, _ := filepath.Glob(filepath.Join(dir, "*", "nodes", "*", "instance.json"))
		for _, f := range files {
			b, err := os.ReadFile(f)
			var r nodeRecord
			if err == nil && json.Unmarshal(b, &r) == nil {
				out = append(out, r)
			}
		}
	}
	return out
}

// node returns the record of the node with the given ID.
func (o *owner) node(id string) (nodeRecord, bool) {
	for _, r := range o.nodes() {
		if r.Instance.ID == id {
			return r, true
		}
	}
	return nodeRecord{}, false
}

// agentAlive reports whether the record's node process still runs.
func (r nodeRecord) agentAlive() bool {
	st, ok := readProcStat(r.PID)
	return ok && st.live() && st.start == r.StartTime
}

// members returns the live processes of the record's session, trusted only
// while the session cannot have been reused (as the provider does).
func (r nodeRecord) members() []int {
	if r.Session <= 0 {
		return nil
	}
	if st, ok := readProcStat(r.Session); ok && st.start != r.SessStart {
		return nil
	}
	var pids []int
	for _, st := range allProcStats() {
		if st.session == r.Session && st.start >= r.SessStart && st.live() {
			pids = append(pids, st.pid)
		}
	}
	return pids
}

// cleanup kills what the test left running, removes its cgroups, and fails
// the test if anything of its own is left.
func (o *owner) cleanup() {
	t := o.t
	for end := time.Now().Add(15 * time.Second); ; {
		pids := o.procs()
		if len(pids) == 0 {
			break
		}
		if time.Now().After(end) {
			t.Errorf("processes %v of this test survived SIGKILL", pids)
			break
		}
		for _, pid := range pids {
			syscall.Kill(pid, syscall.SIGKILL)
		}
		time.Sleep(10 * time.Millisecond) // SIGKILL is delivered asynchronously; no event tells when a process is gone
	}
	if o.group != nil {
		for _, d := range o.group.Dirs {
			if err := removeTree(d); err != nil {
				t.Errorf("remove the test's cgroup: %v", err)
			}
		}
	}
	o.mu.Lock()
	dirs := slices.Clone(o.dirs)
	o.mu.Unlock()
	if left := procsUnder(dirs); len(left) > 0 {
		t.Errorf("processes %v of this test (working in or named after its directories) escaped its cgroup and node records", left)
		for _, pid := range left {
			syscall.Kill(pid, syscall.SIGKILL)
		}
	}
	// The job uids its control planes claimed: nothing runs as them now.
	if jobuser.Enabled() {
		for _, d := range dirs {
			if _, err := jobuser.ReleaseUnder(d); err != nil {
				t.Errorf("release the test's job uids: %v", err)
			}
		}
	}
}

// leftCgroups returns the cgroups whose name starts with prefix under this
// process's own cgroups.
func leftCgroups(prefix string) []string {
	b, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		return nil
	}
	var out []string
	for line := range strings.Lines(string(b)) {
		parts := strings.SplitN(strings.TrimSpace(line), ":", 3)
		if len(parts) != 3 {
			continue
		}
		mounts := []string{filepath.Join("/sys/fs/cgroup", parts[1])}
		if parts[1] == "" {
			mounts = []string{"/sys/fs/cgroup/unified", "/sys/fs/cgroup"}
		}
		for _, m := range mounts {
			found, _ := filepath.Glob(filepath.Join(m, parts[2], prefix+"*"))
			out = append(out, found...)
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// removeTree removes a cgroup directory and the groups below it, deepest
// first, waiting briefly for exiting processes to leave.
func removeTree(dir string) error {
	var dirs []string
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.IsDir() {
			dirs = append(dirs, p)
		}
		return nil
	})
	var errs []error
	for _, d := range slices.Backward(dirs) {
		if err := (&cgroup.Group{Dirs: []string{d}}).Remove(); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// subtreeProcs returns the live processes in a cgroup and the groups below.
func subtreeProcs(dir string) []int {
	var pids []int
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || !d.IsDir() {
			return nil
		}
		b, err := os.ReadFile(filepath.Join(p, "cgroup.procs"))
		if err != nil {
			return nil
		}
		for f := range strings.FieldsSeq(string(b)) {
			if pid, err := strconv.Atoi(f); err == nil {
				if st, ok := readProcStat(pid); ok && st.live() {
					pids = append(pids, pid)
				}
			}
		}
		return nil
	})
	return pids
}

// procsUnder returns live processes whose working directory is in one of
// dirs or whose command line names one of them: a check that nothing of a
// test escaped both its cgroup and its node records.
func procsUnder(dirs []string) []int {
	if len(dirs) == 0 {
		return nil
	}
	var out []int
	for _, st := range allProcStats() {
		if !st.live() || st.pid == os.Getpid() {
			continue
		}
		cwd, _ := os.Readlink(fmt.Sprintf("/proc/%d/cwd", st.pid))
		cmd, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", st.pid))
		for _, d := range dirs {
			if cwd == d || strings.HasPrefix(cwd, d+"/") || strings.Contains(string(cmd), d+"/") {
				out = append(out, st.pid)
				break
			}
		}
	}
	return out
}

// procsOf returns the live processes running the executable exe.
func procsOf(exe string) []int {
	var out []int
	for _, st := range allProcStats() {
		if p, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", st.pid)); err == nil && st.live() && strings.TrimSuffix(p, " (deleted)") == exe {
			out = append(out, st.pid)
		}
	}
	return out
}

// procStat is what the tests read of /proc/<pid>/stat.
type procStat struct {
	pid     int
	state   string
	session int
	start   uint64 // clock ticks after boot
}

func (s procStat) live() bool { return s.state != "Z" && s.state != "X" }

func readProcStat(pid int) (procStat, bool) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return procStat{}, false
	}
	i := strings.LastIndexByte(string(b), ')')
	if i < 0 {
		return procStat{}, false
	}
	// Fields after the command name: state ppid pgrp session ... starttime (the 20th).
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 20 {
		return procStat{}, false
	}
	sid, _ := strconv.Atoi(f[3])
	start, _ := strconv.ParseUint(f[19], 10, 64)
	return procStat{pid: pid, state: f[0], session: sid, start: start}, true
}

func allProcStats() []procStat {
	ents, _ := os.ReadDir("/proc")
	var out []procStat
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if st, ok := readProcStat(pid); ok {
			out = append(out, st)
		}
	}
	return out
}

// TestOwnerCleansUp checks the harness itself: what a test started in its
// cgroup (even in a session of its own, as nodes are) is gone when the test
// ends, with its cgroup; a process that escaped the cgroup is still found
// by its working directory.
func TestOwnerCleansUp(t *testing.T) {
	dir := t.TempDir()
	var o *owner
	var started *exec.Cmd
	t.Run("test", func(t *testing.T) {
		o = ownerOf(t)
		o.addDir(dir)
		started = exec.Command("sleep", "1000")
		started.Dir = dir
		started.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
		if err := o.start(started); err != nil {
			t.Fatal(err)
		}
		if got := o.procs(); !slices.Contains(got, started.Process.Pid) {
			t.Errorf("owner's processes %v lack the one it started, %d", got, started.Process.Pid)
		}
	})
	err := started.Wait()
	if ws, _ := started.ProcessState.Sys().(syscall.WaitStatus); !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
		t.Errorf("process after the test ended: %v, want killed", err)
	}
	if o.group != nil {
		for _, d := range o.group.Dirs {
			if _, err := os.Stat(d); !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("test cgroup %s left (stat: %v)", d, err)
			}
		}
	}

	escaped := exec.Command("sleep", "1000")
	escaped.Dir = dir
	if err := escaped.Start(); err != nil {
		t.Fatal(err)
	}
	defer escaped.Wait()
	defer escaped.Process.Kill()
	if got := procsUnder([]string{dir}); !slices.Contains(got, escaped.Process.Pid) {
		t.Errorf("procsUnder(%s) = %v, want it to find %d", dir, got, escaped.Process.Pid)
	}
}

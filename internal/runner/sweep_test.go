package runner

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"kumo/internal/jobuser"
	"kumo/internal/jobuser/jobusertest"
)

// sweepUID returns a job uid of the test's own; it skips the test unless
// run as root.
func sweepUID(t *testing.T) jobuser.User {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("jobs run as their own users only as root")
	}
	return jobusertest.User(t)
}

// jobDir returns a fresh job directory that a job user can reach.
func jobDir(t *testing.T) string {
	t.Helper()
	return filepath.Join(reachableDir(t), "job")
}

// reachableDir returns a fresh directory that a job user may pass through
// but not list, as a node's jobs directory: job directories go in it.
func reachableDir(tb testing.TB) string {
	tb.Helper()
	dir := tb.TempDir()
	for _, d := range []string{filepath.Dir(dir), dir} {
		if err := os.Chmod(d, 0o711); err != nil {
			tb.Fatal(err)
		}
	}
	return dir
}

// A job that leaves a process outside its group and a file in /tmp leaves
// neither once Wait returns, whether its Sweeper looks among its cgroup's
// members or at every process; a second job of the same user is swept too.
func TestSweeperEndsLeftovers(t *testing.T) {
	u := sweepUID(t)
	for _, tt := range []struct {
		name  string
		sweep *Sweeper
	}{
		{"own cgroup", NewSweeper(u.UID)},
		{"every process", nil},
	} {
		t.Run(tt.name, func(t *testing.T) {
			for i := range 2 {
				tmp := fmt.Sprintf("/tmp/kumo-sweep-%d-%d", os.Getpid(), time.Now().UnixNano())
				t.Cleanup(func() { os.RemoveAll(tmp) })
				res, err := Run(context.Background(), Spec{
					Dir:        jobDir(t),
					Command:    "setsid sleep 1000 </dev/null >/dev/null 2>&1 & mkdir " + tmp + " && touch " + tmp + "/f",
					User:       &u,
					Sweeper:    tt.sweep,
					DrainLimit: 50 * time.Millisecond,
				})
				if err != nil || res.Reason != ReasonNone {
					t.Fatalf("job %d: %v %+v", i, err, res)
				}
				if pids := jobuser.Procs(u.UID); len(pids) > 0 {
					t.Errorf("job %d: processes %v of the job's user remain after Wait", i, pids)
				}
				if _, err := os.Lstat(tmp); !errors.Is(err, fs.ErrNotExist) {
					t.Errorf("job %d: its temporary directory %s remains: %v", i, tmp, err)
				}
			}
		})
	}
}

// TestSweeperListsGroupAnew: each read of the Sweeper's member list gives
// the members of the moment (a process that left is gone from it at
// once), so that Sweep finds and ends what the job user left in the group.
// On cgroup v2 the list is kept open and read from its start; on v1, where
// an open list keeps serving its first read for up to a second, it is
// opened anew in its directory, which is kept open.
func TestSweeperListsGroupAnew(t *testing.T) {
	for _, v2 := range []bool{true, false} {
		name := map[bool]string{true: "v2", false: "v1"}[v2]
		t.Run(name, func(t *testing.T) { testSweeperListsGroupAnew(t, v2) })
	}
}

func testSweeperListsGroupAnew(t *testing.T, v2 bool) {
	u := sweepUID(t)
	group := cgroupGroup(t, v2)
	s := newSweeper(u.UID, filepath.Join(group, "cgroup.procs"))
	if v2 && s.procsFD < 0 {
		t.Fatal("the cgroup v2 group's member list is not kept open")
	}
	if !v2 && (s.procsFD >= 0 || s.dirFD < 0) {
		t.Fatalf("cgroup v1: member list fd %d, directory fd %d; want the list opened for each read, in its directory kept open", s.procsFD, s.dirFD)
	}
	// start starts a process of the job user in the group; ended tells
	// how it ended once it has.
	start := func() (pid int, ended <-chan error) {
		t.Helper()
		cmd := exec.Command("sleep", "1000")
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(u.UID), Gid: uint32(u.GID), Groups: []uint32{}}}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		reaped := make(chan struct{})
		go func() {
			done <- cmd.Wait()
			close(reaped)
		}()
		t.Cleanup(func() {
			cmd.Process.Kill()
			<-reaped
		})
		if err := os.WriteFile(filepath.Join(group, "cgroup.procs"), []byte(strconv.Itoa(cmd.Process.Pid)), 0); err != nil {
			t.Fatalf("move %d into %s: %v", cmd.Process.Pid, group, err)
		}
		return cmd.Process.Pid, done
	}
	wantMembers := func(want ...int) {
		t.Helper()
		got, err := s.members()
		if err != nil {
			t.Fatalf("members: %v", err)
		}
		slices.Sort(got)
		slices.Sort(want)
		if !slices.Equal(got, want) {
			t.Errorf("members = %v, want %v", got, want)
		}
	}
	a, aEnded := start()
	wantMembers(a)
	b, bEnded := start()
	syscall.Kill(a, syscall.SIGKILL)
	<-aEnded
	wantMembers(b)
	if _, err := s.Sweep(nil, false); err != nil {
		t.Fatalf("Sweep: %v", err)
	}
	select {
	case err := <-bEnded:
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
			t.Errorf("the job user's process in the group ended with %v, want SIGKILL", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Sweep left the job user's process in the group running")
	}
	wantMembers()
}

// cgroupGroup makes a cgroup of the test's own at the top of a cgroup v2
// hierarchy, or of the first cgroup v1 one, removed when the test ends; it
// skips the test where there is no such hierarchy or it may not make one.
func cgroupGroup(t testing.TB, v2 bool) string {
	t.Helper()
	raw, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Skip(err)
	}
	fstype := map[bool]string{true: "cgroup2", false: "cgroup"}[v2]
	mnt := ""
	for line := range strings.Lines(string(raw)) {
		pre, post, _ := strings.Cut(line, " - ")
		if f := strings.Fields(post); len(f) > 0 && f[0] == fstype {
			if p := strings.Fields(pre); len(p) > 4 {
				mnt = p[4]
				break
			}
		}
	}
	if mnt == "" {
		t.Skipf("no %s hierarchy is mounted", fstype)
	}
	dir := filepath.Join(mnt, fmt.Sprintf("kumo-runner-test-%d", os.Getpid()))
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Skipf("cannot make a %s group: %v", fstype, err)
	}
	t.Cleanup(func() {
		// A killed member leaves the group a moment after its wait.
		for end := time.Now().Add(5 * time.Second); os.Remove(dir) != nil && time.Now().Before(end); {
			time.Sleep(10 * time.Millisecond)
		}
	})
	return dir
}

// BenchmarkSweeperMembers reads the member list of a cgroup of one
// process as the Sweeper does: on cgroup v2 kept open and read from its
// start ("v2"), on v1 opened for each read in its directory, kept open
// ("v1"); and, for comparison, with os.ReadFile by its whole path on v1
// ("v1-readfile"), as the Sweeper did before.
func BenchmarkSweeperMembers(b *testing.B) {
	if os.Geteuid() != 0 {
		b.Skip("moving a process into a cgroup needs root")
	}
	for _, tc := range []struct {
		name string
		v2   bool
		read func(s *Sweeper) ([]int, error)
	}{
		{"v2", true, (*Sweeper).members},
		{"v1", false, (*Sweeper).members},
		{"v1-readfile", false, func(s *Sweeper) ([]int, error) { return readPIDs(s.procs) }},
	} {
		b.Run(tc.name, func(b *testing.B) {
			procs := filepath.Join(cgroupGroup(b, tc.v2), "cgroup.procs")
			cmd := exec.Command("sleep", "1000")
			if err := cmd.Start(); err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
			if err := os.WriteFile(procs, []byte(strconv.Itoa(cmd.Process.Pid)), 0); err != nil {
				b.Fatal(err)
			}
			s := newSweeper(1, procs)
			for b.Loop() {
				if pids, err := tc.read(s); err != nil || len(pids) != 1 {
					b.Fatalf("members = %v, %v", pids, err)
				}
			}
		})
	}
}

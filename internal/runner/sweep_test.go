package runner

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
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

package sqlite

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"kumo/internal/model"
	"kumo/internal/store"
)

// groupCrashEnv, when set, makes TestKillMidGroupCommit act as the child
// that writes to the named file from many goroutines until it is killed.
const groupCrashEnv = "KUMO_SQLITE_GROUP_CRASH_CHILD"

const groupCrashWS = "/subscriptions/s/resourceGroups/rg/providers/Microsoft.MachineLearningServices/workspaces/ws"

// TestKillMidGroupCommit kills (SIGKILL) a process while 16 goroutines
// create jobs as fast as they can, so that their writes share
// transactions (group commit), and checks that every job whose create had
// returned before the kill is stored, counted, and whole.
func TestKillMidGroupCommit(t *testing.T) {
	if path := os.Getenv(groupCrashEnv); path != "" {
		groupCrashChild(t, path)
		return
	}
	if testing.Short() {
		t.Skip("starts a child process")
	}
	const killAfter = 500
	path := filepath.Join(t.TempDir(), "kumo.db")
	cmd := exec.Command(os.Args[0], "-test.run=^TestKillMidGroupCommit$")
	cmd.Env = append(os.Environ(), groupCrashEnv+"="+path)
	cmd.Stderr = os.Stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start child: %v", err)
	}
	var returned []string
	sc := bufio.NewScanner(stdout)
	for sc.Scan() {
		if name, ok := strings.CutPrefix(sc.Text(), "created "); ok {
			returned = append(returned, name)
			if len(returned) == killAfter {
				break
			}
		}
	}
	if err := cmd.Process.Kill(); err != nil {
		t.Fatalf("kill child: %v", err)
	}
	for sc.Scan() { // what it said before it died also returned
		if name, ok := strings.CutPrefix(sc.Text(), "created "); ok {
			returned = append(returned, name)
		}
	}
	_ = cmd.Wait()
	if len(returned) < killAfter {
		t.Fatalf("child ended after %d creates, want it killed after %d", len(returned), killAfter)
	}

	s := openTest(t, path)
	for _, name := range returned {
		j, err := s.JobGet(t.Context(), groupCrashWS+"/jobs/"+name)
		if err != nil {
			t.Errorf("job %s was created before the kill; after it: %v", name, err)
			continue
		}
		if j.RunID != "run-"+name || j.Command != "true" {
			t.Errorf("job %s after the kill: run ID %q command %q", name, j.RunID, j.Command)
		}
	}
	all, err := s.JobList(t.Context(), groupCrashWS, store.Page{})
	if err != nil {
		t.Fatal(err)
	}
	counts, err := s.JobCountByCompute(t.Context(), groupCrashWS+"/computes/cpu", model.JobQueued)
	if err != nil {
		t.Fatal(err)
	}
	if counts[model.JobQueued] != len(all) {
		t.Errorf("queued count %d after the kill, but %d jobs are stored", counts[model.JobQueued], len(all))
	}
	t.Logf("%d creates returned before the kill, %d jobs stored", len(returned), len(all))
}

// groupCrashChild creates jobs from 16 goroutines, printing each one's
// name once its create returned, until it is killed.
func groupCrashChild(t *testing.T, path string) {
	s, err := Open(t.Context(), path)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	var (
		mu   sync.Mutex // serializes the lines on stdout
		next int
	)
	for range 16 {
		go func() {
			for {
				mu.Lock()
				next++
				name := fmt.Sprintf("j%06d", next)
				mu.Unlock()
				j := model.Job{ID: groupCrashWS + "/jobs/" + name, WorkspaceID: groupCrashWS, Name: name, RunID: "run-" + name,
					ComputeID: groupCrashWS + "/computes/cpu", Command: "true", InstanceCount: 1, Status: model.JobQueued,
					CreatedAt: time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)}
				if err := s.JobCreate(t.Context(), j); err != nil {
					fmt.Fprintln(os.Stderr, "JobCreate:", err)
					os.Exit(3)
				}
				mu.Lock()
				fmt.Println("created " + name)
				mu.Unlock()
			}
		}()
	}
	time.Sleep(time.Hour) // until the parent kills us
	t.Fatal("not killed")
}

package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"kumo/api"
)

// agentPIDs returns the processes of node's agent.
func agentPIDs(t *testing.T, node string) []int {
	t.Helper()
	out, _ := exec.Command("pgrep", "-f", "agent --node-id="+node).Output()
	var pids []int
	for _, f := range strings.Fields(string(out)) {
		if pid, err := strconv.Atoi(f); err == nil {
			pids = append(pids, pid)
		}
	}
	if len(pids) == 0 {
		t.Fatalf("no agent process for node %s", node)
	}
	return pids
}

func signalAll(pids []int, sig syscall.Signal) {
	for _, pid := range pids {
		_ = syscall.Kill(pid, sig)
	}
}

// An agent stopped (SIGSTOP) for less than the heartbeat timeout causes no
// requeue. Stopped past it, its node is declared lost and its job requeued
// once; the lost node's job process is killed and nothing it reports for
// the old attempt is accepted when it resumes: the job's output shows
// exactly one completed run.
func TestStoppedAgentIsFenced(t *testing.T) {
	s := startServer(t, "", fastNodes...) // heartbeat timeout 3s
	createCluster(t, s, "c1", 0, 1, "PT30S")
	const command = `echo started; sleep 4; echo completed-run`

	submitJob(t, s, "brief", "c1", command)
	node := waitRunning(t, s, "brief", 1)
	pids := agentPIDs(t, node)
	signalAll(pids, syscall.SIGSTOP)
	time.Sleep(time.Second) // shorter than the heartbeat timeout: what is tested is that nothing happens
	signalAll(pids, syscall.SIGCONT)
	if j := waitJob(t, s, "brief", 60*time.Second); j.Properties.Status != api.JobCompleted || j.Properties.Attempts != 1 {
		t.Errorf("brief stop: job %s after %d attempts (%+v), want Completed after 1", j.Properties.Status, j.Properties.Attempts, j.Properties.AttemptHistory)
	}

	submitJob(t, s, "long", "c1", command)
	node = waitRunning(t, s, "long", 1)
	pids = agentPIDs(t, node)
	signalAll(pids, syscall.SIGSTOP)
	waitFor(t, 30*time.Second, "the stopped node's job to be requeued", func() (bool, string) {
		j := getJob(t, s, "long")
		return j.Properties.Attempts == 2 || j.Properties.Status == api.JobQueued, string(j.Properties.Status)
	})
	signalAll(pids, syscall.SIGCONT) // the old agent resumes (if its node was not removed yet)
	j := waitJob(t, s, "long", 90*time.Second)
	p := j.Properties
	if p.Status != api.JobCompleted || p.Attempts != 2 || len(p.AttemptHistory) != 2 {
		t.Fatalf("long stop: job %s after %d attempts (%+v), want Completed after 2", p.Status, p.Attempts, p.AttemptHistory)
	}
	if a := p.AttemptHistory[0]; a.FailureClass != "infrastructure" || a.Reason != "NodeLost" || a.NodeID != node {
		t.Errorf("first attempt = %+v, want an infrastructure loss of %s", a, node)
	}
	dl := t.TempDir()
	if out, err := run(t, s.dir, "job", "download", "long", "--download-path", dl); err != nil {
		t.Fatalf("download: %v %s", err, out)
	}
	all := jobLog(t, s, "long")
	if old, err := os.ReadFile(filepath.Join(dl, "attempts", "1", "user_logs", "std_log.txt")); err == nil {
		all += string(old)
	}
	if n := strings.Count(all, "completed-run"); n != 1 {
		t.Errorf("the job's output shows %d completed runs, want 1:\n%s", n, all)
	}
	for _, pid := range pids {
		if err := syscall.Kill(pid, 0); err == nil {
			if b, _ := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat"); !strings.Contains(string(b), ") Z") {
				t.Errorf("the lost node's agent %d still runs", pid)
			}
		}
	}
}

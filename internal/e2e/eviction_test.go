package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"kumo/api"
)

// createPriorityCluster is createCluster with a VM priority.
func createPriorityCluster(t testing.TB, s *server, name, priority string, max int) {
	t.Helper()
	body := map[string]any{"properties": map[string]any{"computeType": "AmlCompute", "properties": map[string]any{
		"vmSize": "Standard_D2_v2", "vmPriority": priority,
		"scaleSettings": map[string]any{"minNodeCount": 0, "maxNodeCount": max, "nodeIdleTimeBeforeScaleDown": "PT30S"}}}}
	if status, raw := s.request(context.Background(), "PUT", workspacePath+"/computes/"+name, body); status != 201 {
		t.Fatalf("create cluster: %d %s", status, raw)
	}
	waitFor(t, 30*time.Second, "cluster "+name+" provisioned", func() (bool, string) {
		c := getCompute(t, s, name)
		return c.Properties.ProvisioningState == api.ProvisioningSucceeded, string(c.Properties.ProvisioningState)
	})
}

// evictable is a job that says when it runs, prints its eviction notice
// on SIGTERM and exits, and otherwise finishes after a few seconds.
const evictable = `trap 'echo got-term; cat "$KUMO_EVICTION_NOTICE_FILE"; exit 3' TERM; echo started; sleep 6 & wait; echo finished`

// waitRunning waits until the job's attempt runs and has printed
// "started" (its trap is set), and returns its node.
func waitRunning(t *testing.T, s *server, name string, attempt int) string {
	t.Helper()
	var node string
	waitFor(t, 60*time.Second, name+" attempt to run", func() (bool, string) {
		j := getJob(t, s, name)
		node = j.Properties.NodeID
		return j.Properties.Status == api.JobRunning && j.Properties.Attempts == attempt && strings.Contains(jobLog(t, s, name), "started"),
			string(j.Properties.Status)
	})
	return node
}

// An evicted LowPriority job gets SIGTERM with the lead time in its notice
// file, is requeued with its history and completes on a replacement node;
// the evicted attempt's log stays readable. A Dedicated cluster refuses.
func TestSimulateEvictionRequeues(t *testing.T) {
	s := startServer(t, "", append(fastNodes, "--eviction-lead-time", "5s")...)
	createPriorityCluster(t, s, "spot", "LowPriority", 1)
	createPriorityCluster(t, s, "ded", "Dedicated", 1)
	submitJob(t, s, "evictee", "spot", evictable)
	submitJob(t, s, "safe", "ded", evictable)
	first := waitRunning(t, s, "evictee", 1)
	waitRunning(t, s, "safe", 1)

	out, err := run(t, s.dir, "compute", "simulate-eviction", "--name", "ded")
	if err == nil || !strings.Contains(out, "only the nodes of a LowPriority cluster can be evicted") {
		t.Errorf("simulate-eviction of a Dedicated cluster: err %v, output %q; want a refusal", err, out)
	}
	if out, err := run(t, s.dir, "compute", "simulate-eviction", "--name", "spot", "--node-id", first); err != nil {
		t.Fatalf("simulate-eviction: %v %s", err, out)
	}
	j := waitJob(t, s, "evictee", 120*time.Second)
	p := j.Properties
	if p.Status != api.JobCompleted || p.Attempts != 2 || len(p.AttemptHistory) != 2 {
		t.Fatalf("evictee = %s, %d attempts, history %+v; want Completed after 2", p.Status, p.Attempts, p.AttemptHistory)
	}
	a1, a2 := p.AttemptHistory[0], p.AttemptHistory[1]
	if a1.FailureClass != "preemption" || a1.Reason != "Preempted" || a1.NodeID != first || a2.NodeID == first || a2.FailureClass != "" {
		t.Errorf("history = %+v, want a preemption on %s, then a success elsewhere", p.AttemptHistory, first)
	}
	if log := jobLog(t, s, "evictee"); !strings.Contains(log, "finished") || strings.Contains(log, "got-term") {
		t.Errorf("current log %q, want the second attempt's only", log)
	}
	dl := t.TempDir()
	if out, err := run(t, s.dir, "job", "download", "evictee", "--download-path", dl); err != nil {
		t.Fatalf("download: %v %s", err, out)
	}
	old, err := os.ReadFile(filepath.Join(dl, "attempts", "1", "user_logs", "std_log.txt"))
	if err != nil || !strings.Contains(string(old), "got-term") || !strings.Contains(string(old), `"eventType":"Preempt"`) {
		t.Errorf("attempt 1's log = %q, %v; want the notice printed on SIGTERM", old, err)
	}
	for _, lead := range []string{`"leadTimeSeconds":5`, `"leadTimeSeconds":4`} {
		if strings.Contains(string(old), lead) {
			break
		}
		if lead == `"leadTimeSeconds":4` {
			t.Errorf("attempt 1's notice %q does not give the 5s lead time", old)
		}
	}
	if out, err := run(t, s.dir, "job", "show", "evictee"); err != nil || !strings.Contains(out, "preemption: Preempted") {
		t.Errorf("job show (err %v) lacks the history:\n%s", err, out)
	}
	if safe := waitJob(t, s, "safe", 60*time.Second); safe.Properties.Status != api.JobCompleted || safe.Properties.Attempts != 1 {
		t.Errorf("Dedicated job = %s after %d attempts, want Completed after 1", safe.Properties.Status, safe.Properties.Attempts)
	}
}

// With random evictions, a LowPriority job is evicted again and again until
// the preemption cap fails it with PreemptionError and the whole history,
// while a Dedicated job next to it is never touched.
func TestRandomEvictionsReachTheCap(t *testing.T) {
	s := startServer(t, "", append(fastNodes, "--eviction-lead-time", "1s", "--eviction-mean-interval", "300ms")...)
	createPriorityCluster(t, s, "spot", "LowPriority", 1)
	createPriorityCluster(t, s, "ded", "Dedicated", 1)
	submitJob(t, s, "safe", "ded", "echo started; sleep 1000")
	submitJob(t, s, "doomed", "spot", "echo started; sleep 1000")
	j := waitJob(t, s, "doomed", 180*time.Second)
	p := j.Properties
	if p.Status != api.JobFailed || p.Error == nil || p.Error.Code != "PreemptionError" {
		t.Fatalf("doomed = %s %+v, want Failed with PreemptionError", p.Status, p.Error)
	}
	if len(p.AttemptHistory) != 6 || p.Attempts != 6 {
		t.Fatalf("doomed has %d attempts (%d in history), want 6: %+v", p.Attempts, len(p.AttemptHistory), p.AttemptHistory)
	}
	for _, a := range p.AttemptHistory {
		if a.FailureClass != "preemption" || a.NodeID == "" || a.EndTime == "" {
			t.Errorf("attempt %+v, want an ended preemption", a)
		}
	}
	safe := getJob(t, s, "safe")
	if safe.Properties.Status != api.JobRunning || safe.Properties.Attempts != 1 {
		t.Errorf("Dedicated job = %s after %d attempts, want still Running on its first", safe.Properties.Status, safe.Properties.Attempts)
	}
	status, raw := s.request(context.Background(), "GET", workspacePath+"/computes/ded/events", nil)
	if status != 200 || strings.Contains(string(raw), "Preempt") || strings.Contains(string(raw), "Eviction") {
		t.Errorf("Dedicated cluster's events mention an eviction: %s", raw)
	}
}

// A job's checkpoint directory is saved when its attempt is evicted (after
// the job wrote it on SIGTERM) and restored before the retry: the retry
// resumes where the evicted attempt stopped.
func TestCheckpointRestoredAfterEviction(t *testing.T) {
	s := startServer(t, "", append(fastNodes, "--eviction-lead-time", "5s")...)
	createPriorityCluster(t, s, "spot", "LowPriority", 1)
	const command = `n=$(cat "$KUMO_CHECKPOINT_DIR/step" 2>/dev/null || echo 0); echo "resumed at $n"; ` +
		`trap 'echo $n > "$KUMO_CHECKPOINT_DIR/step"; echo saved $n; exit 0' TERM; ` +
		`while [ $n -lt 40 ]; do n=$((n+1)); echo $n > "$KUMO_CHECKPOINT_DIR/step"; sleep 0.2; done; echo "done at $n"`
	body := api.JobResource{Properties: &api.JobProperties{JobType: "Command", Command: command, ComputeID: "spot",
		EnvironmentVariables: map[string]string{"KUMO_CHECKPOINT_DIR": "ckpt"}}}
	if status, raw := s.request(context.Background(), "PUT", workspacePath+"/jobs/resumer", body); status != 201 {
		t.Fatalf("submit: %d %s", status, raw)
	}
	var node string
	waitFor(t, 60*time.Second, "the first attempt to run", func() (bool, string) {
		j := getJob(t, s, "resumer")
		node = j.Properties.NodeID
		return j.Properties.Status == api.JobRunning && strings.Contains(jobLog(t, s, "resumer"), "resumed at 0"), string(j.Properties.Status)
	})
	time.Sleep(2 * time.Second) // about 10 steps: what is tested is that the retry resumes after them
	if out, err := run(t, s.dir, "compute", "simulate-eviction", "--name", "spot"); err != nil {
		t.Fatalf("simulate-eviction: %v %s", err, out)
	}
	j := waitJob(t, s, "resumer", 120*time.Second)
	if j.Properties.Status != api.JobCompleted || j.Properties.Attempts != 2 || j.Properties.AttemptHistory[0].NodeID != node {
		t.Fatalf("resumer = %s after %d attempts %+v", j.Properties.Status, j.Properties.Attempts, j.Properties.AttemptHistory)
	}
	log := jobLog(t, s, "resumer")
	var resumed int
	if _, err := fmt.Sscanf(log[strings.Index(log, "resumed at "):], "resumed at %d", &resumed); err != nil || resumed < 3 {
		t.Errorf("retry's log %q: want it resumed from the evicted attempt's checkpoint (step ≥ 3)", log)
	}
	if !strings.Contains(log, "done at 40") {
		t.Errorf("retry's log %q: want it done at 40", log)
	}
	dl := t.TempDir()
	if out, err := run(t, s.dir, "job", "download", "resumer", "--download-path", dl); err != nil {
		t.Fatalf("download: %v %s", err, out)
	}
	old, _ := os.ReadFile(filepath.Join(dl, "attempts", "1", "user_logs", "std_log.txt"))
	if !strings.Contains(string(old), fmt.Sprintf("saved %d", resumed)) {
		t.Errorf("attempt 1's log %q: want it saved step %d on SIGTERM", old, resumed)
	}
}

// A job's own failures are retried up to its max_retries (the kumo: YAML
// extension), each attempt with its own log, and then it fails.
func TestUserRetries(t *testing.T) {
	s := startServer(t, "")
	dir := t.TempDir()
	file := filepath.Join(dir, "job.yml")
	yml := "command: echo try; exit 3\ncompute: local\nkumo: {max_retries: 2}\n"
	if err := os.WriteFile(file, []byte(yml), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := run(t, s.dir, "job", "create", "--file", file, "--name", "flaky"); err != nil || !strings.Contains(out, "kumo.max_retries is a kumo extension") {
		t.Fatalf("job create: %v %s", err, out)
	}
	j := waitJob(t, s, "flaky", 60*time.Second)
	p := j.Properties
	if p.Status != api.JobFailed || p.Attempts != 3 || len(p.AttemptHistory) != 3 || p.Error == nil || p.Error.Code != "UserError" {
		t.Fatalf("flaky = %s after %d attempts, error %+v; want Failed (UserError) after 3", p.Status, p.Attempts, p.Error)
	}
	for _, a := range p.AttemptHistory {
		if a.FailureClass != "user" || a.ExitCode == nil || *a.ExitCode != 3 {
			t.Errorf("attempt %+v, want a user failure with exit code 3", a)
		}
	}
	if log := jobLog(t, s, "flaky"); log != "try\n" {
		t.Errorf("current log = %q, want the last attempt's only", log)
	}
}

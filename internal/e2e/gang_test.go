package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"kumo/api"
)

// buildRendezvous builds testdata/rendezvous where jobs, which run as
// users of their own, can run it, and returns its path.
func buildRendezvous(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	reachable(t, dir)
	bin := filepath.Join(dir, "rendezvous")
	if out, err := exec.Command("go", "build", "-o", bin, "./testdata/rendezvous").CombinedOutput(); err != nil {
		t.Fatalf("build rendezvous: %v\n%s", err, out)
	}
	if err := os.Chmod(bin, 0o755); err != nil {
		t.Fatal(err)
	}
	return bin
}

// submitGang submits a PyTorch job of nodes × procs processes.
func submitGang(t *testing.T, s *server, name, compute, command string, nodes, procs int) {
	t.Helper()
	body := api.JobResource{Properties: &api.JobProperties{JobType: "Command", Command: command, ComputeID: compute,
		Resources:    &api.JobResourceConfig{InstanceCount: nodes},
		Distribution: &api.Distribution{DistributionType: api.DistributionPyTorch, ProcessCountPerInstance: procs}}}
	if status, raw := s.request(context.Background(), "PUT", workspacePath+"/jobs/"+name, body); status != 201 {
		t.Fatalf("submit %s: %d %s", name, status, raw)
	}
}

// A 2-node × 2-process job meets over TCP on MASTER_ADDR:MASTER_PORT, each
// process with its own RANK of WORLD_SIZE 4, and completes.
func TestGangJobRendezvous(t *testing.T) {
	bin := buildRendezvous(t)
	s := startServer(t, "", fastNodes...)
	createCluster(t, s, "gpu", 0, 2, "PT30S")
	submitGang(t, s, "ddp", "gpu", bin, 2, 2)
	j := waitJob(t, s, "ddp", 120*time.Second)
	p := j.Properties
	if p.Status != api.JobCompleted || p.Attempts != 1 {
		t.Fatalf("ddp = %s after %d attempts (%+v); want Completed after 1\nlog:\n%s", p.Status, p.Attempts, p.Error, jobLog(t, s, "ddp"))
	}
	if h := p.AttemptHistory; len(h) != 1 || len(h[0].NodeIDs) != 2 || h[0].NodeIDs[0] == h[0].NodeIDs[1] {
		t.Errorf("history = %+v, want one attempt on two nodes", h)
	}
	if log := jobLog(t, s, "ddp"); !strings.Contains(log, "rendezvous ok: 4 ranks") {
		t.Errorf("rank 0's log %q lacks the rendezvous of 4 ranks", log)
	}
	// Every process's log comes back, from both nodes.
	dl := t.TempDir()
	if out, err := run(t, s.dir, "job", "download", "ddp", "--download-path", dl); err != nil {
		t.Fatalf("download: %v %s", err, out)
	}
	for name, want := range map[string]string{
		"std_log_node_0_process_0.txt": "rendezvous ok: 4 ranks",
		"std_log_node_0_process_1.txt": "rank 1 joined",
		"std_log_node_1_process_0.txt": "rank 2 joined",
		"std_log_node_1_process_1.txt": "rank 3 joined",
	} {
		b, err := os.ReadFile(filepath.Join(dl, "user_logs", name))
		if err != nil || !strings.Contains(string(b), want) {
			t.Errorf("user_logs/%s = %q, %v; want %q", name, b, err, want)
		}
	}
}

// Evicting one node of a running gang requeues the job as one attempt,
// which keeps the surviving node assigned while it waits; it completes on
// the survivor and one replacement.
func TestGangEvictionReplacesOneNode(t *testing.T) {
	bin := buildRendezvous(t)
	// A node is lost only after 10 s of silence: on a loaded machine a
	// rank's node missing heartbeats would end the attempt the test
	// watches, and the eviction is what it is about.
	s := startServer(t, "", append(fastNodes, "--eviction-lead-time", "2s", "--heartbeat-timeout", "10s")...)
	createPriorityCluster(t, s, "spot", "LowPriority", 2)
	submitGang(t, s, "ddp", "spot", bin+" -hold 4s", 2, 2)
	var nodes []string
	waitFor(t, 90*time.Second, "gang to meet", func() (bool, string) {
		j := getJob(t, s, "ddp")
		nodes = j.Properties.NodeIDs
		if j.Properties.Status == api.JobFailed {
			t.Fatalf("ddp failed before its gang met: %+v\nlog:\n%s", j.Properties, jobLog(t, s, "ddp"))
		}
		return j.Properties.Status == api.JobRunning && strings.Contains(jobLog(t, s, "ddp"), "rendezvous ok"), string(j.Properties.Status)
	})
	if len(nodes) != 2 {
		t.Fatalf("running on %q, want 2 nodes", nodes)
	}
	if out, err := run(t, s.dir, "compute", "simulate-eviction", "--name", "spot", "--node-id", nodes[1]); err != nil {
		t.Fatalf("simulate-eviction: %v %s", err, out)
	}
	// While it waits for the replacement, the survivor stays the job's.
	waitFor(t, 60*time.Second, "the job to wait for one replacement", func() (bool, string) {
		p := getJob(t, s, "ddp").Properties
		if p.Attempts > 1 {
			t.Fatalf("attempt 2 began before the wait was seen: %+v", p)
		}
		return p.Status == api.JobQueued && slices.Equal(p.NodeIDs, []string{nodes[0], ""}),
			fmt.Sprintf("%s on %q", p.Status, p.NodeIDs)
	})
	j := waitJob(t, s, "ddp", 180*time.Second)
	p := j.Properties
	if p.Status != api.JobCompleted || p.Attempts != 2 || len(p.AttemptHistory) != 2 {
		t.Fatalf("ddp = %s after %d attempts, history %+v; want Completed after 2", p.Status, p.Attempts, p.AttemptHistory)
	}
	a1, a2 := p.AttemptHistory[0], p.AttemptHistory[1]
	if a1.FailureClass != "preemption" || !slices.Equal(a1.NodeIDs, nodes) {
		t.Errorf("attempt 1 = %+v, want a preemption on %q", a1, nodes)
	}
	if !slices.Contains(a2.NodeIDs, nodes[0]) || slices.Contains(a2.NodeIDs, nodes[1]) {
		t.Errorf("attempt 2 ran on %q, want the survivor %s and a replacement for %s", a2.NodeIDs, nodes[0], nodes[1])
	}
}

// Two gang jobs that together need more nodes than the cluster may have
// do not wait on each other: one runs, then the other.
func TestGangJobsNeverDeadlock(t *testing.T) {
	s := startServer(t, "", fastNodes...)
	createCluster(t, s, "cpu", 0, 3, "PT30S")
	submitGang(t, s, "first", "cpu", `echo "rank $RANK of $WORLD_SIZE"; sleep 2`, 2, 1)
	submitGang(t, s, "second", "cpu", `echo "rank $RANK of $WORLD_SIZE"; sleep 2`, 2, 1)
	var ends [2]api.JobResource
	for i, name := range []string{"first", "second"} {
		ends[i] = waitJob(t, s, name, 180*time.Second)
		if p := ends[i].Properties; p.Status != api.JobCompleted {
			t.Errorf("%s = %s (%+v), want Completed", name, p.Status, p.Error)
		}
	}
	// Three nodes cannot hold two gangs of two at once: they shared a node,
	// which the second got only once the first's rank there was done.
	if len(ends[0].Properties.AttemptHistory) != 1 || len(ends[1].Properties.AttemptHistory) != 1 {
		t.Fatalf("histories %+v, %+v; want one attempt each", ends[0].Properties.AttemptHistory, ends[1].Properties.AttemptHistory)
	}
	a, b := ends[0].Properties.AttemptHistory[0].NodeIDs, ends[1].Properties.AttemptHistory[0].NodeIDs
	if len(a) != 2 || len(b) != 2 || !slices.ContainsFunc(a, func(id string) bool { return slices.Contains(b, id) }) {
		t.Errorf("first ran on %q, second on %q; want two nodes each, sharing one (the cluster has 3)", a, b)
	}
}

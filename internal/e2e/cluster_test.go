package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"kumo/api"
)

// fastNodes are kumo up flags for short heartbeats, so that failures show
// within seconds in tests.
var fastNodes = []string{"--heartbeat-interval", "200ms", "--heartbeat-timeout", "3s", "--boot-timeout", "30s"}

func createCluster(t testing.TB, s *server, name string, min, max int, idle string) {
	t.Helper()
	body := map[string]any{"properties": map[string]any{"computeType": "AmlCompute", "properties": map[string]any{
		"vmSize": "Standard_D2_v2", "scaleSettings": map[string]any{"minNodeCount": min, "maxNodeCount": max, "nodeIdleTimeBeforeScaleDown": idle}}}}
	if status, raw := s.request(context.Background(), "PUT", workspacePath+"/computes/"+name, body); status != 201 {
		t.Fatalf("create cluster: %d %s", status, raw)
	}
	waitFor(t, 30*time.Second, "cluster "+name+" provisioned", func() (bool, string) {
		c := getCompute(t, s, name)
		return c.Properties.ProvisioningState == api.ProvisioningSucceeded, string(c.Properties.ProvisioningState)
	})
}

func getCompute(t testing.TB, s *server, name string) api.ComputeResource {
	t.Helper()
	status, raw := s.request(context.Background(), "GET", workspacePath+"/computes/"+name, nil)
	if status != 200 {
		t.Fatalf("get compute %s: %d %s", name, status, raw)
	}
	var c api.ComputeResource
	if err := json.Unmarshal(raw, &c); err != nil {
		t.Fatal(err)
	}
	return c
}

func submitJob(t testing.TB, s *server, name, compute, command string) {
	t.Helper()
	body := api.JobResource{Properties: &api.JobProperties{JobType: "Command", Command: command, ComputeID: compute}}
	if status, raw := s.request(context.Background(), "PUT", workspacePath+"/jobs/"+name, body); status != 201 {
		t.Fatalf("submit %s: %d %s", name, status, raw)
	}
}

func getJob(t testing.TB, s *server, name string) api.JobResource {
	t.Helper()
	status, raw := s.request(context.Background(), "GET", workspacePath+"/jobs/"+name, nil)
	if status != 200 {
		t.Fatalf("get job %s: %d %s", name, status, raw)
	}
	var j api.JobResource
	if err := json.Unmarshal(raw, &j); err != nil {
		t.Fatal(err)
	}
	return j
}

func waitJob(t testing.TB, s *server, name string, timeout time.Duration) api.JobResource {
	t.Helper()
	var j api.JobResource
	waitFor(t, timeout, "job "+name+" to end", func() (bool, string) {
		j = getJob(t, s, name)
		switch j.Properties.Status {
		case api.JobCompleted, api.JobFailed, api.JobCanceled:
			return true, ""
		}
		return false, string(j.Properties.Status)
	})
	return j
}

func jobLog(t *testing.T, s *server, name string) string {
	t.Helper()
	status, raw := s.request(context.Background(), "GET", workspacePath+"/jobs/"+name+"/logs", nil)
	if status != 200 {
		t.Fatalf("logs %s: %d %s", name, status, raw)
	}
	return string(raw)
}

// waitFor polls cond every 50 ms until it holds or timeout passes.
func waitFor(t testing.TB, timeout time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	waitEvery(t, 50*time.Millisecond, timeout, what, cond)
}

// waitEvery polls cond every interval until it holds or timeout passes,
// and then fails t with what cond last said.
func waitEvery(t testing.TB, interval, timeout time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		ok, state := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s (last: %s)", timeout, what, state)
		}
		time.Sleep(interval)
	}
}

func nodeCount(c api.ComputeResource) int32 { return c.Properties.Properties.CurrentNodeCount }

// TestClusterScalesWithJobs: a cluster with min 0 grows 0 → N as N jobs
// queue, runs them, and returns to 0 after the idle time; scaling decisions
// are recorded as events; a job running across the idle time is never
// killed.
func TestClusterScalesWithJobs(t *testing.T) {
	s := startServer(t, "", fastNodes...)
	createCluster(t, s, "cpu", 0, 3, "PT1S")
	if n := nodeCount(getCompute(t, s, "cpu")); n != 0 {
		t.Fatalf("a new cluster with min 0 has %d nodes", n)
	}
	for i := range 3 {
		submitJob(t, s, fmt.Sprintf("job%d", i), "azureml:cpu", fmt.Sprintf("sleep 2; echo done-%d", i))
	}
	maxSeen := int32(0)
	waitFor(t, 60*time.Second, "3 jobs to finish", func() (bool, string) {
		c := getCompute(t, s, "cpu")
		if n := c.Properties.Properties.NodeStateCounts.RunningNodeCount; n > maxSeen {
			maxSeen = n
		}
		for i := range 3 {
			if st := getJob(t, s, fmt.Sprintf("job%d", i)).Properties.Status; st != api.JobCompleted {
				if st == api.JobFailed || st == api.JobCanceled {
					t.Fatalf("job%d ended %s: %+v", i, st, getJob(t, s, fmt.Sprintf("job%d", i)).Properties.Error)
				}
				return false, fmt.Sprintf("job%d %s, nodes %d", i, st, nodeCount(c))
			}
		}
		return true, ""
	})
	if maxSeen != 3 {
		t.Errorf("at most %d nodes ran jobs at once, want 3 (one per queued job)", maxSeen)
	}
	for i := range 3 {
		if log := jobLog(t, s, fmt.Sprintf("job%d", i)); !strings.Contains(log, fmt.Sprintf("done-%d", i)) {
			t.Errorf("job%d log = %q", i, log)
		}
	}
	waitFor(t, 30*time.Second, "scale down to 0", func() (bool, string) {
		c := getCompute(t, s, "cpu")
		return nodeCount(c) == 0, fmt.Sprint(nodeCount(c))
	})
	status, raw := s.request(context.Background(), "GET", workspacePath+"/computes/cpu/events", nil)
	if status != 200 || !strings.Contains(string(raw), "ScaleUp") || !strings.Contains(string(raw), "ScaleDown") {
		t.Errorf("events: %d %s", status, raw)
	}

	// A job longer than the idle time is never killed by scale-down.
	submitJob(t, s, "long", "cpu", "sleep 3; echo survived")
	j := waitJob(t, s, "long", 60*time.Second)
	if j.Properties.Status != api.JobCompleted || !strings.Contains(jobLog(t, s, "long"), "survived") {
		t.Errorf("long job: %s %+v", j.Properties.Status, j.Properties.Error)
	}
}

// TestMinNodesAndPatchedMax: min > 0 keeps nodes ready; a lower max holds
// jobs in the queue with MaxNodesReached, and a PATCH raising it takes
// effect on the next decision.
func TestMinNodesAndPatchedMax(t *testing.T) {
	s := startServer(t, "", fastNodes...)
	createCluster(t, s, "small", 1, 1, "PT0S")
	waitFor(t, 30*time.Second, "min node idle", func() (bool, string) {
		c := getCompute(t, s, "small")
		return c.Properties.Properties.NodeStateCounts.IdleNodeCount == 1, fmt.Sprintf("%+v", *c.Properties.Properties.NodeStateCounts)
	})
	submitJob(t, s, "a", "small", "sleep 4")
	submitJob(t, s, "b", "small", "echo b-ran")
	waitFor(t, 20*time.Second, "a to run and b to wait for max nodes", func() (bool, string) {
		a, j := getJob(t, s, "a"), getJob(t, s, "b")
		pr := j.Properties.PendingReason
		return a.Properties.Status == api.JobRunning && j.Properties.Status == api.JobQueued && pr != nil && pr.Code == api.PendingMaxNodesReached,
			fmt.Sprintf("a %s, b %s %+v", a.Properties.Status, j.Properties.Status, pr)
	})
	c := getCompute(t, s, "small")
	if c.Properties.Properties.QueuedJobCount != 1 || len(c.Properties.Properties.QueuedJobs) != 1 {
		t.Errorf("availability: queued %d %+v", c.Properties.Properties.QueuedJobCount, c.Properties.Properties.QueuedJobs)
	}
	patch := map[string]any{"properties": map[string]any{"properties": map[string]any{"scaleSettings": map[string]any{"minNodeCount": 1, "maxNodeCount": 2}}}}
	if status, raw := s.request(context.Background(), "PATCH", workspacePath+"/computes/small", patch); status != 200 {
		t.Fatalf("patch: %d %s", status, raw)
	}
	jb := waitJob(t, s, "b", 30*time.Second)
	if jb.Properties.Status != api.JobCompleted {
		t.Fatalf("b: %s", jb.Properties.Status)
	}
	if ja := getJob(t, s, "a"); ja.Properties.Status != api.JobRunning {
		t.Errorf("b finished while a is %s: the raised max did not add a node at once", ja.Properties.Status)
	}
	waitJob(t, s, "a", 30*time.Second)
	waitFor(t, 30*time.Second, "back to min 1", func() (bool, string) {
		c := getCompute(t, s, "small")
		return nodeCount(c) == 1, fmt.Sprint(nodeCount(c))
	})
}

// TestJobLogsFollowCancelAndDownload: output is readable while the job
// runs (kumo job logs -f); cancel ends the whole process tree; outputs/ can
// be downloaded.
func TestJobLogsFollowCancelAndDownload(t *testing.T) {
	s := startServer(t, "", fastNodes...)
	createCluster(t, s, "c1", 0, 2, "PT30S")
	submitJob(t, s, "talk", "c1", "for i in 1 2 3 4 5; do echo line-$i; sleep 0.3; done; mkdir -p outputs; echo result > outputs/model.txt")
	waitFor(t, 30*time.Second, "talk to run", func() (bool, string) {
		st := getJob(t, s, "talk").Properties.Status
		return st == api.JobRunning, string(st)
	})
	out, err := run(t, s.dir, "job", "logs", "talk", "-f")
	if err != nil {
		t.Fatalf("job logs -f: %v\n%s", err, out)
	}
	for i := 1; i <= 5; i++ {
		if !strings.Contains(out, fmt.Sprintf("line-%d", i)) {
			t.Errorf("logs -f lacks line-%d:\n%s", i, out)
		}
	}
	if j := waitJob(t, s, "talk", 30*time.Second); j.Properties.Status != api.JobCompleted {
		t.Fatalf("talk: %s %+v", j.Properties.Status, j.Properties.Error)
	}
	dl := t.TempDir()
	if out, err := run(t, s.dir, "job", "download", "talk", "--download-path", dl); err != nil {
		t.Fatalf("download: %v %s", err, out)
	}
	got, err := os.ReadFile(filepath.Join(dl, "outputs", "model.txt"))
	if err != nil || strings.TrimSpace(string(got)) != "result" {
		t.Errorf("downloaded outputs/model.txt = %q, %v", got, err)
	}

	marker := fmt.Sprintf("kumo-cancel-%d", time.Now().UnixNano())
	submitJob(t, s, "stuck", "c1", fmt.Sprintf("sh -c 'sleep 1000; echo %s' & sleep 1000 # %s", marker, marker))
	waitFor(t, 30*time.Second, "stuck to run", func() (bool, string) {
		st := getJob(t, s, "stuck").Properties.Status
		return st == api.JobRunning && len(s.own.procsMatching(marker)) > 0, string(st)
	})
	if out, err := run(t, s.dir, "job", "cancel", "stuck"); err != nil {
		t.Fatalf("cancel: %v %s", err, out)
	}
	if j := waitJob(t, s, "stuck", 30*time.Second); j.Properties.Status != api.JobCanceled {
		t.Errorf("stuck after cancel: %s", j.Properties.Status)
	}
	waitFor(t, 10*time.Second, "the job's processes to end", func() (bool, string) {
		left := s.own.procsMatching(marker)
		return len(left) == 0, fmt.Sprintf("processes %v left", left)
	})
}

// TestControlPlaneKillKeepsJobs: after kill -9 of the control plane and a
// restart, a queued job stays queued and then runs, and a running job
// finishes with its result and log recorded.
func TestControlPlaneKillKeepsJobs(t *testing.T) {
	s := startServer(t, "", fastNodes...)
	createCluster(t, s, "one", 0, 1, "PT30S")
	submitJob(t, s, "first", "one", "echo before; sleep 3; echo after")
	submitJob(t, s, "second", "one", "echo second-ran")
	waitFor(t, 30*time.Second, "first to run", func() (bool, string) {
		st := getJob(t, s, "first").Properties.Status
		return st == api.JobRunning && strings.Contains(jobLog(t, s, "first"), "before"), string(st)
	})
	s.kill()
	// Same address: the nodes reconnect to where the control plane was.
	s2 := startServer(t, s.dir, append(fastNodes, "--addr", strings.TrimPrefix(s.base, "https://"))...)
	if st := getJob(t, s2, "second").Properties.Status; st != api.JobQueued {
		t.Errorf("second after restart is %s, want Queued", st)
	}
	for _, name := range []string{"first", "second"} {
		j := waitJob(t, s2, name, 60*time.Second)
		if j.Properties.Status != api.JobCompleted {
			t.Errorf("%s: %s %+v", name, j.Properties.Status, j.Properties.Error)
		}
	}
	if log := jobLog(t, s2, "first"); !strings.Contains(log, "before") || !strings.Contains(log, "after") || strings.Count(log, "before") != 1 {
		t.Errorf("first's log after the restart = %q, want before and after once each", log)
	}
	if getJob(t, s2, "first").Properties.Attempts != 1 {
		t.Errorf("first ran %d times; the restart should not rerun it\n%s", getJob(t, s2, "first").Properties.Attempts, s2.out)
	}
}

// TestAgentKillRequeuesOnce: after kill -9 of a node's agent, the node is
// marked unusable within the heartbeat timeout and its job is requeued once,
// then failed with the reason when its second node dies too.
func TestAgentKillRequeuesOnce(t *testing.T) {
	s := startServer(t, "", fastNodes...)
	createCluster(t, s, "flaky", 0, 1, "PT30S")
	submitJob(t, s, "victim", "flaky", "sleep 1000")
	for attempt := 1; attempt <= 2; attempt++ {
		var node string
		waitFor(t, 60*time.Second, fmt.Sprintf("attempt %d to run", attempt), func() (bool, string) {
			j := getJob(t, s, "victim")
			node = j.Properties.NodeID
			return j.Properties.Status == api.JobRunning && j.Properties.Attempts == attempt, fmt.Sprintf("%s attempt %d", j.Properties.Status, j.Properties.Attempts)
		})
		rec, ok := s.own.node(node)
		if !ok || !rec.agentAlive() {
			t.Fatalf("no live agent process recorded for node %s", node)
		}
		_ = syscall.Kill(rec.PID, syscall.SIGKILL)
		waitFor(t, 20*time.Second, "node "+node+" unusable or replaced", func() (bool, string) {
			j := getJob(t, s, "victim")
			return j.Properties.NodeID != node || j.Properties.Status != api.JobRunning, string(j.Properties.Status)
		})
	}
	j := waitJob(t, s, "victim", 30*time.Second)
	if j.Properties.Status != api.JobFailed || j.Properties.Error == nil || !strings.Contains(j.Properties.Error.Message, "requeued once") {
		t.Errorf("victim after two node losses: %s %+v", j.Properties.Status, j.Properties.Error)
	}
	status, raw := s.request(context.Background(), "GET", workspacePath+"/computes/flaky/events", nil)
	if status != 200 || !strings.Contains(string(raw), "NodeUnusable") {
		t.Errorf("events lack NodeUnusable: %s", raw)
	}
}

// TestLocalComputeRunsOnHost: the built-in target "local" runs jobs on the
// control plane's host without nodes.
func TestLocalComputeRunsOnHost(t *testing.T) {
	s := startServer(t, "")
	submitJob(t, s, "here", "local", "echo hello from $KUMO_RUN_ID; exit 3")
	j := waitJob(t, s, "here", 30*time.Second)
	if j.Properties.Status != api.JobFailed || j.Properties.ExitCode == nil || *j.Properties.ExitCode != 3 {
		t.Errorf("local job: %s exit %v", j.Properties.Status, j.Properties.ExitCode)
	}
	if log := jobLog(t, s, "here"); !strings.Contains(log, "hello from "+j.Properties.RunID) {
		t.Errorf("local job log = %q", log)
	}
}

// TestWaitForTwoNodes: the source document's flow ends with real nodes:
// creating a cluster with min 2 waits, printing progress, until both are
// ready.
func TestWaitForTwoNodes(t *testing.T) {
	s := startServer(t, "", fastNodes...)
	out, err := run(t, s.dir, "compute", "create", "--name", "pool", "--size", "STANDARD_D2_V2", "--min-instances", "2", "--max-instances", "2")
	if err != nil {
		t.Fatalf("create: %v\n%s", err, out)
	}
	for _, want := range []string{`Provisioning operation finished, operation "Succeeded"`, "Minimum number of nodes requested have been provisioned"} {
		if !strings.Contains(out, want) {
			t.Errorf("create output lacks %q:\n%s", want, out)
		}
	}
	c := getCompute(t, s, "pool")
	if n := c.Properties.Properties.NodeStateCounts; n.IdleNodeCount != 2 {
		t.Errorf("after create: %+v, want 2 idle nodes", *n)
	}
	status, raw := s.request(context.Background(), "POST", workspacePath+"/computes/pool/listNodes", nil)
	var nodes api.NodeList
	if status != 200 || json.Unmarshal(raw, &nodes) != nil || len(nodes.Nodes) != 2 {
		t.Fatalf("listNodes: %d %s", status, raw)
	}
	ports := map[int32]bool{}
	for _, n := range nodes.Nodes {
		if n.NodeID == "" || n.PrivateIPAddress == "" || n.Port < 50000 || n.NodeState != api.NodeIdle {
			t.Errorf("node %+v: want an ID, an address, an SSH port ≥ 50000 and state idle", n)
		}
		ports[n.Port] = true
	}
	if len(ports) != 2 {
		t.Errorf("nodes share an SSH port: %+v", nodes.Nodes)
	}
}

// TestRelativeDataDir: kumo up with the README's relative data directory
// gets working nodes (agents run in their own directories).
func TestRelativeDataDir(t *testing.T) {
	s := startServer(t, "", append(fastNodes, "--data-dir", "rel-data")...)
	createCluster(t, s, "rel", 1, 1, "PT1M")
	waitFor(t, 30*time.Second, "a node to register", func() (bool, string) {
		c := getCompute(t, s, "rel")
		return c.Properties.Properties.NodeStateCounts.IdleNodeCount == 1, fmt.Sprintf("%+v", *c.Properties.Properties.NodeStateCounts)
	})
	submitJob(t, s, "rel-job", "rel", "echo ok")
	if j := waitJob(t, s, "rel-job", 30*time.Second); j.Properties.Status != api.JobCompleted {
		t.Errorf("job: %s %+v", j.Properties.Status, j.Properties.Error)
	}
}

// TestDeleteClusterWithNodes: deleting a cluster stops its nodes' agents
// and ends its jobs before the compute disappears.
func TestDeleteClusterWithNodes(t *testing.T) {
	s := startServer(t, "", fastNodes...)
	createCluster(t, s, "gone", 1, 1, "PT1M")
	waitFor(t, 30*time.Second, "a node", func() (bool, string) {
		return getCompute(t, s, "gone").Properties.Properties.NodeStateCounts.IdleNodeCount == 1, ""
	})
	submitJob(t, s, "doomed", "gone", "sleep 1000")
	waitFor(t, 30*time.Second, "the job to run", func() (bool, string) {
		st := getJob(t, s, "doomed").Properties.Status
		return st == api.JobRunning, string(st)
	})
	var nodes []nodeRecord // read now: the delete removes them
	for _, r := range s.own.nodes() {
		if strings.HasPrefix(r.Instance.ID, "gone-") {
			nodes = append(nodes, r)
		}
	}
	if len(nodes) != 1 {
		t.Fatalf("node records of cluster gone: %+v, want 1", nodes)
	}
	if out, err := run(t, s.dir, "compute", "delete", "--name", "gone", "--yes"); err != nil {
		t.Fatalf("delete: %v\n%s", err, out)
	}
	status, _ := s.request(context.Background(), "GET", workspacePath+"/computes/gone", nil)
	if status != 404 {
		t.Errorf("compute after delete: %d, want 404", status)
	}
	if j := waitJob(t, s, "doomed", 30*time.Second); j.Properties.Status != api.JobFailed {
		t.Errorf("job on a deleted cluster: %s, want Failed", j.Properties.Status)
	}
	waitFor(t, 20*time.Second, "the node's agent to stop", func() (bool, string) {
		left := s.own.procsMatching("agent --node-id=gone-")
		for _, r := range nodes {
			left = append(left, r.members()...)
		}
		return len(left) == 0, fmt.Sprintf("node processes %v left", left)
	})
}

package dispatch

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"go.uber.org/goleak"

	"kumo/internal/agentproto"
	"kumo/internal/jobfiles"
	"kumo/internal/jobuser/jobusertest"
	"kumo/internal/model"
	"kumo/internal/store/sqlite"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

const (
	wsID    = "/subscriptions/s/resourceGroups/rg/providers/Microsoft.MachineLearningServices/workspaces/ws"
	cpuID   = wsID + "/computes/cpu"
	localID = wsID + "/computes/local"
)

var t0 = time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)

// fakeSender records what the dispatcher sends; nodes in connected are
// connected.
type fakeSender struct {
	mu        sync.Mutex
	connected map[string]bool
	sent      []sent
}

type sent struct {
	Node  string
	Type  agentproto.Type
	RunID string
}

func (f *fakeSender) Send(nodeID string, m agentproto.Message) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.connected[nodeID] {
		return fmt.Errorf("node %s not connected", nodeID)
	}
	runID := m.RunID
	if m.Job != nil {
		runID = m.Job.RunID
	}
	f.sent = append(f.sent, sent{Node: nodeID, Type: m.Type, RunID: runID})
	return nil
}

func (f *fakeSender) Connected(nodeID string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.connected[nodeID]
}

func (f *fakeSender) messages() []sent {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]sent(nil), f.sent...)
}

func runMessage(j model.Job) agentproto.Message {
	return agentproto.Message{Type: agentproto.TypeRun, Job: &agentproto.JobSpec{RunID: j.RunID, Name: j.Name, Command: j.Command}}
}

type env struct {
	st      *sqlite.Store
	files   *jobfiles.Files
	sender  *fakeSender
	d       *Dispatcher
	changed chan string
}

func newEnv(t *testing.T, connected ...string) *env {
	t.Helper()
	dir := t.TempDir()
	st, err := sqlite.Open(t.Context(), filepath.Join(dir, "kumo.db"))
	if err != nil {
		t.Fatalf("sqlite.Open: %v", err)
	}
	t.Cleanup(func() { st.Close() })
	files, err := jobfiles.New(filepath.Join(dir, "files"))
	if err != nil {
		t.Fatal(err)
	}
	e := &env{st: st, files: files, sender: &fakeSender{connected: map[string]bool{}}, changed: make(chan string, 100)}
	for _, id := range connected {
		e.sender.connected[id] = true
	}
	e.d = New(Config{
		Store:    st,
		Sender:   e.sender,
		Run:      runMessage,
		Files:    files,
		LocalDir: filepath.Join(dir, "local"),
		Resync:   time.Hour,
		Changed: func(id string) {
			select {
			case e.changed <- id:
			default:
			}
		},
		Log: slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	return e
}

func (e *env) job(t *testing.T, name, computeID string, seq int64, mod func(*model.Job)) model.Job {
	t.Helper()
	j := model.Job{
		ID: wsID + "/jobs/" + name, WorkspaceID: wsID, Name: name, RunID: "run-" + name, ComputeID: computeID,
		Command: "true", InstanceCount: 1, Status: model.JobQueued, Seq: seq, CreatedAt: t0,
	}
	if mod != nil {
		mod(&j)
	}
	if err := e.st.JobCreate(t.Context(), j); err != nil {
		t.Fatalf("JobCreate(%s): %v", name, err)
	}
	return j
}

func (e *env) node(t *testing.T, id string, state model.NodeState, idleSince time.Time, jobID string) {
	t.Helper()
	n := model.Node{ID: id, ComputeID: cpuID, State: state, CreatedAt: t0, StateSince: idleSince, JobID: jobID}
	if err := e.st.NodeCreate(t.Context(), n); err != nil {
		t.Fatalf("NodeCreate(%s): %v", id, err)
	}
}

// assignments returns job name → node ID of the compute's jobs ("" when
// queued), and node ID → job name.
func (e *env) assignments(t *testing.T, computeID string) (jobs, nodes map[string]string) {
	t.Helper()
	js, err := e.st.JobListByCompute(t.Context(), computeID, model.JobQueued, model.JobPreparing)
	if err != nil {
		t.Fatal(err)
	}
	jobs = map[string]string{}
	byID := map[string]string{}
	for _, j := range js {
		jobs[j.Name] = j.NodeID
		byID[j.ID] = j.Name
		if (j.Status == model.JobPreparing) != (j.NodeID != "") {
			t.Errorf("job %s is %s on node %q", j.Name, j.Status, j.NodeID)
		}
	}
	ns, err := e.st.NodeListByCompute(t.Context(), computeID)
	if err != nil {
		t.Fatal(err)
	}
	nodes = map[string]string{}
	for _, n := range ns {
		nodes[n.ID] = byID[n.JobID]
		if (n.State == model.NodeRunning) != (n.JobID != "") {
			t.Errorf("node %s is %s with job %q", n.ID, n.State, n.JobID)
		}
	}
	return jobs, nodes
}

func TestReconcileAssigns(t *testing.T) {
	e := newEnv(t, "n1", "n2", "n3")
	// Longest idle first: n2, n3, n1. n4 has been idle longest but is not
	// connected; n5 is connected but busy.
	e.node(t, "n1", model.NodeIdle, t0.Add(3*time.Minute), "")
	e.node(t, "n2", model.NodeIdle, t0.Add(1*time.Minute), "")
	e.node(t, "n3", model.NodeIdle, t0.Add(2*time.Minute), "")
	e.node(t, "n4", model.NodeIdle, t0, "")
	e.sender.connected["n5"] = true
	busy := e.job(t, "busy", cpuID, 1, func(j *model.Job) { j.Status, j.NodeID = model.JobRunning, "n5" })
	e.node(t, "n5", model.NodeRunning, t0, busy.ID)
	// FIFO by Seq, not by name or creation order.
	e.job(t, "a", cpuID, 30, nil)
	e.job(t, "b", cpuID, 10, nil)
	e.job(t, "c", cpuID, 20, nil)
	e.job(t, "d", cpuID, 40, nil)
	e.job(t, "other", wsID+"/computes/gpu", 5, nil)

	if err := e.d.Reconcile(t.Context(), cpuID); err != nil {
		t.Fatalf("Reconcile: %v", err)
	}
	wantSent := []sent{
		{Node: "n2", Type: agentproto.TypeRun, RunID: "run-b"},
		{Node: "n3", Type: agentproto.TypeRun, RunID: "run-c"},
		{Node: "n1", Type: agentproto.TypeRun, RunID: "run-a"},
	}
	if diff := cmp.Diff(wantSent, e.sender.messages()); diff != "" {
		t.Errorf("sent (-want +got):\n%s", diff)
	}
	jobs, nodes := e.assignments(t, cpuID)
	wantJobs := map[string]string{"a": "n1", "b": "n2", "c": "n3", "d": ""}
	wantNodes := map[string]string{"n1": "a", "n2": "b", "n3": "c", "n4": "", "n5": ""}
	if diff := cmp.Diff(wantJobs, jobs); diff != "" {
		t.Errorf("job → node (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(wantNodes, nodes); diff != "" {
		t.Errorf("node → job (-want +got):\n%s", diff)
	}
	j, err := e.st.JobGet(t.Context(), wsID+"/jobs/b")
	if err != nil {
		t.Fatal(err)
	}
	if j.Attempts != 1 {
		t.Errorf("job b Attempts = %d, want 1", j.Attempts)
	}
	select {
	case id := <-e.changed:
		if id != cpuID {
			t.Errorf("Changed(%s), want %s", id, cpuID)
		}
	default:
		t.Error("Changed was not called after assigning jobs")
	}

	// A second pass changes nothing and sends nothing.
	if err := e.d.Reconcile(t.Context(), cpuID); err != nil {
		t.Fatalf("second Reconcile: %v", err)
	}
	if diff := cmp.Diff(wantSent, e.sender.messages()); diff != "" {
		t.Errorf("sent after a second pass (-want +got):\n%s", diff)
	}
}

func TestReconcileDisconnectedNodeGetsNothing(t *testing.T) {
	e := newEnv(t)
	e.node(t, "n1", model.NodeIdle, t0, "")
	e.job(t, "a", cpuID, 1, nil)
	if err := e.d.Reconcile(t.Context(), cpuID); err != nil {
		t.Fatalf("Reconcile: %v", err)
	}
	if got := e.sender.messages(); len(got) != 0 {
		t.Errorf("sent %v, want nothing", got)
	}
	jobs, _ := e.assignments(t, cpuID)
	if diff := cmp.Diff(map[string]string{"a": ""}, jobs); diff != "" {
		t.Errorf("job → node (-want +got):\n%s", diff)
	}
}

// An idle node whose agent was not connected when a job queued gets the
// job once it is, with no other change to tell the loop (its replica was
// paused, say): the loop looks again on its next tick.
func TestLoopRetriesUnreachedIdleNode(t *testing.T) {
	e := newEnv(t)
	e.d.cfg.Resync = 20 * time.Millisecond
	e.node(t, "n1", model.NodeIdle, t0, "")
	e.job(t, "a", cpuID, 1, nil)
	e.d.Start(t.Context())
	defer e.d.Stop()
	e.d.Notify(cpuID)
	time.Sleep(100 * time.Millisecond)
	if got := e.sender.messages(); len(got) != 0 {
		t.Fatalf("sent %v to a node not connected", got)
	}
	e.sender.mu.Lock()
	e.sender.connected["n1"] = true
	e.sender.mu.Unlock()
	eventually(t, "the job to be sent", func() bool { return len(e.sender.messages()) == 1 })
}

// Concurrent passes over the same compute never give a job two nodes or a
// node two jobs.
func TestReconcileConcurrent(t *testing.T) {
	e := newEnv(t, "n1", "n2")
	e.node(t, "n1", model.NodeIdle, t0, "")
	e.node(t, "n2", model.NodeIdle, t0.Add(time.Second), "")
	for i := range 5 {
		e.job(t, fmt.Sprintf("j%d", i), cpuID, int64(i+1), nil)
	}
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			if err := e.d.Reconcile(t.Context(), cpuID); err != nil {
				t.Errorf("Reconcile: %v", err)
			}
		})
	}
	wg.Wait()
	// Whatever lost a race is left for the next pass, which must not
	// change the outcome either.
	if err := e.d.Reconcile(t.Context(), cpuID); err != nil {
		t.Fatalf("Reconcile: %v", err)
	}

	got := e.sender.messages()
	sort.Slice(got, func(a, b int) bool { return got[a].Node < got[b].Node })
	want := []sent{{Node: "n1", Type: agentproto.TypeRun, RunID: "run-j0"}, {Node: "n2", Type: agentproto.TypeRun, RunID: "run-j1"}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("sent (-want +got):\n%s", diff)
	}
	jobs, nodes := e.assignments(t, cpuID)
	wantJobs := map[string]string{"j0": "n1", "j1": "n2", "j2": "", "j3": "", "j4": ""}
	if diff := cmp.Diff(wantJobs, jobs); diff != "" {
		t.Errorf("job → node (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(map[string]string{"n1": "j0", "n2": "j1"}, nodes); diff != "" {
		t.Errorf("node → job (-want +got):\n%s", diff)
	}
}

func TestReconcileCancel(t *testing.T) {
	e := newEnv(t, "n1", "n2")
	canceled := e.job(t, "canceled", cpuID, 1, func(j *model.Job) {
		j.Status, j.NodeID, j.CancelRequested = model.JobRunning, "n1", true
	})
	kept := e.job(t, "kept", cpuID, 2, func(j *model.Job) { j.Status, j.NodeID = model.JobPreparing, "n2" })
	e.node(t, "n1", model.NodeRunning, t0, canceled.ID)
	e.node(t, "n2", model.NodeRunning, t0, kept.ID)

	for range 2 { // the cancel is repeated on every pass
		if err := e.d.Reconcile(t.Context(), cpuID); err != nil {
			t.Fatalf("Reconcile: %v", err)
		}
	}
	want := []sent{
		{Node: "n1", Type: agentproto.TypeCancel, RunID: "run-canceled"},
		{Node: "n1", Type: agentproto.TypeCancel, RunID: "run-canceled"},
	}
	if diff := cmp.Diff(want, e.sender.messages()); diff != "" {
		t.Errorf("sent (-want +got):\n%s", diff)
	}
}

// eventually polls cond until it holds, failing the test after five
// seconds.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second) // generous: a loaded host is slow, not wrong
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		<-tick.C
	}
}

// waitTerminal waits for a job to end and returns it.
func (e *env) waitTerminal(t *testing.T, runID string) model.Job {
	t.Helper()
	var j model.Job
	eventually(t, runID+" to end", func() bool {
		var err error
		j, err = e.st.JobGetByRunID(t.Context(), runID)
		if err != nil {
			t.Fatal(err)
		}
		return j.Status.Terminal()
	})
	return j
}

func intp(i int) *int { return &i }

func TestLocalJobs(t *testing.T) {
	tests := []struct {
		name       string
		command    string
		wantStatus model.JobStatus
		wantCode   *int
		wantLog    string
	}{
		{name: "ok", command: "echo hi", wantStatus: model.JobCompleted, wantCode: intp(0), wantLog: "hi\n"},
		{name: "fails", command: "echo oops >&2; exit 3", wantStatus: model.JobFailed, wantCode: intp(3), wantLog: "oops\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t)
			defer e.d.Stop()
			e.job(t, tt.name, localID, 1, func(j *model.Job) { j.Command = tt.command })
			if !IsLocal(localID) || IsLocal(cpuID) || IsLocal("/computes/local") {
				t.Fatal("IsLocal does not recognise the local compute")
			}
			if err := e.d.Reconcile(t.Context(), localID); err != nil {
				t.Fatalf("Reconcile: %v", err)
			}
			j := e.waitTerminal(t, "run-"+tt.name)
			if j.Status != tt.wantStatus || !cmp.Equal(j.ExitCode, tt.wantCode) {
				t.Errorf("job = %s with exit code %v, want %s with %v", j.Status, fmtCode(j.ExitCode), tt.wantStatus, fmtCode(tt.wantCode))
			}
			if j.Attempts != 1 || j.StartedAt.IsZero() || j.EndedAt.IsZero() {
				t.Errorf("job Attempts = %d, StartedAt = %v, EndedAt = %v; want 1 and both set", j.Attempts, j.StartedAt, j.EndedAt)
			}
			var buf bytes.Buffer
			if _, err := e.files.ReadLog(j.RunID, jobfiles.StdLog, 0, &buf); err != nil {
				t.Fatal(err)
			}
			if got := buf.String(); got != tt.wantLog {
				t.Errorf("std_log = %q, want %q", got, tt.wantLog)
			}
			// A job already started is not started again.
			if err := e.d.Reconcile(t.Context(), localID); err != nil {
				t.Fatalf("Reconcile: %v", err)
			}
			if got, err := e.st.JobGetByRunID(t.Context(), j.RunID); err != nil || got.Attempts != 1 {
				t.Errorf("after a second pass Attempts = %d (err %v), want 1", got.Attempts, err)
			}
		})
	}
}

func fmtCode(c *int) string {
	if c == nil {
		return "nil"
	}
	return fmt.Sprint(*c)
}

// Running a job records Running before the end: a job that blocks until
// the test lets it go is seen Running.
func TestLocalJobRunningThenCanceled(t *testing.T) {
	e := newEnv(t)
	defer e.d.Stop()
	e.job(t, "long", localID, 1, func(j *model.Job) { j.Command = "echo started; exec sleep 30" })
	if err := e.d.Reconcile(t.Context(), localID); err != nil {
		t.Fatalf("Reconcile: %v", err)
	}
	eventually(t, "the job to run and print", func() bool {
		j, err := e.st.JobGetByRunID(t.Context(), "run-long")
		if err != nil {
			t.Fatal(err)
		}
		var buf bytes.Buffer
		e.files.ReadLog("run-long", jobfiles.Stdout, 0, &buf)
		return j.Status == model.JobRunning && strings.Contains(buf.String(), "started")
	})
	j, err := e.st.JobGetByRunID(t.Context(), "run-long")
	if err != nil {
		t.Fatal(err)
	}
	j.CancelRequested = true
	if err := e.st.JobUpdate(t.Context(), j, model.JobRunning, nil, ""); err != nil {
		t.Fatal(err)
	}
	if err := e.d.Reconcile(t.Context(), localID); err != nil {
		t.Fatalf("Reconcile: %v", err)
	}
	if got := e.waitTerminal(t, "run-long"); got.Status != model.JobCanceled {
		t.Errorf("canceled job status = %s, want Canceled", got.Status)
	}
}

// Start requeues a local job that a restart interrupted and runs it; a
// Notify then assigns a node's job; Stop ends everything.
func TestStartStop(t *testing.T) {
	e := newEnv(t, "n1")
	e.job(t, "interrupted", localID, 1, func(j *model.Job) {
		j.Status, j.Attempts, j.StartedAt, j.Command = model.JobRunning, 1, t0, "echo again"
	})
	e.d.Start(t.Context())
	defer e.d.Stop()

	j := e.waitTerminal(t, "run-interrupted")
	if j.Status != model.JobCompleted || j.Attempts != 2 {
		t.Errorf("interrupted job = %s after %d attempts, want Completed after 2", j.Status, j.Attempts)
	}

	e.node(t, "n1", model.NodeIdle, t0, "")
	e.job(t, "remote", cpuID, 2, nil)
	e.d.Notify(cpuID)
	eventually(t, "the job to be sent", func() bool { return len(e.sender.messages()) == 1 })
	want := []sent{{Node: "n1", Type: agentproto.TypeRun, RunID: "run-remote"}}
	if diff := cmp.Diff(want, e.sender.messages()); diff != "" {
		t.Errorf("sent (-want +got):\n%s", diff)
	}
}

// Stop leaves a running local job for the next start to requeue.
func TestStopLeavesLocalJob(t *testing.T) {
	e := newEnv(t)
	e.job(t, "long", localID, 1, func(j *model.Job) { j.Command = "exec sleep 30" })
	e.d.Start(context.Background())
	eventually(t, "the job to run", func() bool {
		j, err := e.st.JobGetByRunID(t.Context(), "run-long")
		if err != nil {
			t.Fatal(err)
		}
		return j.Status == model.JobRunning
	})
	e.d.Stop()
	j, err := e.st.JobGetByRunID(t.Context(), "run-long")
	if err != nil {
		t.Fatal(err)
	}
	if j.Status != model.JobRunning {
		t.Errorf("after Stop the job is %s, want still Running", j.Status)
	}
}

// TestLocalJobsOneUIDEach: as root, each running local job holds a uid of
// LocalUIDs; with one uid, a second job waits queued until the first ends,
// then runs as that uid.
func TestLocalJobsOneUIDEach(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("job uids need root")
	}
	e := newEnv(t)
	defer e.d.Stop()
	r := jobusertest.Block(t, 1, e.d.cfg.LocalDir) // the dispatcher finds it its own
	e.d.cfg.LocalUIDs = &r
	for _, d := range []string{filepath.Dir(e.d.cfg.LocalDir), filepath.Dir(filepath.Dir(e.d.cfg.LocalDir))} {
		if err := os.Chmod(d, 0o711); err != nil {
			t.Fatal(err)
		}
	}
	e.job(t, "a", localID, 1, func(j *model.Job) { j.Command = "id -u; exec sleep 30" })
	e.job(t, "b", localID, 2, func(j *model.Job) { j.Command = "id -u" })
	if err := e.d.Reconcile(t.Context(), localID); err != nil {
		t.Fatalf("Reconcile: %v", err)
	}
	log := func(runID string) string {
		var buf bytes.Buffer
		e.files.ReadLog(runID, jobfiles.Stdout, 0, &buf)
		return buf.String()
	}
	eventually(t, "a to run as the range's uid", func() bool { return log("run-a") == strconv.Itoa(r.First)+"\n" })
	if b, err := e.st.JobGetByRunID(t.Context(), "run-b"); err != nil || b.Status != model.JobQueued {
		t.Fatalf("b while a holds the only uid: %s, %v; want Queued", b.Status, err)
	}
	a, err := e.st.JobGetByRunID(t.Context(), "run-a")
	if err != nil {
		t.Fatal(err)
	}
	a.CancelRequested = true
	if err := e.st.JobUpdate(t.Context(), a, a.Status, nil, ""); err != nil {
		t.Fatal(err)
	}
	if err := e.d.Reconcile(t.Context(), localID); err != nil {
		t.Fatalf("Reconcile: %v", err)
	}
	e.waitTerminal(t, "run-a")
	if err := e.d.Reconcile(t.Context(), localID); err != nil {
		t.Fatalf("Reconcile: %v", err)
	}
	if b := e.waitTerminal(t, "run-b"); b.Status != model.JobCompleted || log("run-b") != strconv.Itoa(r.First)+"\n" {
		t.Errorf("b: %s printing %q, want Completed as %d", b.Status, log("run-b"), r.First)
	}
}

// TestLocalDisabled: with compute "local" off, its queued jobs are left
// alone.
func TestLocalDisabled(t *testing.T) {
	e := newEnv(t)
	defer e.d.Stop()
	e.d.cfg.LocalDisabled = true
	e.job(t, "a", localID, 1, nil)
	if err := e.d.Reconcile(t.Context(), localID); err != nil {
		t.Fatalf("Reconcile: %v", err)
	}
	if a, err := e.st.JobGetByRunID(t.Context(), "run-a"); err != nil || a.Status != model.JobQueued || a.Attempts != 0 {
		t.Errorf("job on a disabled local: %s, attempts %d, %v; want Queued, 0", a.Status, a.Attempts, err)
	}
}

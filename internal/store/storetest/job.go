package storetest

import (
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"kumo/internal/model"
	"kumo/internal/store"
)

var jobTests = []test{
	{"CreateGet", testJobCreateGet},
	{"EmptyFields", testJobEmptyFields},
	{"GetMissing", testJobGetMissing},
	{"CreateConflict", testJobCreateConflict},
	{"List", testJobList},
	{"ListByCompute", testJobListByCompute},
	{"ListByStatus", testJobListByStatus},
	{"MaxSeq", testJobMaxSeq},
	{"Submit", testJobSubmit},
	{"SubmitConcurrent", testJobSubmitConcurrent},
	{"QueueQueries", testJobQueueQueries},
	{"CountsFollowChanges", testJobCountsFollowChanges},
	{"SnapshotIDs", testJobSnapshotIDs},
	{"Update", testJobUpdate},
	{"UpdateRunIDConflict", testJobUpdateRunIDConflict},
	{"UpdatePrecondition", testJobUpdatePrecondition},
	{"UpdateRace", testJobUpdateRace},
	{"History", testJobHistory},
	{"UpdateNodes", testJobUpdateNodes},
	{"UpdateNodesRace", testJobUpdateNodesRace},
}

// newJob returns a queued job of ws on the compute named compute, with
// every field that a queued job has set. Its RunID is derived from ws and
// name, so jobs of different names or workspaces do not share one.
func newJob(ws model.Workspace, name, compute string, seq int64) model.Job {
	return model.Job{
		ID:             ws.ID + "/jobs/" + name,
		WorkspaceID:    ws.ID,
		Name:           name,
		RunID:          "run-" + ws.Name + "-" + strings.ToLower(name),
		ComputeID:      ws.ID + "/computes/" + compute,
		DisplayName:    "job " + name,
		ExperimentName: "exp",
		Command:        "python train.py --lr 0.1",
		Env:            map[string]string{"A": "1", "b": "two"},
		SnapshotID:     "snap-1",
		Timeout:        90*time.Minute + 7,
		InstanceCount:  1,
		Status:         model.JobQueued,
		Seq:            seq,
		CreatedAt:      at(10),
		CreatedBy:      "alice",
		CreatedByToken: "kt_alice",
		Warnings:       []string{"environment ignored"},
	}
}

// mustCreateJob creates j or fails the test.
func mustCreateJob(t *testing.T, s store.Store, j model.Job) {
	t.Helper()
	if err := s.JobCreate(t.Context(), j); err != nil {
		t.Fatalf("JobCreate(%s): %v", j.ID, err)
	}
}

// wantJob fails the test unless the stored job with id equals want.
func wantJob(t *testing.T, s store.Store, id string, want model.Job) {
	t.Helper()
	got, err := s.JobGet(t.Context(), id)
	if err != nil {
		t.Fatalf("JobGet(%s): %v", id, err)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("JobGet(%s) mismatch (-want +got):\n%s", id, diff)
	}
}

// wantNoJob fails the test if a job with id exists.
func wantNoJob(t *testing.T, s store.Store, id string) {
	t.Helper()
	if _, err := s.JobGet(t.Context(), id); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("JobGet(%s) error = %v, want ErrNotFound", id, err)
	}
}

// jobNames returns the names of js, for compact comparisons.
func jobNames(js []model.Job) []string {
	var names []string
	for _, j := range js {
		names = append(names, j.Name)
	}
	return names
}

// finished returns j failed with exit code code on node, with every field
// a finished job has set.
func finished(j model.Job, node string, code int) model.Job {
	j.Status = model.JobFailed
	j.NodeID = node
	j.Attempts = 2
	j.ExitCode = &code
	j.Error = &model.Error{Code: "UserError", Message: "exit status 3"}
	j.CancelRequested = true
	j.StartedAt = at(11)
	j.EndedAt = at(12)
	j.MaxRetries = 1
	j.History = []model.Attempt{
		{Number: 1, NodeID: "node-0", StartedAt: at(10), EndedAt: at(10).Add(time.Minute),
			Class: model.ClassPreemption, Reason: model.ReasonPreempted, Message: "node node-0: preempted"},
		{Number: 2, NodeID: node, StartedAt: at(11), EndedAt: at(12), Class: model.ClassUser,
			Reason: model.ReasonExited, Message: "exit status 3", ExitCode: &code},
	}
	return j
}

func testJobCreateGet(t *testing.T, s store.Store) {
	w := setupWorkspace(t, s, "ws")
	tests := []struct {
		name string
		j    model.Job
	}{
		{"queued", newJob(w, "Train-1", "gpu", 1)},
		{"finished", finished(newJob(w, "Train-2", "gpu", 2), "node-1", 3)},
		{"exit code zero", finished(newJob(w, "Train-3", "gpu", 3), "node-1", 0)},
		{"local", newJob(w, "Train-4", model.LocalCompute, 4)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			mustCreateJob(t, s, tt.j)
			for _, id := range []string{tt.j.ID, strings.ToLower(tt.j.ID), strings.ToUpper(tt.j.ID)} {
				wantJob(t, s, id, tt.j)
			}
			got, err := s.JobGetByRunID(t.Context(), tt.j.RunID)
			if err != nil {
				t.Fatalf("JobGetByRunID(%s): %v", tt.j.RunID, err)
			}
			if diff := cmp.Diff(tt.j, got); diff != "" {
				t.Errorf("JobGetByRunID(%s) mismatch (-want +got):\n%s", tt.j.RunID, diff)
			}
		})
	}
}

func testJobEmptyFields(t *testing.T, s store.Store) {
	w := setupWorkspace(t, s, "ws")
	tests := []struct {
		name     string
		env      map[string]string
		warnings []string
		err      *model.Error
	}{
		{"nil", nil, nil, nil},
		{"empty", map[string]string{}, []string{}, &model.Error{}},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			j := model.Job{
				ID: w.ID + "/jobs/" + tt.name, WorkspaceID: w.ID, Name: tt.name, RunID: tt.name,
				ComputeID: w.ID + "/computes/cpu", Command: "true", Status: model.JobNotStarted,
				Seq: int64(i), Env: tt.env, Warnings: tt.warnings, Error: tt.err,
			}
			mustCreateJob(t, s, j)
			want := j
			want.Env, want.Warnings = nil, nil // empty reads back as nil; an empty Error stays set
			wantJob(t, s, j.ID, want)
		})
	}
}

func testJobGetMissing(t *testing.T, s store.Store) {
	w := setupWorkspace(t, s, "ws")
	mustCreateJob(t, s, newJob(w, "job", "cpu", 1))
	wantNoJob(t, s, newJob(w, "nope", "cpu", 1).ID)
	for _, runID := range []string{"nope", strings.ToUpper(newJob(w, "job", "cpu", 1).RunID)} {
		if _, err := s.JobGetByRunID(t.Context(), runID); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("JobGetByRunID(%s) error = %v, want ErrNotFound", runID, err)
		}
	}
}

func testJobCreateConflict(t *testing.T, s store.Store) {
	w := setupWorkspace(t, s, "ws")
	w2 := setupWorkspace(t, s, "ws2")
	first := newJob(w, "train", "cpu", 1)
	mustCreateJob(t, s, first)
	withRunID := func(j model.Job, runID string) model.Job {
		j.RunID = runID
		return j
	}
	tests := []struct {
		name    string
		j       model.Job
		wantErr error
	}{
		{"same name", withRunID(newJob(w, "train", "cpu", 2), "run-a"), store.ErrConflict},
		{"other case", withRunID(newJob(w, "TRAIN", "gpu", 3), "run-b"), store.ErrConflict},
		{"same run ID", withRunID(newJob(w, "other", "cpu", 4), first.RunID), store.ErrConflict},
		{"same run ID other workspace", withRunID(newJob(w2, "other", "cpu", 5), first.RunID), store.ErrConflict},
		{"other workspace", withRunID(newJob(w2, "Train", "cpu", 6), "run-c"), nil},
		{"run ID other case", withRunID(newJob(w, "third", "cpu", 7), strings.ToUpper(first.RunID)), nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := s.JobCreate(t.Context(), tt.j)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("JobCreate(%s, run %s) error = %v, want %v", tt.j.ID, tt.j.RunID, err, tt.wantErr)
			}
			if tt.wantErr == nil {
				wantJob(t, s, tt.j.ID, tt.j)
			}
		})
	}
	// The first keeps its spelling and fields.
	wantJob(t, s, first.ID, first)
}

func testJobList(t *testing.T, s store.Store) {
	w := setupWorkspace(t, s, "ws")
	w2 := setupWorkspace(t, s, "ws2")
	for i, j := range []model.Job{
		newJob(w, "delta", "cpu", 1),
		newJob(w, "Bravo", "cpu", 2),
		newJob(w, "alpha", "gpu", 3),
		newJob(w, "Charlie", model.LocalCompute, 4),
		newJob(w2, "aaa", "cpu", 5),
	} {
		j.Seq = int64(10 - i) // the list is by name, not Seq
		mustCreateJob(t, s, j)
	}
	tests := []struct {
		name      string
		ws        string
		page      store.Page
		wantNames []string
	}{
		{"all", w.ID, store.Page{}, []string{"alpha", "Bravo", "Charlie", "delta"}},
		{"workspace ID case", strings.ToUpper(w.ID), store.Page{}, []string{"alpha", "Bravo", "Charlie", "delta"}},
		{"first page", w.ID, store.Page{Limit: 3}, []string{"alpha", "Bravo", "Charlie"}},
		{"second page", w.ID, store.Page{After: "charlie", Limit: 3}, []string{"delta"}},
		{"after folded", w.ID, store.Page{After: "BRAVO"}, []string{"Charlie", "delta"}},
		{"after between", w.ID, store.Page{After: "b"}, []string{"Bravo", "Charlie", "delta"}},
		{"past the end", w.ID, store.Page{After: "delta"}, nil},
		{"other workspace", w2.ID, store.Page{}, []string{"aaa"}},
		{"missing workspace", newWorkspace("sub1", "rg", "nope").ID, store.Page{}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := s.JobList(t.Context(), tt.ws, tt.page)
			if err != nil {
				t.Fatalf("JobList: %v", err)
			}
			if diff := cmp.Diff(tt.wantNames, jobNames(got)); diff != "" {
				t.Errorf("JobList(%+v) names (-want +got):\n%s", tt.page, diff)
			}
		})
	}
	got, err := s.JobList(t.Context(), w2.ID, store.Page{})
	if err != nil {
		t.Fatalf("JobList: %v", err)
	}
	want := newJob(w2, "aaa", "cpu", 6)
	if diff := cmp.Diff([]model.Job{want}, got); diff != "" {
		t.Errorf("JobList rows (-want +got):\n%s", diff)
	}
}

// setupJobs creates jobs of w and w2 on several computes, in several
// statuses, created out of Seq order.
func setupJobs(t *testing.T, s store.Store, w, w2 model.Workspace) {
	t.Helper()
	for _, j := range []struct {
		ws      model.Workspace
		name    string
		compute string
		status  model.JobStatus
		seq     int64
	}{
		{w, "q3", "cpu", model.JobQueued, 30},
		{w, "q1", "cpu", model.JobQueued, 10},
		{w, "r2", "cpu", model.JobRunning, 20},
		{w, "p4", "CPU", model.JobPreparing, 40}, // the compute's ID in another case
		{w, "c5", "cpu", model.JobCompleted, 5},
		{w, "g6", "gpu", model.JobQueued, 6},
		{w2, "o7", "cpu", model.JobQueued, 7}, // same compute name, other workspace
	} {
		job := newJob(j.ws, j.name, j.compute, j.seq)
		job.Status = j.status
		mustCreateJob(t, s, job)
	}
}

func testJobListByCompute(t *testing.T, s store.Store) {
	w := setupWorkspace(t, s, "ws")
	w2 := setupWorkspace(t, s, "ws2")
	setupJobs(t, s, w, w2)
	cpu := w.ID + "/computes/cpu"
	tests := []struct {
		name      string
		compute   string
		statuses  []model.JobStatus
		wantNames []string
	}{
		{"none", cpu, nil, nil},
		{"queued FIFO", cpu, []model.JobStatus{model.JobQueued}, []string{"q1", "q3"}},
		{"active", cpu, []model.JobStatus{model.JobQueued, model.JobPreparing, model.JobRunning},
			[]string{"q1", "r2", "q3", "p4"}},
		{"compute ID case", strings.ToUpper(cpu), []model.JobStatus{model.JobRunning, model.JobPreparing},
			[]string{"r2", "p4"}},
		{"terminal", cpu, []model.JobStatus{model.JobCompleted, model.JobFailed}, []string{"c5"}},
		{"other compute", w.ID + "/computes/gpu", []model.JobStatus{model.JobQueued}, []string{"g6"}},
		{"other workspace", w2.ID + "/computes/cpu", []model.JobStatus{model.JobQueued}, []string{"o7"}},
		{"no match", cpu, []model.JobStatus{model.JobCanceled}, nil},
		{"missing compute", w.ID + "/computes/nope", []model.JobStatus{model.JobQueued}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := s.JobListByCompute(t.Context(), tt.compute, tt.statuses...)
			if err != nil {
				t.Fatalf("JobListByCompute: %v", err)
			}
			if diff := cmp.Diff(tt.wantNames, jobNames(got)); diff != "" {
				t.Errorf("JobListByCompute(%s, %v) names (-want +got):\n%s", tt.compute, tt.statuses, diff)
			}
		})
	}
}

func testJobListByStatus(t *testing.T, s store.Store) {
	w := setupWorkspace(t, s, "ws")
	w2 := setupWorkspace(t, s, "ws2")
	setupJobs(t, s, w, w2)
	tests := []struct {
		name      string
		statuses  []model.JobStatus
		wantNames []string
	}{
		{"none", nil, nil},
		{"queued across workspaces", []model.JobStatus{model.JobQueued}, []string{"g6", "o7", "q1", "q3"}},
		{"several", []model.JobStatus{model.JobPreparing, model.JobRunning, model.JobCompleted},
			[]string{"c5", "r2", "p4"}},
		{"no match", []model.JobStatus{model.JobCanceled}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := s.JobListByStatus(t.Context(), tt.statuses...)
			if err != nil {
				t.Fatalf("JobListByStatus: %v", err)
			}
			if diff := cmp.Diff(tt.wantNames, jobNames(got)); diff != "" {
				t.Errorf("JobListByStatus(%v) names (-want +got):\n%s", tt.statuses, diff)
			}
		})
	}
}

// testJobSubmit checks that JobSubmit stores the job as given but for
// its Seq, the next one: counted up from the largest Seq stored, above
// every Seq a job is stored or updated with, and none taken by a refused
// submission.
func testJobSubmit(t *testing.T, s store.Store) {
	w := setupWorkspace(t, s, "ws")
	// submit submits a new job named name and returns its Seq, checking
	// that the job is stored as returned.
	submit := func(name string) int64 {
		t.Helper()
		j := newJob(w, name, "cpu", 999) // its own Seq is not used
		got, err := s.JobSubmit(t.Context(), j)
		if err != nil {
			t.Fatalf("JobSubmit(%s): %v", name, err)
		}
		j.Seq = got.Seq
		if diff := cmp.Diff(j, got); diff != "" {
			t.Errorf("JobSubmit(%s) returned (-want +got):\n%s", name, diff)
		}
		wantJob(t, s, j.ID, got)
		return got.Seq
	}
	if got := submit("a"); got != 1 {
		t.Errorf("Seq on an empty store = %d, want 1", got)
	}
	if got := submit("b"); got != 2 {
		t.Errorf("second Seq = %d, want 2", got)
	}
	dup := newJob(w, "A", "cpu", 0)
	dup.RunID = "run-other"
	if _, err := s.JobSubmit(t.Context(), dup); !errors.Is(err, store.ErrConflict) {
		t.Errorf("JobSubmit of a taken name: %v, want ErrConflict", err)
	}
	if got := submit("c"); got != 3 {
		t.Errorf("Seq after a refused submission = %d, want 3: the refused one took none", got)
	}
	// A job stored with a Seq of its own (as a copied store's are) raises
	// the counter; one with a lower Seq does not lower it.
	mustCreateJob(t, s, newJob(w, "copied", "cpu", 1000))
	if got := submit("d"); got != 1001 {
		t.Errorf("Seq after a job with Seq 1000 = %d, want 1001", got)
	}
	mustCreateJob(t, s, newJob(w, "low", "cpu", 5))
	if got := submit("e"); got != 1002 {
		t.Errorf("Seq after a job with Seq 5 = %d, want 1002", got)
	}
	j := newJob(w, "moved", "cpu", 3)
	mustCreateJob(t, s, j)
	upd := j
	upd.Seq = 5000
	if err := s.JobUpdate(t.Context(), upd, j.Status, nil, ""); err != nil {
		t.Fatalf("JobUpdate: %v", err)
	}
	if got := submit("f"); got != 5001 {
		t.Errorf("Seq after a job moved to Seq 5000 = %d, want 5001", got)
	}
}

// testJobSubmitConcurrent submits jobs from many goroutines at once: every
// Seq is handed out once and stored with its job, each caller's Seqs
// increase, and together they are the next ones in a row.
func testJobSubmitConcurrent(t *testing.T, s store.Store) {
	w := setupWorkspace(t, s, "ws")
	const callers, calls = 16, 25
	var wg sync.WaitGroup
	got := make([][]int64, callers)
	errs := make([]error, callers)
	for i := range callers {
		wg.Go(func() {
			for k := range calls {
				j, err := s.JobSubmit(t.Context(), newJob(w, fmt.Sprintf("j%d-%d", i, k), "cpu", 0))
				if err == nil {
					var stored model.Job
					if stored, err = s.JobGet(t.Context(), j.ID); err == nil && stored.Seq != j.Seq {
						err = fmt.Errorf("job %s stored with Seq %d, returned with %d", j.ID, stored.Seq, j.Seq)
					}
				}
				if err != nil {
					errs[i] = err
					return
				}
				got[i] = append(got[i], j.Seq)
			}
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatalf("JobSubmit: %v", err)
	}
	seen := map[int64]bool{}
	for i, seqs := range got {
		for k, n := range seqs {
			if seen[n] {
				t.Errorf("Seq %d handed out twice", n)
			}
			seen[n] = true
			if k > 0 && n <= seqs[k-1] {
				t.Errorf("caller %d got Seq %d after %d, want increasing", i, n, seqs[k-1])
			}
		}
	}
	for n := int64(1); n <= callers*calls; n++ {
		if !seen[n] {
			t.Errorf("Seq %d never handed out; want 1..%d", n, callers*calls)
		}
	}
}

func testJobMaxSeq(t *testing.T, s store.Store) {
	w := setupWorkspace(t, s, "ws")
	check := func(want int64) {
		t.Helper()
		got, err := s.JobMaxSeq(t.Context())
		if err != nil {
			t.Fatalf("JobMaxSeq: %v", err)
		}
		if got != want {
			t.Errorf("JobMaxSeq = %d, want %d", got, want)
		}
	}
	check(0)
	mustCreateJob(t, s, newJob(w, "a", "cpu", 7))
	check(7)
	mustCreateJob(t, s, newJob(w, "b", "cpu", 1<<40))
	mustCreateJob(t, s, newJob(w, "c", "cpu", 3))
	check(1 << 40)
}

func testJobUpdate(t *testing.T, s store.Store) {
	w := setupWorkspace(t, s, "ws")
	orig := newJob(w, "Train", "cpu", 1)
	mustCreateJob(t, s, orig)

	upd := finished(orig, "node-1", 3)
	upd.RunID = "run-retry"
	upd.ComputeID = w.ID + "/computes/gpu"
	upd.DisplayName = "renamed"
	upd.Env = map[string]string{"C": "3"}
	upd.Warnings = []string{"w1", "w2"}
	upd.Seq = 99
	if err := s.JobUpdate(t.Context(), upd, model.JobQueued, nil, ""); err != nil {
		t.Fatalf("JobUpdate: %v", err)
	}
	wantJob(t, s, orig.ID, upd)
	if _, err := s.JobGetByRunID(t.Context(), orig.RunID); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("JobGetByRunID(old run ID) error = %v, want ErrNotFound", err)
	}
	got, err := s.JobListByCompute(t.Context(), upd.ComputeID, model.JobFailed)
	if err != nil {
		t.Fatalf("JobListByCompute: %v", err)
	}
	if diff := cmp.Diff([]string{"Train"}, jobNames(got)); diff != "" {
		t.Errorf("JobListByCompute(new compute) names (-want +got):\n%s", diff)
	}

	// Back to the original, clearing exit code, error, times, env and
	// warnings; the ID may be spelled in another case.
	back := orig
	back.ID = strings.ToUpper(orig.ID)
	back.Env, back.Warnings = nil, []string{}
	if err := s.JobUpdate(t.Context(), back, model.JobFailed, nil, ""); err != nil {
		t.Fatalf("JobUpdate: %v", err)
	}
	want := orig
	want.Env, want.Warnings = nil, nil
	wantJob(t, s, orig.ID, want)
}

func testJobUpdateRunIDConflict(t *testing.T, s store.Store) {
	w := setupWorkspace(t, s, "ws")
	a := newJob(w, "a", "cpu", 1)
	b := newJob(w, "b", "cpu", 2)
	mustCreateJob(t, s, a)
	mustCreateJob(t, s, b)
	upd := b
	upd.RunID = a.RunID
	upd.Status = model.JobPreparing
	if err := s.JobUpdate(t.Context(), upd, model.JobQueued, nil, ""); !errors.Is(err, store.ErrConflict) {
		t.Errorf("JobUpdate(another job's run ID) error = %v, want ErrConflict", err)
	}
	wantJob(t, s, b.ID, b)
}

func testJobUpdatePrecondition(t *testing.T, s store.Store) {
	w := setupWorkspace(t, s, "ws")
	tests := []struct {
		name     string
		from     model.JobStatus
		withNode bool            // pass a node
		nodeFrom model.NodeState // its expected state
		noJob    bool            // the job does not exist
		noNode   bool            // the node does not exist
		wantErr  error
	}{
		{"job only", model.JobQueued, false, "", false, false, nil},
		{"job mismatch", model.JobRunning, false, "", false, false, store.ErrPreconditionFailed},
		{"job missing", model.JobQueued, false, "", true, false, store.ErrNotFound},
		{"both", model.JobQueued, true, model.NodeIdle, false, false, nil},
		{"job mismatch with node", model.JobPreparing, true, model.NodeIdle, false, false, store.ErrPreconditionFailed},
		{"node mismatch", model.JobQueued, true, model.NodeRunning, false, false, store.ErrPreconditionFailed},
		{"both mismatch", model.JobRunning, true, model.NodeRunning, false, false, store.ErrPreconditionFailed},
		{"node missing", model.JobQueued, true, model.NodeIdle, false, true, store.ErrNotFound},
		{"job missing with node", model.JobQueued, true, model.NodeIdle, true, false, store.ErrNotFound},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			j := newJob(w, fmt.Sprintf("job-%d", i), "cpu", int64(i))
			n := newNode(fmt.Sprintf("node-%d", i), j.ComputeID, model.NodeIdle)
			if !tt.noJob {
				mustCreateJob(t, s, j)
			}
			if !tt.noNode {
				mustCreateNode(t, s, n)
			}
			updJob := j
			updJob.Status, updJob.NodeID, updJob.Attempts = model.JobPreparing, n.ID, 1
			updNode := n
			updNode.State, updNode.JobID, updNode.StateSince = model.NodeRunning, j.ID, at(40)
			var node *model.Node
			if tt.withNode {
				node = &updNode
			}
			err := s.JobUpdate(t.Context(), updJob, tt.from, node, tt.nodeFrom)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("JobUpdate error = %v, want %v", err, tt.wantErr)
			}
			wantJobs, wantNodes := updJob, n
			if tt.withNode {
				wantNodes = updNode
			}
			if tt.wantErr != nil {
				wantJobs, wantNodes = j, n // nothing changed
			}
			if tt.noJob {
				wantNoJob(t, s, j.ID)
			} else {
				wantJob(t, s, j.ID, wantJobs)
			}
			if tt.noNode {
				wantNoNode(t, s, n.ID)
			} else {
				wantNode(t, s, n.ID, wantNodes)
			}
		})
	}
}

// testJobUpdateRace has many dispatchers try to assign the same queued job
// at once, each to its own node: exactly one may win, and only its node
// may change.
func testJobUpdateRace(t *testing.T, s store.Store) {
	w := setupWorkspace(t, s, "ws")
	j := newJob(w, "contended", "cpu", 1)
	mustCreateJob(t, s, j)
	const n = 50
	nodes := make([]model.Node, n)
	for i := range n {
		nodes[i] = newNode(fmt.Sprintf("node-%02d", i), j.ComputeID, model.NodeIdle)
		mustCreateNode(t, s, nodes[i])
	}
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			upd := j
			upd.Status, upd.NodeID, upd.Attempts = model.JobPreparing, nodes[i].ID, 1
			node := nodes[i]
			node.State, node.JobID = model.NodeRunning, j.ID
			errs[i] = s.JobUpdate(t.Context(), upd, model.JobQueued, &node, model.NodeIdle)
		})
	}
	wg.Wait()
	winner := -1
	for i, err := range errs {
		switch {
		case err == nil && winner >= 0:
			t.Errorf("updates %d and %d both succeeded", winner, i)
		case err == nil:
			winner = i
		case !errors.Is(err, store.ErrPreconditionFailed):
			t.Errorf("update %d error = %v, want nil or ErrPreconditionFailed", i, err)
		}
	}
	if winner < 0 {
		t.Fatal("no update succeeded")
	}
	got, err := s.JobGet(t.Context(), j.ID)
	if err != nil {
		t.Fatalf("JobGet: %v", err)
	}
	if got.Status != model.JobPreparing || got.NodeID != nodes[winner].ID {
		t.Errorf("stored job is %s on %q, want Preparing on the winner's %s", got.Status, got.NodeID, nodes[winner].ID)
	}
	ns, err := s.NodeList(t.Context())
	if err != nil {
		t.Fatalf("NodeList: %v", err)
	}
	for _, node := range ns {
		want := model.NodeIdle
		if node.ID == nodes[winner].ID {
			want = model.NodeRunning
		}
		if node.State != want {
			t.Errorf("node %s is %s, want %s", node.ID, node.State, want)
		}
	}
}

// testJobCountsFollowChanges checks that the counts by status follow
// updates (status, compute, instance count), a refused update, and a
// workspace's delete, which removes its jobs.
func testJobCountsFollowChanges(t *testing.T, s store.Store) {
	ws := newWorkspace("sub1", "rg", "ws")
	mustCreateWorkspace(t, s, ws)
	cpu := ws.ID + "/computes/cpu"
	count := func(what string, want map[model.JobStatus]int) {
		t.Helper()
		all := []model.JobStatus{model.JobQueued, model.JobRunning, model.JobCompleted}
		got, err := s.JobCountByCompute(t.Context(), cpu, all...)
		if err != nil {
			t.Fatalf("JobCountByCompute: %v", err)
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("%s: JobCountByCompute (-want +got):\n%s", what, diff)
		}
		nodes, err := s.JobNodeCountByCompute(t.Context(), cpu, all...)
		if err != nil {
			t.Fatalf("JobNodeCountByCompute: %v", err)
		}
		if len(want) == 0 && len(nodes) != 0 {
			t.Errorf("%s: JobNodeCountByCompute = %v, want none", what, nodes)
		}
	}
	a, b := newJob(ws, "a", "cpu", 1), newJob(ws, "b", "cpu", 2)
	a.Status, b.Status = model.JobQueued, model.JobQueued
	mustCreateJob(t, s, a)
	mustCreateJob(t, s, b)
	count("created", map[model.JobStatus]int{model.JobQueued: 2})

	from := a.Status
	a.Status = model.JobRunning
	if err := s.JobUpdate(t.Context(), a, from, nil, ""); err != nil {
		t.Fatalf("JobUpdate: %v", err)
	}
	count("one started", map[model.JobStatus]int{model.JobQueued: 1, model.JobRunning: 1})

	stale := b
	stale.Status = model.JobCompleted
	if err := s.JobUpdate(t.Context(), stale, model.JobRunning, nil, ""); !errors.Is(err, store.ErrPreconditionFailed) {
		t.Fatalf("JobUpdate from the wrong status = %v, want ErrPreconditionFailed", err)
	}
	count("refused update", map[model.JobStatus]int{model.JobQueued: 1, model.JobRunning: 1})

	b.ComputeID, b.InstanceCount = ws.ID+"/computes/gpu", 3
	if err := s.JobUpdate(t.Context(), b, model.JobQueued, nil, ""); err != nil {
		t.Fatalf("JobUpdate: %v", err)
	}
	count("one moved away", map[model.JobStatus]int{model.JobRunning: 1})
	gpu, err := s.JobNodeCountByCompute(t.Context(), ws.ID+"/computes/GPU", model.JobQueued)
	if err != nil {
		t.Fatalf("JobNodeCountByCompute: %v", err)
	}
	if diff := cmp.Diff(map[model.JobStatus]int{model.JobQueued: 3}, gpu); diff != "" {
		t.Errorf("nodes queued on gpu (-want +got):\n%s", diff)
	}

	ids, err := s.JobComputeIDs(t.Context(), model.JobQueued)
	if err != nil {
		t.Fatalf("JobComputeIDs: %v", err)
	}
	if diff := cmp.Diff([]string{ws.ID + "/computes/gpu"}, ids); diff != "" {
		t.Errorf("computes with queued jobs (-want +got):\n%s", diff)
	}

	if err := s.WorkspaceDelete(t.Context(), ws.ID); err != nil {
		t.Fatalf("WorkspaceDelete: %v", err)
	}
	count("workspace deleted", map[model.JobStatus]int{})
	if ids, err := s.JobComputeIDs(t.Context(), model.JobQueued, model.JobRunning); err != nil || len(ids) != 0 {
		t.Errorf("computes with jobs after the workspace's delete: %v, %v; want none", ids, err)
	}
}

// testJobQueueQueries covers the cheap queue views: the head of a queue,
// counts by status, a job's place, and which computes have work.
func testJobQueueQueries(t *testing.T, s store.Store) {
	ws := newWorkspace("sub1", "rg", "ws")
	var jobs []model.Job
	for i, st := range []model.JobStatus{model.JobQueued, model.JobRunning, model.JobQueued, model.JobQueued, model.JobCompleted} {
		j := newJob(ws, fmt.Sprintf("j%d", i), "cpu", int64(10-i))
		j.Status = st
		j.InstanceCount = i // 0 (stored before gangs) counts as 1
		mustCreateJob(t, s, j)
		jobs = append(jobs, j)
	}
	other := newJob(ws, "o1", "gpu", 1)
	mustCreateJob(t, s, other)
	cpu := ws.ID + "/computes/CPU" // compute IDs match case-insensitively

	head, err := s.JobHead(t.Context(), cpu, model.JobQueued, 2)
	if err != nil {
		t.Fatalf("JobHead: %v", err)
	}
	if got := names(head); fmt.Sprint(got) != "[j3 j2]" {
		t.Errorf("JobHead(queued, 2) = %v, want [j3 j2] (lowest Seq first)", got)
	}
	counts, err := s.JobCountByCompute(t.Context(), cpu, model.JobQueued, model.JobRunning, model.JobCompleted, model.JobFailed)
	if err != nil {
		t.Fatalf("JobCountByCompute: %v", err)
	}
	want := map[model.JobStatus]int{model.JobQueued: 3, model.JobRunning: 1, model.JobCompleted: 1}
	if diff := cmp.Diff(want, counts); diff != "" {
		t.Errorf("JobCountByCompute (-want +got):\n%s", diff)
	}
	nodes, err := s.JobNodeCountByCompute(t.Context(), cpu, model.JobQueued, model.JobRunning, model.JobFailed)
	if err != nil {
		t.Fatalf("JobNodeCountByCompute: %v", err)
	}
	want = map[model.JobStatus]int{model.JobQueued: 1 + 2 + 3, model.JobRunning: 1}
	if diff := cmp.Diff(want, nodes); diff != "" {
		t.Errorf("JobNodeCountByCompute (-want +got):\n%s", diff)
	}
	ahead, err := s.JobCountAhead(t.Context(), cpu, model.JobQueued, jobs[0].Seq)
	if err != nil {
		t.Fatalf("JobCountAhead: %v", err)
	}
	if ahead != 2 {
		t.Errorf("JobCountAhead of j0 = %d, want 2", ahead)
	}
	ids, err := s.JobComputeIDs(t.Context(), model.JobQueued, model.JobRunning)
	if err != nil {
		t.Fatalf("JobComputeIDs: %v", err)
	}
	sort.Strings(ids)
	if diff := cmp.Diff([]string{ws.ID + "/computes/cpu", ws.ID + "/computes/gpu"}, ids); diff != "" {
		t.Errorf("JobComputeIDs (-want +got):\n%s", diff)
	}
}

func testJobSnapshotIDs(t *testing.T, s store.Store) {
	w := setupWorkspace(t, s, "ws")
	w2 := setupWorkspace(t, s, "ws2")
	running := newJob(w, "run", "cpu", 6)
	running.Status = model.JobRunning
	for _, j := range []model.Job{
		withSnapshot(newJob(w, "q1", "cpu", 1), "snap-a"),
		withSnapshot(newJob(w2, "q2", "cpu", 2), "snap-b"),
		withSnapshot(newJob(w, "q3", "cpu", 3), "snap-a"),
		withSnapshot(newJob(w, "nocode", "cpu", 4), ""),
		withSnapshot(finished(newJob(w, "done", "cpu", 5), "node-1", 0), "snap-c"),
		withSnapshot(running, "snap-d"),
	} {
		mustCreateJob(t, s, j)
	}
	tests := []struct {
		name     string
		statuses []model.JobStatus
		want     []string
	}{
		{"none", nil, nil},
		{"queued", []model.JobStatus{model.JobQueued}, []string{"snap-a", "snap-b"}},
		{"active", []model.JobStatus{model.JobQueued, model.JobPreparing, model.JobRunning, model.JobFinalizing}, []string{"snap-a", "snap-b", "snap-d"}},
		{"finished", []model.JobStatus{model.JobFailed}, []string{"snap-c"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := s.JobSnapshotIDs(t.Context(), tt.statuses...)
			if err != nil {
				t.Fatalf("JobSnapshotIDs: %v", err)
			}
			sort.Strings(got)
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("JobSnapshotIDs(%v) (-want +got):\n%s", tt.statuses, diff)
			}
		})
	}
}

func withSnapshot(j model.Job, id string) model.Job {
	j.SnapshotID = id
	return j
}

func names(js []model.Job) []string {
	var out []string
	for _, j := range js {
		out = append(out, j.Name)
	}
	return out
}

// testJobHistory stores a job through its transitions: every attempt is
// kept with its node, times, class, reason and exit code, and a running
// attempt has no end.
func testJobHistory(t *testing.T, s store.Store) {
	w := setupWorkspace(t, s, "ws")
	j := newJob(w, "Train", "cpu", 1)
	mustCreateJob(t, s, j)
	steps := []struct {
		name   string
		change func(j *model.Job)
	}{
		{"assigned", func(j *model.Job) {
			if err := j.Assign(&model.Node{ID: "node-1", State: model.NodeIdle}, at(20)); err != nil {
				t.Fatal(err)
			}
		}},
		{"started", func(j *model.Job) { j.Start("node-1", at(21)) }},
		{"preempted", func(j *model.Job) { j.Lose(model.ReasonPreempted, "node node-1: preempted", at(22)) }},
		{"reassigned", func(j *model.Job) {
			if err := j.Assign(&model.Node{ID: "node-2", State: model.NodeIdle}, at(23)); err != nil {
				t.Fatal(err)
			}
		}},
		{"finished", func(j *model.Job) { code := 0; j.Finish(&code, "exited", "", at(24)) }},
	}
	for _, step := range steps {
		from := j.Status
		step.change(&j)
		if err := s.JobUpdate(t.Context(), j, from, nil, ""); err != nil {
			t.Fatalf("%s: JobUpdate: %v", step.name, err)
		}
		wantJob(t, s, j.ID, j)
	}
	zero := 0
	want := []model.Attempt{
		{Number: 1, NodeID: "node-1", StartedAt: at(20), EndedAt: at(22), Class: model.ClassPreemption,
			Reason: model.ReasonPreempted, Message: "node node-1: preempted"},
		{Number: 2, NodeID: "node-2", StartedAt: at(23), EndedAt: at(24), Reason: model.ReasonExited, ExitCode: &zero},
	}
	got, err := s.JobGet(t.Context(), j.ID)
	if err != nil {
		t.Fatalf("JobGet: %v", err)
	}
	if diff := cmp.Diff(want, got.History); diff != "" {
		t.Errorf("history (-want +got):\n%s", diff)
	}
	if got.Status != model.JobCompleted {
		t.Errorf("status = %s, want Completed", got.Status)
	}
}

// testJobUpdateNodes assigns a job and several nodes in one call: all
// change, or, when any node or the job is not as expected, none.
func testJobUpdateNodes(t *testing.T, s store.Store) {
	w := setupWorkspace(t, s, "ws")
	tests := []struct {
		name     string
		from     model.JobStatus
		nodeFrom []model.NodeState // one per node; the nodes are stored idle
		missing  int               // index of a node not stored; -1 for none
		wantErr  error
	}{
		{"all", model.JobQueued, []model.NodeState{model.NodeIdle, model.NodeIdle, model.NodeIdle}, -1, nil},
		{"none", model.JobQueued, nil, -1, nil},
		{"job mismatch", model.JobRunning, []model.NodeState{model.NodeIdle, model.NodeIdle}, -1, store.ErrPreconditionFailed},
		{"last node mismatch", model.JobQueued, []model.NodeState{model.NodeIdle, model.NodeIdle, model.NodeRunning}, -1, store.ErrPreconditionFailed},
		{"first node mismatch", model.JobQueued, []model.NodeState{model.NodeRunning, model.NodeIdle}, -1, store.ErrPreconditionFailed},
		{"node missing", model.JobQueued, []model.NodeState{model.NodeIdle, model.NodeIdle}, 1, store.ErrNotFound},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			j := newJob(w, fmt.Sprintf("gang-%d", i), "cpu", int64(i))
			j.InstanceCount = len(tt.nodeFrom)
			j.Distribution = &model.Distribution{Type: model.DistributionPyTorch, ProcessCountPerInstance: 2}
			mustCreateJob(t, s, j)
			var orig []model.Node
			var changes []store.NodeChange
			upd := j
			upd.Status, upd.Attempts = model.JobPreparing, 1
			for k, from := range tt.nodeFrom {
				n := newNode(fmt.Sprintf("node-%d-%d", i, k), j.ComputeID, model.NodeIdle)
				if k != tt.missing {
					mustCreateNode(t, s, n)
				}
				orig = append(orig, n)
				u := n
				u.State, u.JobID, u.StateSince = model.NodeRunning, j.ID, at(40)
				changes = append(changes, store.NodeChange{Node: u, From: from})
				upd.NodeIDs = append(upd.NodeIDs, n.ID)
			}
			err := s.JobUpdateNodes(t.Context(), upd, tt.from, changes)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("JobUpdateNodes error = %v, want %v", err, tt.wantErr)
			}
			if tt.wantErr != nil {
				wantJob(t, s, j.ID, j)
			} else {
				wantJob(t, s, j.ID, upd)
			}
			for k, n := range orig {
				switch {
				case k == tt.missing:
					wantNoNode(t, s, n.ID)
				case tt.wantErr != nil:
					wantNode(t, s, n.ID, n)
				default:
					wantNode(t, s, n.ID, changes[k].Node)
				}
			}
		})
	}
}

// testJobUpdateNodesRace has gang jobs of two nodes each race for
// overlapping pairs of a few idle nodes: no node ends up held by two
// jobs, and every job that won holds both of its nodes (all or none).
func testJobUpdateNodesRace(t *testing.T, s store.Store) {
	w := setupWorkspace(t, s, "ws")
	const nNodes, nJobs = 5, 20
	var nodes []model.Node
	for i := range nNodes {
		n := newNode(fmt.Sprintf("node-%d", i), w.ID+"/computes/cpu", model.NodeIdle)
		mustCreateNode(t, s, n)
		nodes = append(nodes, n)
	}
	jobs := make([]model.Job, nJobs)
	pairs := make([][2]int, nJobs)
	for i := range nJobs {
		jobs[i] = newJob(w, fmt.Sprintf("gang-%02d", i), "cpu", int64(i))
		jobs[i].InstanceCount = 2
		mustCreateJob(t, s, jobs[i])
		pairs[i] = [2]int{i % nNodes, (i*3 + 1) % nNodes}
		if pairs[i][0] == pairs[i][1] {
			pairs[i][1] = (pairs[i][1] + 1) % nNodes
		}
	}
	errs := make([]error, nJobs)
	var wg sync.WaitGroup
	for i := range nJobs {
		wg.Go(func() {
			upd := jobs[i]
			upd.Status, upd.Attempts = model.JobPreparing, 1
			var changes []store.NodeChange
			for _, k := range pairs[i] {
				n := nodes[k]
				n.State, n.JobID = model.NodeRunning, upd.ID
				changes = append(changes, store.NodeChange{Node: n, From: model.NodeIdle})
			}
			errs[i] = s.JobUpdateNodes(t.Context(), upd, model.JobQueued, changes)
		})
	}
	wg.Wait()
	holder := map[string]string{} // node ID → job ID
	ns, err := s.NodeList(t.Context())
	if err != nil {
		t.Fatalf("NodeList: %v", err)
	}
	for _, n := range ns {
		if n.State == model.NodeRunning {
			holder[n.ID] = n.JobID
		}
	}
	won := 0
	for i, err := range errs {
		got, gerr := s.JobGet(t.Context(), jobs[i].ID)
		if gerr != nil {
			t.Fatalf("JobGet: %v", gerr)
		}
		switch {
		case err == nil:
			won++
			for _, k := range pairs[i] {
				if holder[nodes[k].ID] != jobs[i].ID {
					t.Errorf("job %s won but node %s is held by %q", jobs[i].Name, nodes[k].ID, holder[nodes[k].ID])
				}
			}
			if got.Status != model.JobPreparing {
				t.Errorf("job %s won but is %s", jobs[i].Name, got.Status)
			}
		case errors.Is(err, store.ErrPreconditionFailed):
			if got.Status != model.JobQueued {
				t.Errorf("job %s lost but is %s", jobs[i].Name, got.Status)
			}
		default:
			t.Errorf("job %s error = %v, want nil or ErrPreconditionFailed", jobs[i].Name, err)
		}
	}
	if won == 0 || len(holder) != 2*won {
		t.Errorf("%d jobs won holding %d nodes, want at least one job and two nodes each", won, len(holder))
	}
}

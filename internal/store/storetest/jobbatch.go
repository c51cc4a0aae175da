package storetest

import (
	"errors"
	"fmt"
	"testing"

	"kumo/internal/model"
	"kumo/internal/store"
)

var jobBatchTests = []test{
	{"UpdateBatch", testJobUpdateBatch},
	{"UpdateBatchEmpty", testJobUpdateBatchEmpty},
}

// testJobUpdateBatch assigns five jobs in one batch: the ones whose job or
// node does not match, or whose node is missing, change nothing, and the
// others apply, in order (a later update sees an earlier one's change).
func testJobUpdateBatch(t *testing.T, s store.Store) {
	w := setupWorkspace(t, s, "ws")
	var jobs []model.Job
	for i := range 5 {
		j := newJob(w, fmt.Sprintf("job-%d", i), "cpu", int64(i))
		mustCreateJob(t, s, j)
		jobs = append(jobs, j)
	}
	var nodes []model.Node
	for i := range 2 {
		n := newNode(fmt.Sprintf("node-%d", i), jobs[0].ComputeID, model.NodeIdle)
		mustCreateNode(t, s, n)
		nodes = append(nodes, n)
	}
	missing := newNode("node-missing", jobs[0].ComputeID, model.NodeIdle)
	assign := func(j model.Job, n model.Node, from model.JobStatus) store.JobNodesUpdate {
		j.Status, j.NodeID, j.Attempts = model.JobPreparing, n.ID, 1
		n.State, n.JobID, n.StateSince = model.NodeRunning, j.ID, at(40)
		return store.JobNodesUpdate{Job: j, From: from, Nodes: []store.NodeChange{{Node: n, From: model.NodeIdle}}}
	}
	updates := []store.JobNodesUpdate{
		assign(jobs[0], nodes[0], model.JobQueued),
		assign(jobs[1], nodes[1], model.JobRunning), // the job is not running
		assign(jobs[2], nodes[1], model.JobQueued),
		assign(jobs[3], missing, model.JobQueued),
		assign(jobs[4], nodes[0], model.JobQueued), // jobs[0] took the node
	}
	errs, err := s.JobUpdateBatch(t.Context(), updates)
	if err != nil {
		t.Fatalf("JobUpdateBatch: %v", err)
	}
	wantErrs := []error{nil, store.ErrPreconditionFailed, nil, store.ErrNotFound, store.ErrPreconditionFailed}
	if len(errs) != len(wantErrs) {
		t.Fatalf("JobUpdateBatch returned %d errors, want %d", len(errs), len(wantErrs))
	}
	for i, want := range wantErrs {
		if (want == nil) != (errs[i] == nil) || (want != nil && !errors.Is(errs[i], want)) {
			t.Errorf("update %d: error %v, want %v", i, errs[i], want)
		}
	}
	for i, j := range jobs {
		want := j
		if wantErrs[i] == nil {
			want = updates[i].Job
		}
		wantJob(t, s, j.ID, want)
	}
	wantNode(t, s, nodes[0].ID, updates[0].Nodes[0].Node)
	wantNode(t, s, nodes[1].ID, updates[2].Nodes[0].Node)
	if _, err := s.NodeGet(t.Context(), missing.ID); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("NodeGet(%s) error = %v, want ErrNotFound", missing.ID, err)
	}
}

func testJobUpdateBatchEmpty(t *testing.T, s store.Store) {
	errs, err := s.JobUpdateBatch(t.Context(), nil)
	if err != nil || len(errs) != 0 {
		t.Errorf("JobUpdateBatch(nil) = %v, %v; want no errors", errs, err)
	}
}

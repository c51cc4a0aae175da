package storetest

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"

	"kumo/internal/model"
	"kumo/internal/store"
)

var computeTests = []test{
	{"CreateGet", testComputeCreateGet},
	{"GetMissing", testComputeGetMissing},
	{"CreateConflict", testComputeCreateConflict},
	{"CreateMissingWorkspace", testComputeCreateMissingWorkspace},
	{"CreateOperationConflict", testComputeCreateOperationConflict},
	{"EmptyTagsAndErrors", testComputeEmptyTagsAndErrors},
	{"Update", testComputeUpdate},
	{"UpdateETag", testComputeUpdateETag},
	{"List", testComputeList},
	{"ListByState", testComputeListByState},
	{"Delete", testComputeDelete},
	{"DeleteETag", testComputeDeleteETag},
	{"DeleteCascades", testComputeDeleteCascades},
	{"ConcurrentCreateSameName", testComputeConcurrentCreateSameName},
	{"ConcurrentWriters", testComputeConcurrentWriters},
}

// mustCreateCompute creates c with op or fails the test.
func mustCreateCompute(t *testing.T, s store.Store, c model.Compute, op model.Operation) {
	t.Helper()
	if err := s.ComputeCreate(t.Context(), c, op); err != nil {
		t.Fatalf("ComputeCreate(%s): %v", c.ID, err)
	}
}

// setupWorkspace creates and returns a workspace named name.
func setupWorkspace(t *testing.T, s store.Store, name string) model.Workspace {
	t.Helper()
	w := newWorkspace("sub1", "rg", name)
	mustCreateWorkspace(t, s, w)
	return w
}

// wantCompute fails the test unless the stored compute with id equals want.
func wantCompute(t *testing.T, s store.Store, id string, want model.Compute) {
	t.Helper()
	got, err := s.ComputeGet(t.Context(), id)
	if err != nil {
		t.Fatalf("ComputeGet(%s): %v", id, err)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("ComputeGet(%s) mismatch (-want +got):\n%s", id, diff)
	}
}

// wantOperation fails the test unless the stored operation with id equals
// want.
func wantOperation(t *testing.T, s store.Store, id string, want model.Operation) {
	t.Helper()
	got, err := s.OperationGet(t.Context(), id)
	if err != nil {
		t.Fatalf("OperationGet(%s): %v", id, err)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("OperationGet(%s) mismatch (-want +got):\n%s", id, diff)
	}
}

// wantNoOperation fails the test if an operation with id exists.
func wantNoOperation(t *testing.T, s store.Store, id string) {
	t.Helper()
	if _, err := s.OperationGet(t.Context(), id); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("OperationGet(%s) error = %v, want ErrNotFound", id, err)
	}
}

func testComputeCreateGet(t *testing.T, s store.Store) {
	w := setupWorkspace(t, s, "ws")
	c := newCompute(w, "GPU-Cluster")
	c.Priority = model.PriorityLowPriority
	c.State = model.StateFailed
	c.Errors = []model.Error{{Code: "QuotaExceeded", Message: "no cores"}, {Code: "Other", Message: ""}}
	op := newOperation("op-1", c, model.OpCreate)
	mustCreateCompute(t, s, c, op)
	for _, id := range []string{c.ID, strings.ToLower(c.ID), strings.ToUpper(c.ID)} {
		wantCompute(t, s, id, c)
	}
	wantOperation(t, s, op.ID, op)
}

func testComputeGetMissing(t *testing.T, s store.Store) {
	w := setupWorkspace(t, s, "ws")
	_, err := s.ComputeGet(t.Context(), newCompute(w, "nope").ID)
	if !errors.Is(err, store.ErrNotFound) {
		t.Errorf("ComputeGet(missing) error = %v, want ErrNotFound", err)
	}
}

func testComputeCreateConflict(t *testing.T, s store.Store) {
	w := setupWorkspace(t, s, "ws")
	w2 := setupWorkspace(t, s, "ws2")
	first := newCompute(w, "cpu-cluster")
	mustCreateCompute(t, s, first, newOperation("op-first", first, model.OpCreate))
	tests := []struct {
		name    string
		c       model.Compute
		wantErr error
	}{
		{"same name", newCompute(w, "cpu-cluster"), store.ErrConflict},
		{"other case", newCompute(w, "CPU-Cluster"), store.ErrConflict},
		{"other workspace", newCompute(w2, "CPU-Cluster"), nil},
		{"other name", newCompute(w, "cpu-cluster-2"), nil},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			op := newOperation(fmt.Sprintf("op-%d", i), tt.c, model.OpCreate)
			err := s.ComputeCreate(t.Context(), tt.c, op)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("ComputeCreate(%s) error = %v, want %v", tt.c.ID, err, tt.wantErr)
			}
			if tt.wantErr != nil {
				wantNoOperation(t, s, op.ID)
				return
			}
			wantCompute(t, s, tt.c.ID, tt.c)
			wantOperation(t, s, op.ID, op)
		})
	}
	// The first keeps its spelling and fields.
	wantCompute(t, s, first.ID, first)
}

func testComputeCreateMissingWorkspace(t *testing.T, s store.Store) {
	w := newWorkspace("sub1", "rg", "never-created")
	c := newCompute(w, "cpu")
	op := newOperation("op-1", c, model.OpCreate)
	if err := s.ComputeCreate(t.Context(), c, op); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("ComputeCreate(missing workspace) error = %v, want ErrNotFound", err)
	}
	if _, err := s.ComputeGet(t.Context(), c.ID); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("ComputeGet error = %v, want ErrNotFound", err)
	}
	wantNoOperation(t, s, op.ID)
}

func testComputeCreateOperationConflict(t *testing.T, s store.Store) {
	w := setupWorkspace(t, s, "ws")
	a := newCompute(w, "a")
	opA := newOperation("op-shared", a, model.OpCreate)
	mustCreateCompute(t, s, a, opA)
	b := newCompute(w, "b")
	if err := s.ComputeCreate(t.Context(), b, newOperation("op-shared", b, model.OpCreate)); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("ComputeCreate(duplicate operation ID) error = %v, want ErrConflict", err)
	}
	// Atomic: the compute went with its operation.
	if _, err := s.ComputeGet(t.Context(), b.ID); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("ComputeGet(b) error = %v, want ErrNotFound", err)
	}
	wantOperation(t, s, opA.ID, opA)
}

func testComputeEmptyTagsAndErrors(t *testing.T, s store.Store) {
	w := setupWorkspace(t, s, "ws")
	tests := []struct {
		name   string
		tags   map[string]string
		errors []model.Error
	}{
		{"nil", nil, nil},
		{"empty", map[string]string{}, []model.Error{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newCompute(w, "c-"+tt.name)
			c.Tags = tt.tags
			c.Errors = tt.errors
			c.Credentials = model.Credentials{}
			c.Scale = model.ScaleSettings{}
			mustCreateCompute(t, s, c, newOperation("op-"+tt.name, c, model.OpCreate))
			want := c
			want.Tags, want.Errors = nil, nil
			wantCompute(t, s, c.ID, want)
		})
	}
}

func testComputeUpdate(t *testing.T, s store.Store) {
	w := setupWorkspace(t, s, "ws")
	orig := newCompute(w, "Cpu")
	mustCreateCompute(t, s, orig, newOperation("op-create", orig, model.OpCreate))

	upd := orig
	upd.Description = "bigger"
	upd.Tags = map[string]string{"a": "b", "c": "d"}
	upd.VMSize = "Standard_NC6"
	upd.Priority = model.PriorityLowPriority
	upd.Scale = model.ScaleSettings{MinNodes: 0, MaxNodes: 10, IdleTime: 0}
	upd.Credentials = model.Credentials{AdminUser: "root"}
	upd.RemoteLogin = "Disabled"
	upd.State = model.StateFailed
	upd.Errors = []model.Error{{Code: "E", Message: "m"}}
	upd.OperationID = "op-update"
	upd.ETag = `W/"2"`
	upd.ModifiedAt = at(50)
	upd.ModifiedBy = "bob"
	op := newOperation("op-update", upd, model.OpUpdate)
	if err := s.ComputeUpdate(t.Context(), upd, "", &op); err != nil {
		t.Fatalf("ComputeUpdate: %v", err)
	}
	wantCompute(t, s, orig.ID, upd)
	wantOperation(t, s, op.ID, op)

	// Without an operation, and clearing tags and errors.
	upd.Tags, upd.Errors = nil, []model.Error{}
	upd.State = model.StateSucceeded
	upd.ETag = `W/"3"`
	if err := s.ComputeUpdate(t.Context(), upd, "", nil); err != nil {
		t.Fatalf("ComputeUpdate: %v", err)
	}
	want := upd
	want.Errors = nil
	wantCompute(t, s, orig.ID, want)

	missing := newCompute(w, "missing")
	missingOp := newOperation("op-missing", missing, model.OpUpdate)
	if err := s.ComputeUpdate(t.Context(), missing, "", &missingOp); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("ComputeUpdate(missing) error = %v, want ErrNotFound", err)
	}
	wantNoOperation(t, s, missingOp.ID)
}

func testComputeUpdateETag(t *testing.T, s store.Store) {
	w := setupWorkspace(t, s, "ws")
	tests := []struct {
		name    string
		match   string
		wantErr error
	}{
		{"no precondition", "", nil},
		{"match", `W/"1"`, nil},
		{"mismatch", `W/"0"`, store.ErrPreconditionFailed},
		{"mismatch by case", `w/"1"`, store.ErrPreconditionFailed},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			orig := newCompute(w, fmt.Sprintf("c%d", i))
			mustCreateCompute(t, s, orig, newOperation("op-create-"+orig.Name, orig, model.OpCreate))
			upd := orig
			upd.Description = "changed"
			upd.ETag = `W/"2"`
			op := newOperation("op-update-"+orig.Name, orig, model.OpUpdate)
			err := s.ComputeUpdate(t.Context(), upd, tt.match, &op)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("ComputeUpdate(match %q) error = %v, want %v", tt.match, err, tt.wantErr)
			}
			if tt.wantErr != nil {
				wantCompute(t, s, orig.ID, orig)
				wantNoOperation(t, s, op.ID)
				return
			}
			wantCompute(t, s, orig.ID, upd)
			wantOperation(t, s, op.ID, op)
		})
	}
}

// computeNames returns the names of cs, for compact comparisons.
func computeNames(cs []model.Compute) []string {
	var names []string
	for _, c := range cs {
		names = append(names, c.Name)
	}
	return names
}

func testComputeList(t *testing.T, s store.Store) {
	w := setupWorkspace(t, s, "ws")
	w2 := setupWorkspace(t, s, "ws2")
	for i, c := range []model.Compute{
		newCompute(w, "delta"),
		newCompute(w, "Bravo"),
		newCompute(w, "alpha"),
		newCompute(w, "Charlie"),
		newCompute(w2, "aaa"),
	} {
		mustCreateCompute(t, s, c, newOperation(fmt.Sprintf("op-%d", i), c, model.OpCreate))
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
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := s.ComputeList(t.Context(), tt.ws, tt.page)
			if err != nil {
				t.Fatalf("ComputeList: %v", err)
			}
			if diff := cmp.Diff(tt.wantNames, computeNames(got)); diff != "" {
				t.Errorf("ComputeList(%+v) names (-want +got):\n%s", tt.page, diff)
			}
		})
	}
	got, err := s.ComputeList(t.Context(), w2.ID, store.Page{})
	if err != nil {
		t.Fatalf("ComputeList: %v", err)
	}
	if diff := cmp.Diff([]model.Compute{newCompute(w2, "aaa")}, got); diff != "" {
		t.Errorf("ComputeList rows (-want +got):\n%s", diff)
	}
}

func testComputeListByState(t *testing.T, s store.Store) {
	w := setupWorkspace(t, s, "ws")
	w2 := setupWorkspace(t, s, "ws2")
	for i, c := range []struct {
		ws    model.Workspace
		name  string
		state model.ProvisioningState
	}{
		{w, "creating", model.StateCreating},
		{w2, "creating2", model.StateCreating},
		{w, "deleting", model.StateDeleting},
		{w, "updating", model.StateUpdating},
		{w, "ok", model.StateSucceeded},
		{w2, "failed", model.StateFailed},
	} {
		comp := newCompute(c.ws, c.name)
		comp.State = c.state
		mustCreateCompute(t, s, comp, newOperation(fmt.Sprintf("op-%d", i), comp, model.OpCreate))
	}
	tests := []struct {
		name      string
		states    []model.ProvisioningState
		wantNames []string
	}{
		{"none", nil, nil},
		{"one", []model.ProvisioningState{model.StateSucceeded}, []string{"ok"}},
		{"across workspaces", []model.ProvisioningState{model.StateCreating}, []string{"creating", "creating2"}},
		{"pending", []model.ProvisioningState{model.StateCreating, model.StateUpdating, model.StateDeleting},
			[]string{"creating", "creating2", "deleting", "updating"}},
		{"no match", []model.ProvisioningState{"Unknown"}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := s.ComputeListByState(t.Context(), tt.states...)
			if err != nil {
				t.Fatalf("ComputeListByState: %v", err)
			}
			// The contract fixes no order across workspaces.
			names := computeNames(got)
			slices.Sort(names)
			if diff := cmp.Diff(tt.wantNames, names); diff != "" {
				t.Errorf("ComputeListByState(%v) names (-want +got):\n%s", tt.states, diff)
			}
			for _, c := range got {
				if !slices.Contains(tt.states, c.State) {
					t.Errorf("ComputeListByState(%v) returned %s in state %s", tt.states, c.Name, c.State)
				}
			}
		})
	}
}

func testComputeDelete(t *testing.T, s store.Store) {
	w := setupWorkspace(t, s, "ws")
	c := newCompute(w, "Cpu")
	op := newOperation("op-create", c, model.OpCreate)
	mustCreateCompute(t, s, c, op)
	del := newOperation("op-delete", c, model.OpDelete)
	if err := s.OperationCreate(t.Context(), del); err != nil {
		t.Fatalf("OperationCreate: %v", err)
	}
	if err := s.ComputeDelete(t.Context(), strings.ToLower(c.ID), ""); err != nil {
		t.Fatalf("ComputeDelete: %v", err)
	}
	if _, err := s.ComputeGet(t.Context(), c.ID); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("ComputeGet after delete error = %v, want ErrNotFound", err)
	}
	if err := s.ComputeDelete(t.Context(), c.ID, ""); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("second ComputeDelete error = %v, want ErrNotFound", err)
	}
	// Operations stay pollable after the compute is gone.
	wantOperation(t, s, op.ID, op)
	wantOperation(t, s, del.ID, del)
	// The name is free again.
	again := newCompute(w, "CPU")
	mustCreateCompute(t, s, again, newOperation("op-again", again, model.OpCreate))
}

func testComputeDeleteETag(t *testing.T, s store.Store) {
	w := setupWorkspace(t, s, "ws")
	tests := []struct {
		name    string
		match   string
		wantErr error
	}{
		{"no precondition", "", nil},
		{"match", `W/"1"`, nil},
		{"mismatch", `W/"9"`, store.ErrPreconditionFailed},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newCompute(w, fmt.Sprintf("c%d", i))
			mustCreateCompute(t, s, c, newOperation("op-"+c.Name, c, model.OpCreate))
			err := s.ComputeDelete(t.Context(), c.ID, tt.match)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("ComputeDelete(match %q) error = %v, want %v", tt.match, err, tt.wantErr)
			}
			_, err = s.ComputeGet(t.Context(), c.ID)
			if tt.wantErr != nil && err != nil {
				t.Errorf("ComputeGet after refused delete: %v", err)
			}
			if tt.wantErr == nil && !errors.Is(err, store.ErrNotFound) {
				t.Errorf("ComputeGet after delete error = %v, want ErrNotFound", err)
			}
		})
	}
	if err := s.ComputeDelete(t.Context(), newCompute(w, "missing").ID, `W/"1"`); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("ComputeDelete(missing, etag) error = %v, want ErrNotFound", err)
	}
}

// testComputeDeleteCascades checks what goes with a compute: its events
// and status. Its jobs stay (they outlive it), and so do its nodes (the
// control plane releases them before it deletes the compute).
func testComputeDeleteCascades(t *testing.T, s store.Store) {
	ctx := t.Context()
	w := setupWorkspace(t, s, "ws")
	c := newCompute(w, "cpu")
	keep := newCompute(w, "cpu2") // its ID extends c's: must survive
	mustCreateCompute(t, s, c, newOperation("op-c", c, model.OpCreate))
	mustCreateCompute(t, s, keep, newOperation("op-keep", keep, model.OpCreate))
	for _, id := range []string{c.ID, keep.ID} {
		if err := s.EventAppend(ctx, model.Event{ComputeID: id, Time: at(1), Kind: "ScaleUp", Message: "1 node"}); err != nil {
			t.Fatalf("EventAppend: %v", err)
		}
		if err := s.ComputeStatusSet(ctx, model.ComputeStatus{ComputeID: id, TargetNodes: 1, Allocation: "Resizing"}); err != nil {
			t.Fatalf("ComputeStatusSet: %v", err)
		}
	}
	j := newJob(w, "train", c.Name, 1)
	j.Status = model.JobCompleted
	mustCreateJob(t, s, j)
	n := newNode("node-1", c.ID, model.NodeLeaving)
	mustCreateNode(t, s, n)

	if err := s.ComputeDelete(ctx, strings.ToUpper(c.ID), ""); err != nil {
		t.Fatalf("ComputeDelete: %v", err)
	}

	if es, err := s.EventList(ctx, c.ID, 0); err != nil || len(es) != 0 {
		t.Errorf("EventList(deleted compute) = %v, %v; want none", es, err)
	}
	wantNoComputeStatus(t, s, c.ID)
	wantJob(t, s, j.ID, j)
	wantNode(t, s, n.ID, n)
	// The other compute keeps its own.
	if es, err := s.EventList(ctx, keep.ID, 0); err != nil || len(es) != 1 {
		t.Errorf("EventList(other compute) = %v, %v; want one event", es, err)
	}
	if _, err := s.ComputeStatusGet(ctx, keep.ID); err != nil {
		t.Errorf("ComputeStatusGet(other compute): %v", err)
	}

	// A compute created again under the name starts with no events or
	// status, and its old jobs are listed under it.
	again := newCompute(w, "cpu")
	mustCreateCompute(t, s, again, newOperation("op-again", again, model.OpCreate))
	wantNoComputeStatus(t, s, again.ID)
	js, err := s.JobListByCompute(ctx, again.ID, model.JobCompleted)
	if err != nil {
		t.Fatalf("JobListByCompute: %v", err)
	}
	if diff := cmp.Diff([]string{"train"}, jobNames(js)); diff != "" {
		t.Errorf("JobListByCompute names (-want +got):\n%s", diff)
	}
}

func testComputeConcurrentCreateSameName(t *testing.T, s store.Store) {
	w := setupWorkspace(t, s, "ws")
	const n = 50
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			// Vary the spelling: uniqueness is case-insensitive.
			name := "Race"
			if i%2 == 1 {
				name = "race"
			}
			c := newCompute(w, name)
			c.Description = fmt.Sprint(i)
			errs[i] = s.ComputeCreate(t.Context(), c, newOperation(fmt.Sprintf("op-%d", i), c, model.OpCreate))
		})
	}
	wg.Wait()
	winner := -1
	for i, err := range errs {
		switch {
		case err == nil && winner >= 0:
			t.Errorf("creates %d and %d both succeeded", winner, i)
		case err == nil:
			winner = i
		case !errors.Is(err, store.ErrConflict):
			t.Errorf("create %d error = %v, want nil or ErrConflict", i, err)
		}
	}
	if winner < 0 {
		t.Fatal("no create succeeded")
	}
	got, err := s.ComputeGet(t.Context(), newCompute(w, "RACE").ID)
	if err != nil {
		t.Fatalf("ComputeGet: %v", err)
	}
	if got.Description != fmt.Sprint(winner) {
		t.Errorf("stored compute is from create %s, want %d", got.Description, winner)
	}
	for i := range n {
		_, err := s.OperationGet(t.Context(), fmt.Sprintf("op-%d", i))
		if i == winner && err != nil {
			t.Errorf("winner's operation: %v", err)
		}
		if i != winner && !errors.Is(err, store.ErrNotFound) {
			t.Errorf("loser %d's operation error = %v, want ErrNotFound", i, err)
		}
	}
}

// testComputeConcurrentWriters runs many writers and readers at once: none
// may fail (no "database is locked"), and every write must be visible.
func testComputeConcurrentWriters(t *testing.T, s store.Store) {
	w := setupWorkspace(t, s, "ws")
	const n = 50
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			c := newCompute(w, fmt.Sprintf("c%02d", i))
			op := newOperation("op-"+c.Name, c, model.OpCreate)
			if err := s.ComputeCreate(t.Context(), c, op); err != nil {
				t.Errorf("ComputeCreate(%s): %v", c.Name, err)
				return
			}
			c.State = model.StateSucceeded
			c.ETag = `W/"2"`
			if err := s.ComputeUpdate(t.Context(), c, `W/"1"`, nil); err != nil {
				t.Errorf("ComputeUpdate(%s): %v", c.Name, err)
			}
			op.Status = model.OpSucceeded
			op.EndedAt = at(60)
			if err := s.OperationUpdate(t.Context(), op); err != nil {
				t.Errorf("OperationUpdate(%s): %v", op.ID, err)
			}
		})
		wg.Go(func() {
			if _, err := s.ComputeList(t.Context(), w.ID, store.Page{}); err != nil {
				t.Errorf("ComputeList: %v", err)
			}
		})
	}
	wg.Wait()
	got, err := s.ComputeListByState(t.Context(), model.StateSucceeded)
	if err != nil {
		t.Fatalf("ComputeListByState: %v", err)
	}
	if len(got) != n {
		t.Errorf("ComputeListByState(Succeeded) returned %d computes, want %d", len(got), n)
	}
}

package storetest

import (
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"kumo/internal/model"
	"kumo/internal/store"
)

var workspaceTests = []test{
	{"CreateGet", testWorkspaceCreateGet},
	{"GetMissing", testWorkspaceGetMissing},
	{"CreateConflict", testWorkspaceCreateConflict},
	{"Update", testWorkspaceUpdate},
	{"UpdateMissing", testWorkspaceUpdateMissing},
	{"EmptyTags", testWorkspaceEmptyTags},
	{"List", testWorkspaceList},
	{"Delete", testWorkspaceDelete},
	{"DeleteCascades", testWorkspaceDeleteCascades},
	{"DeleteCascadesJobs", testWorkspaceDeleteCascadesJobs},
}

// mustCreateWorkspace creates w or fails the test.
func mustCreateWorkspace(t *testing.T, s store.Store, w model.Workspace) {
	t.Helper()
	if err := s.WorkspaceCreate(t.Context(), w); err != nil {
		t.Fatalf("WorkspaceCreate(%s): %v", w.ID, err)
	}
}

func testWorkspaceCreateGet(t *testing.T, s store.Store) {
	want := newWorkspace("sub1", "Rg-One", "My-Workspace")
	mustCreateWorkspace(t, s, want)
	for _, id := range []string{want.ID, strings.ToUpper(want.ID), strings.ToLower(want.ID)} {
		got, err := s.WorkspaceGet(t.Context(), id)
		if err != nil {
			t.Fatalf("WorkspaceGet(%s): %v", id, err)
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("WorkspaceGet(%s) mismatch (-want +got):\n%s", id, diff)
		}
	}
}

func testWorkspaceGetMissing(t *testing.T, s store.Store) {
	_, err := s.WorkspaceGet(t.Context(), newWorkspace("sub1", "rg", "nope").ID)
	if !errors.Is(err, store.ErrNotFound) {
		t.Errorf("WorkspaceGet(missing) error = %v, want ErrNotFound", err)
	}
}

func testWorkspaceCreateConflict(t *testing.T, s store.Store) {
	first := newWorkspace("sub1", "rg", "ml-space")
	mustCreateWorkspace(t, s, first)
	tests := []struct {
		name    string
		w       model.Workspace
		wantErr error
	}{
		{"same", newWorkspace("sub1", "rg", "ml-space"), store.ErrConflict},
		{"name case", newWorkspace("sub1", "rg", "ML-Space"), store.ErrConflict},
		{"all case", newWorkspace("SUB1", "RG", "ML-SPACE"), store.ErrConflict},
		{"other group", newWorkspace("sub1", "rg2", "ML-Space"), nil},
		{"other subscription", newWorkspace("sub2", "rg", "ml-space"), nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := s.WorkspaceCreate(t.Context(), tt.w)
			if !errors.Is(err, tt.wantErr) {
				t.Errorf("WorkspaceCreate(%s) error = %v, want %v", tt.w.ID, err, tt.wantErr)
			}
		})
	}
	got, err := s.WorkspaceGet(t.Context(), first.ID)
	if err != nil {
		t.Fatalf("WorkspaceGet: %v", err)
	}
	if diff := cmp.Diff(first, got); diff != "" {
		t.Errorf("first workspace changed (-want +got):\n%s", diff)
	}
}

func testWorkspaceUpdate(t *testing.T, s store.Store) {
	orig := newWorkspace("sub1", "rg", "ws")
	mustCreateWorkspace(t, s, orig)

	upd := orig
	upd.ID = strings.ToUpper(orig.ID)
	upd.Description = "changed"
	upd.Tags = map[string]string{"new": "tag"}
	upd.ModifiedAt = at(100)
	// Immutable fields: an update must not change them.
	upd.Location = "elsewhere"
	upd.CreatedBy = "mallory"
	upd.CreatedAt = at(99)
	if err := s.WorkspaceUpdate(t.Context(), upd); err != nil {
		t.Fatalf("WorkspaceUpdate: %v", err)
	}

	want := orig
	want.Description = "changed"
	want.Tags = map[string]string{"new": "tag"}
	want.ModifiedAt = at(100)
	got, err := s.WorkspaceGet(t.Context(), orig.ID)
	if err != nil {
		t.Fatalf("WorkspaceGet: %v", err)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("after WorkspaceUpdate (-want +got):\n%s", diff)
	}

	upd.Tags = nil
	if err := s.WorkspaceUpdate(t.Context(), upd); err != nil {
		t.Fatalf("WorkspaceUpdate(nil tags): %v", err)
	}
	got, err = s.WorkspaceGet(t.Context(), orig.ID)
	if err != nil {
		t.Fatalf("WorkspaceGet: %v", err)
	}
	if got.Tags != nil {
		t.Errorf("Tags after clearing = %#v, want nil", got.Tags)
	}
}

func testWorkspaceUpdateMissing(t *testing.T, s store.Store) {
	err := s.WorkspaceUpdate(t.Context(), newWorkspace("sub1", "rg", "nope"))
	if !errors.Is(err, store.ErrNotFound) {
		t.Errorf("WorkspaceUpdate(missing) error = %v, want ErrNotFound", err)
	}
}

func testWorkspaceEmptyTags(t *testing.T, s store.Store) {
	tests := []struct {
		name string
		tags map[string]string
	}{
		{"nil", nil},
		{"empty", map[string]string{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := newWorkspace("sub1", "rg", "ws-"+tt.name)
			w.Tags = tt.tags
			w.Description = ""
			mustCreateWorkspace(t, s, w)
			got, err := s.WorkspaceGet(t.Context(), w.ID)
			if err != nil {
				t.Fatalf("WorkspaceGet: %v", err)
			}
			if got.Tags != nil {
				t.Errorf("Tags = %#v, want nil", got.Tags)
			}
			if got.Description != "" {
				t.Errorf("Description = %q, want empty", got.Description)
			}
		})
	}
}

// workspaceNames returns the names of ws, for compact comparisons.
func workspaceNames(ws []model.Workspace) []string {
	var names []string
	for _, w := range ws {
		names = append(names, w.Name)
	}
	return names
}

func testWorkspaceList(t *testing.T, s store.Store) {
	for _, w := range []model.Workspace{
		newWorkspace("sub1", "rg1", "charlie"),
		newWorkspace("sub1", "rg1", "Alpha"),
		newWorkspace("sub1", "RG2", "bravo"),
		newWorkspace("sub1", "rg2", "Delta"),
		newWorkspace("sub2", "rg1", "aardvark"),
	} {
		mustCreateWorkspace(t, s, w)
	}
	tests := []struct {
		name      string
		sub, rg   string
		page      store.Page
		wantNames []string
	}{
		{"subscription", "sub1", "", store.Page{}, []string{"Alpha", "bravo", "charlie", "Delta"}},
		{"subscription case", "SUB1", "", store.Page{}, []string{"Alpha", "bravo", "charlie", "Delta"}},
		{"group", "sub1", "rg1", store.Page{}, []string{"Alpha", "charlie"}},
		{"group case", "sub1", "Rg2", store.Page{}, []string{"bravo", "Delta"}},
		{"first page", "sub1", "", store.Page{Limit: 2}, []string{"Alpha", "bravo"}},
		{"second page", "sub1", "", store.Page{After: "bravo", Limit: 2}, []string{"charlie", "Delta"}},
		{"after folded", "sub1", "", store.Page{After: "BRAVO", Limit: 2}, []string{"charlie", "Delta"}},
		{"last page", "sub1", "", store.Page{After: "delta", Limit: 2}, nil},
		{"negative limit", "sub1", "", store.Page{After: "alpha", Limit: -1}, []string{"bravo", "charlie", "Delta"}},
		{"other subscription", "sub2", "", store.Page{}, []string{"aardvark"}},
		{"empty subscription", "sub3", "", store.Page{}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := s.WorkspaceList(t.Context(), tt.sub, tt.rg, tt.page)
			if err != nil {
				t.Fatalf("WorkspaceList: %v", err)
			}
			if diff := cmp.Diff(tt.wantNames, workspaceNames(got)); diff != "" {
				t.Errorf("WorkspaceList(%q, %q, %+v) names (-want +got):\n%s", tt.sub, tt.rg, tt.page, diff)
			}
		})
	}
	got, err := s.WorkspaceList(t.Context(), "sub1", "rg1", store.Page{Limit: 1})
	if err != nil {
		t.Fatalf("WorkspaceList: %v", err)
	}
	if diff := cmp.Diff([]model.Workspace{newWorkspace("sub1", "rg1", "Alpha")}, got); diff != "" {
		t.Errorf("WorkspaceList rows (-want +got):\n%s", diff)
	}
}

func testWorkspaceDelete(t *testing.T, s store.Store) {
	w := newWorkspace("sub1", "rg", "ws")
	mustCreateWorkspace(t, s, w)
	if err := s.WorkspaceDelete(t.Context(), strings.ToUpper(w.ID)); err != nil {
		t.Fatalf("WorkspaceDelete: %v", err)
	}
	if _, err := s.WorkspaceGet(t.Context(), w.ID); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("WorkspaceGet after delete error = %v, want ErrNotFound", err)
	}
	if err := s.WorkspaceDelete(t.Context(), w.ID); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("second WorkspaceDelete error = %v, want ErrNotFound", err)
	}
	// The name is free again.
	mustCreateWorkspace(t, s, w)
}

func testWorkspaceDeleteCascades(t *testing.T, s store.Store) {
	ctx := t.Context()
	w := newWorkspace("sub1", "rg", "ws")
	other := newWorkspace("sub1", "rg", "ws2") // its ID extends w's: must survive
	mustCreateWorkspace(t, s, w)
	mustCreateWorkspace(t, s, other)

	c := newCompute(w, "cpu")
	gone := newCompute(w, "gone")
	keep := newCompute(other, "cpu")
	mustCreateCompute(t, s, c, newOperation("op-c", c, model.OpCreate))
	mustCreateCompute(t, s, gone, newOperation("op-gone", gone, model.OpCreate))
	mustCreateCompute(t, s, keep, newOperation("op-keep", keep, model.OpCreate))
	// A compute deleted earlier leaves its delete operation behind.
	if err := s.OperationCreate(ctx, newOperation("op-gone-delete", gone, model.OpDelete)); err != nil {
		t.Fatalf("OperationCreate: %v", err)
	}
	if err := s.ComputeDelete(ctx, gone.ID, ""); err != nil {
		t.Fatalf("ComputeDelete: %v", err)
	}
	for _, q := range []model.Quota{
		{WorkspaceID: w.ID, Family: "standardDSv2Family", Limit: 10},
		{WorkspaceID: other.ID, Family: "standardDSv2Family", Limit: 20},
	} {
		if err := s.QuotaSet(ctx, q); err != nil {
			t.Fatalf("QuotaSet: %v", err)
		}
	}

	if err := s.WorkspaceDelete(ctx, w.ID); err != nil {
		t.Fatalf("WorkspaceDelete: %v", err)
	}

	if _, err := s.ComputeGet(ctx, c.ID); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("ComputeGet(deleted workspace's compute) error = %v, want ErrNotFound", err)
	}
	for _, id := range []string{"op-c", "op-gone", "op-gone-delete"} {
		if _, err := s.OperationGet(ctx, id); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("OperationGet(%s) error = %v, want ErrNotFound", id, err)
		}
	}
	qs, err := s.QuotaList(ctx, w.ID)
	if err != nil {
		t.Fatalf("QuotaList: %v", err)
	}
	if len(qs) != 0 {
		t.Errorf("QuotaList(deleted workspace) = %v, want none", qs)
	}
	cs, err := s.ComputeList(ctx, w.ID, store.Page{})
	if err != nil {
		t.Fatalf("ComputeList: %v", err)
	}
	if len(cs) != 0 {
		t.Errorf("ComputeList(deleted workspace) = %v, want none", cs)
	}

	// The other workspace is untouched.
	if _, err := s.ComputeGet(ctx, keep.ID); err != nil {
		t.Errorf("ComputeGet(other workspace's compute): %v", err)
	}
	if _, err := s.OperationGet(ctx, "op-keep"); err != nil {
		t.Errorf("OperationGet(other workspace's operation): %v", err)
	}
	qs, err = s.QuotaList(ctx, other.ID)
	if err != nil {
		t.Fatalf("QuotaList: %v", err)
	}
	if len(qs) != 1 {
		t.Errorf("QuotaList(other workspace) = %v, want one quota", qs)
	}
}

// testWorkspaceDeleteCascadesJobs checks that a workspace's jobs go with
// it, with the events and status of its computes (live or already
// deleted). Nodes stay: the control plane releases them first.
func testWorkspaceDeleteCascadesJobs(t *testing.T, s store.Store) {
	ctx := t.Context()
	w := newWorkspace("sub1", "rg", "ws")
	other := newWorkspace("sub1", "rg", "ws2") // its ID extends w's: must survive
	mustCreateWorkspace(t, s, w)
	mustCreateWorkspace(t, s, other)
	c := newCompute(w, "cpu")
	keep := newCompute(other, "cpu")
	mustCreateCompute(t, s, c, newOperation("op-c", c, model.OpCreate))
	mustCreateCompute(t, s, keep, newOperation("op-keep", keep, model.OpCreate))
	// Events of a compute that no longer exists, written after its delete.
	gone := newCompute(w, "gone")
	for _, id := range []string{c.ID, keep.ID, gone.ID} {
		if err := s.EventAppend(ctx, model.Event{ComputeID: id, Time: at(1), Kind: "ScaleUp", Message: "1 node"}); err != nil {
			t.Fatalf("EventAppend: %v", err)
		}
		if err := s.ComputeStatusSet(ctx, model.ComputeStatus{ComputeID: id, Allocation: "Steady"}); err != nil {
			t.Fatalf("ComputeStatusSet: %v", err)
		}
	}
	jobs := []model.Job{
		newJob(w, "a", "cpu", 1),
		newJob(w, "b", model.LocalCompute, 2),
		newJob(w, "c", "gone", 3),
	}
	for _, j := range jobs {
		mustCreateJob(t, s, j)
	}
	keepJob := newJob(other, "a", "cpu", 4)
	mustCreateJob(t, s, keepJob)
	n := newNode("node-1", c.ID, model.NodeLeaving)
	mustCreateNode(t, s, n)

	if err := s.WorkspaceDelete(ctx, w.ID); err != nil {
		t.Fatalf("WorkspaceDelete: %v", err)
	}

	for _, j := range jobs {
		wantNoJob(t, s, j.ID)
		if _, err := s.JobGetByRunID(ctx, j.RunID); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("JobGetByRunID(%s) error = %v, want ErrNotFound", j.RunID, err)
		}
	}
	if js, err := s.JobList(ctx, w.ID, store.Page{}); err != nil || len(js) != 0 {
		t.Errorf("JobList(deleted workspace) = %v, %v; want none", js, err)
	}
	for _, id := range []string{c.ID, gone.ID} {
		if es, err := s.EventList(ctx, id, 0); err != nil || len(es) != 0 {
			t.Errorf("EventList(%s) = %v, %v; want none", id, es, err)
		}
		wantNoComputeStatus(t, s, id)
	}
	wantNode(t, s, n.ID, n)

	// The other workspace is untouched.
	wantJob(t, s, keepJob.ID, keepJob)
	if es, err := s.EventList(ctx, keep.ID, 0); err != nil || len(es) != 1 {
		t.Errorf("EventList(other workspace's compute) = %v, %v; want one event", es, err)
	}
	if _, err := s.ComputeStatusGet(ctx, keep.ID); err != nil {
		t.Errorf("ComputeStatusGet(other workspace's compute): %v", err)
	}
}

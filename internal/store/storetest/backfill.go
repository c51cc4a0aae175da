package storetest

import (
	"fmt"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"kumo/internal/model"
	"kumo/internal/store"
)

// FactsBackfill checks a backend's facts migration (the job Seq counter
// and unique SSH ports) on a store made before it. It stores jobs with
// Seqs 3, 41 and 7 in s; undo takes the migration back; insertNode stores
// nodes a to f as the old schema allowed, three of them on port 50000;
// reopen opens the store again, which applies the migration. Then the
// Seq counter starts after the largest Seq stored, and nodes that shared
// a port (which only an in-memory port list kept apart) get ports of
// their own after the largest, so that the unique index can hold.
func FactsBackfill(t *testing.T, s store.Store, undo func(), insertNode func(model.Node), reopen func() store.Store) {
	t.Helper()
	const ws = "/subscriptions/s/resourceGroups/rg/providers/Microsoft.MachineLearningServices/workspaces/ws"
	t0 := time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
	for i, seq := range []int64{3, 41, 7} {
		name := fmt.Sprintf("j%d", i)
		j := model.Job{ID: ws + "/jobs/" + name, WorkspaceID: ws, Name: name, RunID: "run-" + name,
			ComputeID: ws + "/computes/cpu", Command: "true", InstanceCount: 1, Status: model.JobQueued, Seq: seq, CreatedAt: t0}
		if err := s.JobCreate(t.Context(), j); err != nil {
			t.Fatalf("JobCreate: %v", err)
		}
	}
	undo()
	ports := map[string]int{"a": 50000, "b": 50000, "c": 50001, "d": 0, "e": 0, "f": 50000}
	for id, port := range ports {
		insertNode(model.Node{ID: id, ComputeID: ws + "/computes/cpu", State: model.NodeIdle, SSHPort: port, CreatedAt: t0, StateSince: t0})
	}
	s = reopen()
	next := model.Job{ID: ws + "/jobs/next", WorkspaceID: ws, Name: "next", RunID: "run-next",
		ComputeID: ws + "/computes/cpu", Command: "true", InstanceCount: 1, Status: model.JobQueued, CreatedAt: t0}
	if got, err := s.JobSubmit(t.Context(), next); err != nil || got.Seq != 42 {
		t.Errorf("JobSubmit: Seq %d, %v; want 42, after the largest stored", got.Seq, err)
	}
	got := map[string]int{}
	for id := range ports {
		n, err := s.NodeGet(t.Context(), id)
		if err != nil {
			t.Fatal(err)
		}
		got[id] = n.SSHPort
	}
	// a keeps 50000 (first by ID), c its own 50001; b and f, which shared
	// 50000, come after the largest port in order; d and e have none.
	want := map[string]int{"a": 50000, "b": 50002, "c": 50001, "d": 0, "e": 0, "f": 50003}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("SSH ports after the migration (-want +got):\n%s", diff)
	}
}

package storetest

import (
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"kumo/internal/model"
	"kumo/internal/store"
)

var computeStatusTests = []test{
	{"SetGetReplace", testComputeStatusSetGetReplace},
}

// wantComputeStatus fails the test unless the stored status of the
// compute with id equals want.
func wantComputeStatus(t *testing.T, s store.Store, id string, want model.ComputeStatus) {
	t.Helper()
	got, err := s.ComputeStatusGet(t.Context(), id)
	if err != nil {
		t.Fatalf("ComputeStatusGet(%s): %v", id, err)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("ComputeStatusGet(%s) mismatch (-want +got):\n%s", id, diff)
	}
}

// wantNoComputeStatus fails the test if the compute with id has a status.
func wantNoComputeStatus(t *testing.T, s store.Store, id string) {
	t.Helper()
	if _, err := s.ComputeStatusGet(t.Context(), id); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("ComputeStatusGet(%s) error = %v, want ErrNotFound", id, err)
	}
}

func testComputeStatusSetGetReplace(t *testing.T, s store.Store) {
	w := setupWorkspace(t, s, "ws")
	cpu := newCompute(w, "cpu").ID
	gpu := newCompute(w, "gpu").ID
	wantNoComputeStatus(t, s, cpu)

	resizing := model.ComputeStatus{
		ComputeID:       cpu,
		TargetNodes:     3,
		Allocation:      "Resizing",
		AllocationSince: at(30),
		Errors:          []model.Error{{Code: "QuotaExceeded", Message: "no cores"}, {Code: "Other"}},
		Blocked:         "QuotaExceeded",
		BlockedDetail:   "standardDSv2Family: 10 of 10 vCPUs in use",
		Failures:        2,
		LastFailure:     at(28),
		RetryAt:         at(29),
	}
	if err := s.ComputeStatusSet(t.Context(), resizing); err != nil {
		t.Fatalf("ComputeStatusSet: %v", err)
	}
	wantComputeStatus(t, s, cpu, resizing)
	wantComputeStatus(t, s, strings.ToUpper(cpu), resizing)
	wantNoComputeStatus(t, s, gpu)

	// Replaced whole, with empty errors reading back as nil.
	steady := model.ComputeStatus{ComputeID: cpu, Allocation: "Steady", AllocationSince: at(31), Errors: []model.Error{}}
	if err := s.ComputeStatusSet(t.Context(), steady); err != nil {
		t.Fatalf("ComputeStatusSet: %v", err)
	}
	want := steady
	want.Errors = nil
	wantComputeStatus(t, s, cpu, want)

	// A bare status round-trips too.
	bare := model.ComputeStatus{ComputeID: gpu}
	if err := s.ComputeStatusSet(t.Context(), bare); err != nil {
		t.Fatalf("ComputeStatusSet: %v", err)
	}
	wantComputeStatus(t, s, gpu, bare)
	wantComputeStatus(t, s, cpu, want)
}

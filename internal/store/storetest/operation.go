package storetest

import (
	"errors"
	"github.com/google/go-cmp/cmp"
	"testing"
	"time"

	"kumo/internal/model"
	"kumo/internal/store"
)

var operationTests = []test{
	{"CreateGet", testOperationCreateGet},
	{"CreateConflict", testOperationCreateConflict},
	{"Update", testOperationUpdate},
	{"Missing", testOperationMissing},
	{"ListInProgress", testOperationListInProgress},
	{"Timestamps", testOperationTimestamps},
}

// stubCompute is a compute that need not exist: operations do not require
// one.
var stubCompute = newCompute(newWorkspace("sub1", "rg", "ws"), "cpu")

func testOperationCreateGet(t *testing.T, s store.Store) {
	tests := []struct {
		name string
		op   model.Operation
	}{
		{"in progress", newOperation("op-1", stubCompute, model.OpDelete)},
		{"failed", model.Operation{
			ID: "op-2", Location: "local", Kind: model.OpCreate, ComputeID: stubCompute.ID,
			Status: model.OpFailed, Error: &model.Error{Code: "Boom", Message: "it broke"},
			StartedAt: at(1), EndedAt: at(2),
		}},
		{"empty error", model.Operation{
			ID: "op-3", Location: "local", Kind: model.OpUpdate, ComputeID: stubCompute.ID,
			Status: model.OpFailed, Error: &model.Error{}, StartedAt: at(1), EndedAt: at(2),
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := s.OperationCreate(t.Context(), tt.op); err != nil {
				t.Fatalf("OperationCreate: %v", err)
			}
			wantOperation(t, s, tt.op.ID, tt.op)
		})
	}
}

func testOperationCreateConflict(t *testing.T, s store.Store) {
	op := newOperation("op-1", stubCompute, model.OpDelete)
	if err := s.OperationCreate(t.Context(), op); err != nil {
		t.Fatalf("OperationCreate: %v", err)
	}
	dup := op
	dup.Kind = model.OpCreate
	if err := s.OperationCreate(t.Context(), dup); !errors.Is(err, store.ErrConflict) {
		t.Errorf("OperationCreate(duplicate) error = %v, want ErrConflict", err)
	}
	wantOperation(t, s, op.ID, op)
}

func testOperationUpdate(t *testing.T, s store.Store) {
	op := newOperation("op-1", stubCompute, model.OpCreate)
	if err := s.OperationCreate(t.Context(), op); err != nil {
		t.Fatalf("OperationCreate: %v", err)
	}

	failed := op
	failed.Status = model.OpFailed
	failed.Error = &model.Error{Code: "AllocationFailed", Message: "no capacity"}
	failed.EndedAt = at(30)
	// Only status, error and end time change.
	upd := failed
	upd.Kind = model.OpDelete
	upd.Location = "elsewhere"
	upd.ComputeID = "/other"
	upd.StartedAt = at(29)
	if err := s.OperationUpdate(t.Context(), upd); err != nil {
		t.Fatalf("OperationUpdate: %v", err)
	}
	wantOperation(t, s, op.ID, failed)

	// Back to no error and no end time.
	if err := s.OperationUpdate(t.Context(), op); err != nil {
		t.Fatalf("OperationUpdate: %v", err)
	}
	wantOperation(t, s, op.ID, op)
}

func testOperationMissing(t *testing.T, s store.Store) {
	wantNoOperation(t, s, "nope")
	err := s.OperationUpdate(t.Context(), newOperation("nope", stubCompute, model.OpCreate))
	if !errors.Is(err, store.ErrNotFound) {
		t.Errorf("OperationUpdate(missing) error = %v, want ErrNotFound", err)
	}
}

// testOperationTimestamps checks that instants survive exactly, whatever
// their zone; the store hands them back in UTC.
func testOperationTimestamps(t *testing.T, s store.Store) {
	tests := []struct {
		name string
		t    time.Time
	}{
		{"nanoseconds", time.Date(2025, 1, 2, 3, 4, 5, 999999999, time.UTC)},
		{"one nanosecond", time.Date(2025, 1, 2, 3, 4, 5, 1, time.UTC)},
		{"whole second", time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)},
		{"other zone", time.Date(2025, 6, 30, 23, 59, 59, 123000000, time.FixedZone("IST", 5*3600+1800))},
		{"monotonic", time.Now()},
		{"far past", time.Date(1970, 1, 1, 0, 0, 0, 1, time.UTC)},
		{"far future", time.Date(2999, 12, 31, 23, 59, 59, 999999999, time.UTC)},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			op := newOperation(string(rune('a'+i)), stubCompute, model.OpCreate)
			op.StartedAt = tt.t
			op.EndedAt = tt.t.Add(time.Nanosecond)
			if err := s.OperationCreate(t.Context(), op); err != nil {
				t.Fatalf("OperationCreate: %v", err)
			}
			got, err := s.OperationGet(t.Context(), op.ID)
			if err != nil {
				t.Fatalf("OperationGet: %v", err)
			}
			if !got.StartedAt.Equal(op.StartedAt) || !got.EndedAt.Equal(op.EndedAt) {
				t.Errorf("times = %v, %v; want %v, %v", got.StartedAt, got.EndedAt, op.StartedAt, op.EndedAt)
			}
			if got.StartedAt.Location() != time.UTC || got.EndedAt.Location() != time.UTC {
				t.Errorf("time zones = %v, %v; want UTC", got.StartedAt.Location(), got.EndedAt.Location())
			}
		})
	}
}

func testOperationListInProgress(t *testing.T, s store.Store) {
	a := newOperation("op-a", stubCompute, model.OpCreate)
	a.StartedAt = at(7)
	b := newOperation("op-b", stubCompute, model.OpUpdate)
	b.StartedAt = at(3)
	done := newOperation("op-c", stubCompute, model.OpDelete)
	done.Status, done.EndedAt = model.OpSucceeded, at(9)
	for _, op := range []model.Operation{a, b, done} {
		if err := s.OperationCreate(t.Context(), op); err != nil {
			t.Fatalf("OperationCreate: %v", err)
		}
	}
	got, err := s.OperationListInProgress(t.Context())
	if err != nil {
		t.Fatalf("OperationListInProgress: %v", err)
	}
	if diff := cmp.Diff([]model.Operation{b, a}, got); diff != "" {
		t.Errorf("OperationListInProgress (-want +got):\n%s", diff)
	}
	a.Status, a.EndedAt = model.OpFailed, at(8)
	if err := s.OperationUpdate(t.Context(), a); err != nil {
		t.Fatalf("OperationUpdate: %v", err)
	}
	got, err = s.OperationListInProgress(t.Context())
	if err != nil {
		t.Fatalf("OperationListInProgress: %v", err)
	}
	if len(got) != 1 || got[0].ID != "op-b" {
		t.Errorf("after ending op-a, in progress = %v, want only op-b", got)
	}
}

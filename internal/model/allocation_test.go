package model

import (
	"testing"
	"time"
)

// TestAllocationOf: a cluster is Steady since its compute was written
// until the autoscaler records a state, which then holds as recorded.
func TestAllocationOf(t *testing.T) {
	modified := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	c := Compute{ModifiedAt: modified}
	tests := []struct {
		name      string
		status    ComputeStatus
		wantState string
		wantSince time.Time
	}{
		{"no status yet", ComputeStatus{}, AllocationSteady, modified},
		{"a target but no state recorded", ComputeStatus{TargetNodes: 3}, AllocationSteady, modified},
		{"resizing", ComputeStatus{Allocation: AllocationResizing, AllocationSince: modified.Add(time.Minute)}, AllocationResizing, modified.Add(time.Minute)},
		{"steady again", ComputeStatus{Allocation: AllocationSteady, AllocationSince: modified.Add(time.Hour)}, AllocationSteady, modified.Add(time.Hour)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			state, since := AllocationOf(c, tt.status)
			if state != tt.wantState || !since.Equal(tt.wantSince) {
				t.Errorf("AllocationOf = %s since %v, want %s since %v", state, since, tt.wantState, tt.wantSince)
			}
		})
	}
}

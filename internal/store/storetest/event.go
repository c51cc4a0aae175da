package storetest

import (
	"fmt"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"kumo/internal/model"
	"kumo/internal/store"
)

var eventTests = []test{
	{"AppendList", testEventAppendList},
}

func testEventAppendList(t *testing.T, s store.Store) {
	w := setupWorkspace(t, s, "ws")
	cpu := newCompute(w, "cpu").ID
	gpu := newCompute(w, "gpu").ID
	ev := func(compute string, time int, kind string) model.Event {
		return model.Event{ComputeID: compute, Time: at(time), Kind: kind, Message: fmt.Sprintf("%s at %d", kind, time)}
	}
	// Appended out of time order; e3 and e3b share a time.
	all := []model.Event{
		ev(cpu, 1, "ScaleUp"),
		ev(cpu, 2, "NodeUnusable"),
		ev(cpu, 3, "ScaleUp"),
		ev(cpu, 3, "AllocationFailed"),
		ev(cpu, 4, "ScaleDown"),
	}
	for _, e := range []model.Event{all[1], all[0], ev(gpu, 2, "ScaleUp"), all[2], all[3], all[4]} {
		if err := s.EventAppend(t.Context(), e); err != nil {
			t.Fatalf("EventAppend(%+v): %v", e, err)
		}
	}
	// The same event twice is two events.
	dup := ev(gpu, 2, "ScaleUp")
	if err := s.EventAppend(t.Context(), dup); err != nil {
		t.Fatalf("EventAppend(duplicate): %v", err)
	}
	tests := []struct {
		name    string
		compute string
		limit   int
		want    []model.Event
	}{
		{"all", cpu, 0, all},
		{"negative limit", cpu, -1, all},
		{"most recent", cpu, 2, all[3:]},
		{"ties keep append order", cpu, 3, all[2:]},
		{"limit above count", cpu, 10, all},
		{"compute ID case", strings.ToUpper(cpu), 1, all[4:]},
		{"other compute", gpu, 0, []model.Event{dup, dup}},
		{"missing compute", newCompute(w, "nope").ID, 0, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := s.EventList(t.Context(), tt.compute, tt.limit)
			if err != nil {
				t.Fatalf("EventList: %v", err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("EventList(%s, %d) (-want +got):\n%s", tt.compute, tt.limit, diff)
			}
		})
	}
}

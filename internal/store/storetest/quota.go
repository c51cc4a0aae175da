package storetest

import (
	"errors"
	"testing"

	"github.com/google/go-cmp/cmp"

	"kumo/internal/model"
	"kumo/internal/store"
)

var quotaTests = []test{
	{"SetList", testQuotaSetList},
	{"MissingWorkspace", testQuotaMissingWorkspace},
}

func testQuotaSetList(t *testing.T, s store.Store) {
	w := setupWorkspace(t, s, "ws")
	w2 := setupWorkspace(t, s, "ws2")
	for _, q := range []model.Quota{
		{WorkspaceID: w.ID, Family: "standardNCFamily", Limit: 24},
		{WorkspaceID: w.ID, Family: model.LowPriorityFamily, Limit: 100},
		{WorkspaceID: w.ID, Family: "standardDSv2Family", Limit: 10},
		{WorkspaceID: w2.ID, Family: "standardDSv2Family", Limit: 99},
		{WorkspaceID: w.ID, Family: "standardDSv2Family", Limit: 20}, // replaces
	} {
		if err := s.QuotaSet(t.Context(), q); err != nil {
			t.Fatalf("QuotaSet(%+v): %v", q, err)
		}
	}
	tests := []struct {
		name string
		ws   string
		want []model.Quota
	}{
		{"workspace", w.ID, []model.Quota{
			{WorkspaceID: w.ID, Family: model.LowPriorityFamily, Limit: 100},
			{WorkspaceID: w.ID, Family: "standardDSv2Family", Limit: 20},
			{WorkspaceID: w.ID, Family: "standardNCFamily", Limit: 24},
		}},
		{"other workspace", w2.ID, []model.Quota{
			{WorkspaceID: w2.ID, Family: "standardDSv2Family", Limit: 99},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := s.QuotaList(t.Context(), tt.ws)
			if err != nil {
				t.Fatalf("QuotaList: %v", err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("QuotaList(%s) (-want +got):\n%s", tt.ws, diff)
			}
		})
	}
}

func testQuotaMissingWorkspace(t *testing.T, s store.Store) {
	q := model.Quota{WorkspaceID: newWorkspace("sub1", "rg", "nope").ID, Family: "standardDSv2Family", Limit: 1}
	if err := s.QuotaSet(t.Context(), q); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("QuotaSet(missing workspace) error = %v, want ErrNotFound", err)
	}
}

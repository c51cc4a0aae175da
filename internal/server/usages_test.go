package server_test

import (
	"context"
	"testing"
	"time"

	"kumo/api"
	"kumo/internal/model"
)

// TestUsagesShowHostCapacity checks that the usages list ends with the
// region's host capacity, and what the workspace's nodes hold of it.
func TestUsagesShowHostCapacity(t *testing.T) {
	h := newHarness(t)
	h.mustDo("PUT", wsBase+"/computes/c1", computeBody("Standard_D2_v2", 0, 2), model.RoleOwner, 201, nil)
	h.reconcile()
	for i, state := range []model.NodeState{model.NodeIdle, model.NodeRunning, model.NodeLeaving} {
		n := model.Node{ID: "n" + string(rune('a'+i)), ComputeID: wsBase + "/computes/c1", State: state, CreatedAt: time.Now(), StateSince: time.Now()}
		if err := h.st.NodeCreate(context.Background(), n); err != nil {
			t.Fatal(err)
		}
	}
	var got api.UsageList
	h.mustDo("GET", "/subscriptions/"+testSub+"/providers/Microsoft.MachineLearningServices/locations/local/usages", nil, model.RoleReader, 200, &got)
	want := map[string][2]int64{ // current, limit
		"hostVCPUs":    {4, 8},   // two D2 nodes hold capacity; a leaving one does not
		"hostMemoryGB": {14, 24}, // 7 GB each
	}
	seen := map[string]bool{}
	for _, u := range got.Value {
		w, ok := want[u.Name.Value]
		if !ok {
			continue
		}
		seen[u.Name.Value] = true
		if u.CurrentValue != w[0] || u.Limit != w[1] {
			t.Errorf("%s = %d of %d, want %d of %d", u.Name.Value, u.CurrentValue, u.Limit, w[0], w[1])
		}
		if u.Name.LocalizedValue == "" || u.AMLWorkspaceLocation != "local" {
			t.Errorf("%s: %+v lacks a label or location", u.Name.Value, u)
		}
	}
	if len(seen) != len(want) {
		t.Errorf("usages %+v lack the host entries %v", got.Value, want)
	}
	if got.Value[0].Name.Value == "hostVCPUs" {
		t.Errorf("host entries come first; the quotas must come first")
	}
	// A region whose host has GPUs lists them too.
	h.mustDo("GET", "/subscriptions/"+testSub+"/providers/Microsoft.MachineLearningServices/locations/eastus/usages", nil, model.RoleReader, 200, &got)
	found := false
	for _, u := range got.Value {
		found = found || (u.Name.Value == "hostGPUs" && u.Limit == 8)
	}
	if !found {
		t.Errorf("eastus usages lack hostGPUs 8: %+v", got.Value)
	}
}

package server_test

import (
	"context"
	"net/http/httptest"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"kumo/api"
	"kumo/internal/controller/provision"
	"kumo/internal/model"
	"kumo/internal/server"
	"kumo/internal/store/sqlite"
)

// Costs for a known run (sizes, priorities, durations, a fake clock)
// match the catalog prices to the cent: per compute now and so far, per
// job, and over a time range.
func TestCosts(t *testing.T) {
	ctx := context.Background()
	st, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "kumo.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	t0 := time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC)
	now := t0.Add(5 * time.Hour)
	ws := model.Workspace{ID: wsBase, Subscription: testSub, ResourceGroup: "rg1", Name: "ws1", Location: "local", CreatedAt: t0}
	owner, err := server.Bootstrap(ctx, st, ws, t0)
	if err != nil {
		t.Fatal(err)
	}
	regions := map[string]model.Region{"local": model.NewRegion("local", "local", model.Host{VCPUs: 64, MemoryGB: 256})}
	srv := httptest.NewServer(server.New(server.Config{Store: st, Regions: regions, Provisioner: provision.New(provision.Config{Store: st}),
		Now: func() time.Time { return now }}))
	t.Cleanup(srv.Close)
	h := &harness{t: t, st: st, srv: srv, tokens: map[model.Role]string{model.RoleOwner: owner.Secret}}

	// Two clusters: "ded" (Dedicated D2_v2, $0.146/h), "spot" (LowPriority D2_v2, $0.0292/h).
	for name, prio := range map[string]model.Priority{"ded": model.PriorityDedicated, "spot": model.PriorityLowPriority} {
		c := model.Compute{ID: wsBase + "/computes/" + name, WorkspaceID: wsBase, Name: name, Location: "local", VMSize: "Standard_D2_v2",
			Priority: prio, Scale: model.ScaleSettings{MaxNodes: 2}, State: model.StateSucceeded, CreatedAt: t0, ModifiedAt: t0, ETag: "e"}
		if err := st.ComputeCreate(ctx, c, model.Operation{ID: "op-" + name, Location: "local", Kind: model.OpCreate, ComputeID: c.ID,
			Status: model.OpSucceeded, StartedAt: t0, EndedAt: t0}); err != nil {
			t.Fatal(err)
		}
	}
	node := func(id, compute string, prio model.Priority, price float64, start, left time.Duration) {
		n := model.Node{ID: id, ComputeID: wsBase + "/computes/" + compute, State: model.NodeIdle, CreatedAt: t0.Add(start), StateSince: t0.Add(start)}
		if err := st.NodeCreateUsage(ctx, n, model.NodeUsage{NodeID: id, ComputeID: n.ComputeID, WorkspaceID: wsBase,
			VMSize: "Standard_D2_v2", Priority: prio, PricePerHour: price, StartedAt: n.CreatedAt}); err != nil {
			t.Fatal(err)
		}
		if left > 0 {
			gone := n
			gone.State, gone.StateSince = model.NodeLeaving, t0.Add(left)
			if err := st.NodeUpdate(ctx, gone, model.NodeIdle); err != nil {
				t.Fatal(err)
			}
			if err := st.NodeDelete(ctx, id); err != nil {
				t.Fatal(err)
			}
		}
	}
	node("d1", "ded", model.PriorityDedicated, 0.146, 0, 0)                           // 5h so far, still up
	node("s1", "spot", model.PriorityLowPriority, 0.0292, time.Hour, 150*time.Minute) // 1.5h, evicted
	node("s2", "spot", model.PriorityLowPriority, 0.0292, 3*time.Hour, 0)             // 2h so far
	// A job evicted from s1 after 1h, then 1.5h on s2 so far.
	j := model.Job{ID: wsBase + "/jobs/train", WorkspaceID: wsBase, Name: "train", RunID: "r1", ComputeID: wsBase + "/computes/spot",
		Command: "train", InstanceCount: 1, Status: model.JobRunning, NodeID: "s2", Attempts: 2, Seq: 1, CreatedAt: t0,
		History: []model.Attempt{
			{Number: 1, NodeID: "s1", StartedAt: t0.Add(90 * time.Minute), EndedAt: t0.Add(150 * time.Minute), Class: model.ClassPreemption, Reason: model.ReasonPreempted},
			{Number: 2, NodeID: "s2", StartedAt: t0.Add(210 * time.Minute)},
		}}
	if err := st.JobCreate(ctx, j); err != nil {
		t.Fatal(err)
	}

	var c api.ComputeResource
	h.mustDo("GET", wsBase+"/computes/ded", nil, model.RoleOwner, 200, &c)
	if got, want := c.Properties.Properties.Cost, (&api.ComputeCost{Currency: "USD", PerHour: 0.146, SoFar: 0.73}); !cmp.Equal(got, want) {
		t.Errorf("ded cost = %+v, want %+v", got, want)
	}
	h.mustDo("GET", wsBase+"/computes/spot", nil, model.RoleOwner, 200, &c)
	// s1: 1.5h × 0.0292 = 0.0438; s2: 2h × 0.0292 = 0.0584; 0.1022
	if got, want := c.Properties.Properties.Cost, (&api.ComputeCost{Currency: "USD", PerHour: 0.0292, SoFar: 0.10}); !cmp.Equal(got, want) {
		t.Errorf("spot cost = %+v, want %+v", got, want)
	}
	var job api.JobResource
	h.mustDo("GET", wsBase+"/jobs/train", nil, model.RoleOwner, 200, &job)
	if job.Properties.NodeHours != 2.5 || job.Properties.Cost != 0.07 { // 2.5h × 0.0292 = 0.073
		t.Errorf("job = %v node-hours, $%v; want 2.5, $0.07", job.Properties.NodeHours, job.Properties.Cost)
	}
	var rep api.CostReport
	h.mustDo("GET", wsBase+"/costs?from=2026-03-01T10:00:00Z&to=2026-03-01T13:00:00Z", nil, model.RoleOwner, 200, &rep)
	want := api.CostReport{Currency: "USD", From: "2026-03-01T10:00:00.0000000Z", To: "2026-03-01T13:00:00.0000000Z",
		Total:    model.Cents(3*0.146 + 1.5*0.0292 + 1*0.0292), // 0.438 + 0.0438 + 0.0292 = 0.511
		Computes: []api.ComputeCostLine{{Name: "ded", NodeHours: 3, Cost: 0.44}, {Name: "spot", NodeHours: 2.5, Cost: 0.07}},
		Jobs:     []api.JobCostLine{{Name: "train", Compute: "spot", NodeHours: 1.5, Cost: 0.04}}, // 1h on s1 + 0.5h on s2
	}
	if diff := cmp.Diff(want, rep); diff != "" {
		t.Errorf("cost report (-want +got):\n%s", diff)
	}
	if status, _, _ := h.do("GET", wsBase+"/costs?from=nope", nil, model.RoleOwner); status != 400 {
		t.Errorf("bad from: status %d, want 400", status)
	}
}

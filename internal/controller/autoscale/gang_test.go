package autoscale

import (
	"testing"

	"kumo/internal/model"
	"kumo/internal/provider/fake"
)

// TestScaleUpCountsGangNodes scales a cluster for the nodes its jobs need,
// not the number of jobs: one queued gang job of 3 nodes and one single
// job make 4 nodes.
func TestScaleUpCountsGangNodes(t *testing.T) {
	e := newEnv(t, fake.Config{})
	c := e.compute("cpu", model.ScaleSettings{MaxNodes: 5})
	js := e.jobs(c, 2)
	gang := js[0]
	gang.InstanceCount = 3
	if err := e.st.JobUpdate(t.Context(), gang, model.JobQueued, nil, ""); err != nil {
		t.Fatal(err)
	}
	e.reconcile(c)
	if got := len(e.nodes(c)); got != 4 {
		t.Errorf("%d nodes for a 3-node gang job and a 1-node job, want 4", got)
	}
	if ev := e.events(c); len(ev) == 0 || ev[0] != "ScaleUp: 0 → 4 nodes: 4 nodes for waiting jobs" {
		t.Errorf("events = %q, want a scale-up for 4 nodes", ev)
	}
}

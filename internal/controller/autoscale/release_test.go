package autoscale

import (
	"testing"

	"kumo/internal/model"
	"kumo/internal/provider/fake"
)

func TestRelease(t *testing.T) {
	e := newEnv(t, fake.Config{})
	c := e.compute("cpu", model.ScaleSettings{MinNodes: 3, MaxNodes: 3})
	other := e.compute("other", model.ScaleSettings{MinNodes: 1, MaxNodes: 1})
	e.reconcile(c)
	e.reconcile(other)
	nodes := e.nodes(c)
	e.register(nodes[0], nodes[1]) // nodes[2] is still preparing
	jobs := e.jobs(c, 2)
	running, _ := e.dispatch(jobs[0], nodes[0])
	queued := jobs[1]

	prev := c.ETag
	c.State, c.ETag = model.StateDeleting, "etag-deleting"
	if err := e.st.ComputeUpdate(t.Context(), c, prev, nil); err != nil {
		t.Fatal(err)
	}
	e.reconcile(c) // a Deleting compute is left to Release
	if got := len(e.nodes(c)); got != 3 {
		t.Fatalf("Reconcile touched a deleting compute: %d nodes left", got)
	}
	done, err := e.a.Release(t.Context(), c)
	if err != nil || !done {
		t.Fatalf("Release = %v, %v; want done", done, err)
	}
	if got := e.nodes(c); len(got) != 0 {
		t.Errorf("nodes left: %+v", got)
	}
	left := e.instances()
	if want := nodeIDs(e.nodes(other)); len(left) != 1 || left[0] != want[0] {
		t.Errorf("instances = %q, want only the other cluster's %q", left, want)
	}
	for _, tt := range []struct {
		id   string
		want model.JobStatus
	}{{running.ID, model.JobFailed}, {queued.ID, model.JobCanceled}} {
		j := e.job(tt.id)
		if j.Status != tt.want || j.Error == nil || j.Error.Message != "compute deleted" || j.EndedAt.IsZero() {
			t.Errorf("job %s = %s, error %+v; want %s with \"compute deleted\"", j.Name, j.Status, j.Error, tt.want)
		}
	}
	// Again: nothing left to do.
	if done, err := e.a.Release(t.Context(), c); err != nil || !done {
		t.Errorf("second Release = %v, %v; want done", done, err)
	}
}

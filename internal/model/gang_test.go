package model

import (
	"errors"
	"slices"
	"testing"
)

func TestAssignGang(t *testing.T) {
	const id = "ws/jobs/g"
	tests := []struct {
		name    string
		held    []string // Job.NodeIDs before
		nodes   []Node
		wantErr bool
	}{
		{"all idle", nil, []Node{{ID: "a", State: NodeIdle}, {ID: "b", State: NodeIdle}}, false},
		{"one held, one idle", []string{"", "b"}, []Node{{ID: "a", State: NodeIdle}, {ID: "b", State: NodeIdle, JobID: id}}, false},
		{"held still running its old attempt", []string{"", "b"}, []Node{{ID: "a", State: NodeIdle}, {ID: "b", State: NodeRunning, JobID: id}}, true},
		{"one busy", nil, []Node{{ID: "a", State: NodeIdle}, {ID: "b", State: NodeRunning, JobID: "other"}}, true},
		{"held in another rank", []string{"b", ""}, []Node{{ID: "a", State: NodeIdle}, {ID: "b", State: NodeIdle, JobID: id}}, true},
		{"too few", nil, []Node{{ID: "a", State: NodeIdle}}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			j := Job{ID: id, Name: "g", InstanceCount: 2, Status: JobQueued, NodeIDs: tt.held}
			ptrs := make([]*Node, len(tt.nodes))
			for i := range tt.nodes {
				ptrs[i] = &tt.nodes[i]
			}
			err := j.AssignGang(ptrs, t0)
			if tt.wantErr {
				if !errors.Is(err, ErrTransition) || j.Status != JobQueued {
					t.Errorf("err = %v, status %s; want ErrTransition, still queued", err, j.Status)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if j.Status != JobPreparing || !slices.Equal(j.NodeIDs, []string{"a", "b"}) || j.NodeID != "a" || j.Attempts != 1 {
				t.Errorf("job %s on %q (rank 0 %q), attempt %d; want Preparing on [a b]", j.Status, j.NodeIDs, j.NodeID, j.Attempts)
			}
			for _, n := range tt.nodes {
				if n.State != NodeRunning || n.JobID != id {
					t.Errorf("node %s = %s with %q, want running the job", n.ID, n.State, n.JobID)
				}
			}
		})
	}
}

func TestProcessesPerNode(t *testing.T) {
	tests := []struct {
		d    *Distribution
		n    int
		want int
	}{
		{nil, 2, 1},
		{&Distribution{Type: DistributionPyTorch}, 2, 1},
		{&Distribution{Type: DistributionPyTorch, ProcessCountPerInstance: 4}, 2, 4},
		{&Distribution{Type: DistributionTensorFlow, WorkerCount: 4, ParameterServerCount: 2}, 3, 2},
		{&Distribution{Type: DistributionTensorFlow}, 3, 1},
	}
	for _, tt := range tests {
		if got := tt.d.ProcessesPerNode(tt.n); got != tt.want {
			t.Errorf("%v.ProcessesPerNode(%d) = %d, want %d", tt.d, tt.n, got, tt.want)
		}
	}
}

func TestLoseNodeKeepsSurvivors(t *testing.T) {
	j := Job{ID: "g", InstanceCount: 3, Status: JobQueued}
	nodes := []*Node{{ID: "a", State: NodeIdle}, {ID: "b", State: NodeIdle}, {ID: "c", State: NodeIdle}}
	if err := j.AssignGang(nodes, t0); err != nil {
		t.Fatal(err)
	}
	if what := j.LoseNode("b", ReasonPreempted, "node b: evicted", t0); what != "requeued" {
		t.Fatalf("LoseNode = %s, want requeued", what)
	}
	if !slices.Equal(j.NodeIDs, []string{"a", "", "c"}) || !j.Holds("a") || j.Holds("b") || len(j.Held()) != 2 {
		t.Errorf("after losing b: nodes %q; want [a \"\" c], a and c held", j.NodeIDs)
	}
	// A user failure frees them all.
	j2 := Job{ID: "h", InstanceCount: 2, Status: JobQueued, MaxRetries: 1}
	if err := j2.AssignGang([]*Node{{ID: "a", State: NodeIdle}, {ID: "b", State: NodeIdle}}, t0); err != nil {
		t.Fatal(err)
	}
	one := 1
	j2.Finish(&one, "exited", "", t0)
	if j2.Status != JobQueued || j2.NodeIDs != nil {
		t.Errorf("after a user failure: %s on %q, want queued holding nothing", j2.Status, j2.NodeIDs)
	}
}

package hub

import (
	"slices"
	"testing"

	"kumo/internal/agentproto"
	"kumo/internal/model"
)

// gangEnv makes a 3-node gang job running on n0, n1, n2, each connected.
func gangEnv(t *testing.T) (*env, model.Job, []*agent) {
	e := newEnv(t)
	ids := []string{"n0", "n1", "n2"}
	j := e.job(t, "ddp", "n0", model.JobRunning, func(j *model.Job) {
		j.InstanceCount, j.NodeIDs = 3, ids
		j.History = []model.Attempt{{Number: 1, NodeID: "n0", NodeIDs: ids, StartedAt: t0}}
	})
	var agents []*agent
	for _, id := range ids {
		e.node(t, id, model.NodeRunning, j.ID)
		a, _ := e.connect(t, id, agentproto.Message{Jobs: []agentproto.JobReport{{RunID: j.RunID, State: agentproto.JobRunning}}})
		agents = append(agents, a)
	}
	return e, j, agents
}

func done(a *agent, runID string, code int, reason string) {
	a.send(agentproto.Message{Type: agentproto.TypeDone, RunID: runID, ExitCode: &code, Reason: reason})
	a.barrier()
}

// A gang completes when its last rank exits 0; each rank's node is freed
// as it ends.
func TestGangCompletesWithLastRank(t *testing.T) {
	e, j, agents := gangEnv(t)
	done(agents[1], j.RunID, 0, "exited")
	done(agents[0], j.RunID, 0, "exited")
	if got := e.getJob(t, j.RunID); got.Status != model.JobRunning {
		t.Fatalf("job %s with one rank still running, want Running", got.Status)
	}
	if n := e.getNode(t, "n1"); n.State != model.NodeIdle || n.JobID != "" {
		t.Errorf("n1 = %s with %q after its rank ended, want idle and free", n.State, n.JobID)
	}
	done(agents[2], j.RunID, 0, "exited")
	if got := e.getJob(t, j.RunID); got.Status != model.JobCompleted {
		t.Errorf("job %s after every rank exited 0, want Completed", got.Status)
	}
}

// One failing rank fails the attempt; the other ranks' nodes are freed
// when they report their (canceled) end.
func TestGangFailsWithOneRank(t *testing.T) {
	e, j, agents := gangEnv(t)
	done(agents[2], j.RunID, 4, "exited")
	got := e.getJob(t, j.RunID)
	if got.Status != model.JobFailed || got.Error == nil || got.Error.Code != "UserError" {
		t.Fatalf("job %s (%+v) after rank 2 exited 4, want Failed with UserError", got.Status, got.Error)
	}
	if n := e.getNode(t, "n0"); n.JobID != j.ID {
		t.Fatalf("n0 = %s with %q before it reported, want still holding the job", n.State, n.JobID)
	}
	done(agents[0], j.RunID, 143, "canceled")
	if n := e.getNode(t, "n0"); n.State != model.NodeIdle || n.JobID != "" {
		t.Errorf("n0 = %s with %q after its canceled end, want idle and free", n.State, n.JobID)
	}
	if got := e.getJob(t, j.RunID); got.Status != model.JobFailed {
		t.Errorf("a stale node's end changed the job to %s", got.Status)
	}
}

// A preempted rank requeues the gang, which keeps its other nodes: each
// stays the job's, idle once it reports its old attempt's end.
func TestGangPreemptedKeepsSurvivors(t *testing.T) {
	e, j, agents := gangEnv(t)
	done(agents[1], j.RunID, 143, agentproto.ReasonPreempted)
	got := e.getJob(t, j.RunID)
	if got.Status != model.JobQueued || !slices.Equal(got.NodeIDs, []string{"n0", "", "n2"}) {
		t.Fatalf("job %s on %q after n1 was preempted, want Queued keeping [n0 \"\" n2]", got.Status, got.NodeIDs)
	}
	if n := e.getNode(t, "n1"); n.State != model.NodePreempted {
		t.Errorf("n1 = %s, want preempted", n.State)
	}
	done(agents[0], j.RunID, 143, "canceled")
	if n := e.getNode(t, "n0"); n.State != model.NodeIdle || n.JobID != j.ID {
		t.Errorf("n0 = %s with %q after its old attempt ended, want idle and still the job's", n.State, n.JobID)
	}
	if got := e.getJob(t, j.RunID); got.Status != model.JobQueued || got.Attempts != 1 {
		t.Errorf("job %s, attempt %d after a survivor's end, want still Queued after attempt 1", got.Status, got.Attempts)
	}
}

// RunMessage gives a gang's nodes their layout: AML's MASTER_PORT 6105
// when the nodes are on different hosts, a port of the job's own when
// they share one.
func TestGangRunMessagePort(t *testing.T) {
	for _, tt := range []struct {
		name  string
		addrs []string
		want  func(int) bool
	}{
		{"different hosts", []string{"10.0.0.1", "10.0.0.2", "10.0.0.3"}, func(p int) bool { return p == MasterPort }},
		{"one host", []string{"127.0.0.1", "127.0.0.1", "127.0.0.1"}, func(p int) bool { return p >= 20000 && p < 30000 }},
	} {
		t.Run(tt.name, func(t *testing.T) {
			e, j, _ := gangEnv(t)
			for i, id := range j.NodeIDs {
				n := e.getNode(t, id)
				n.Address = tt.addrs[i]
				if err := e.st.NodeUpdate(t.Context(), n, n.State); err != nil {
					t.Fatal(err)
				}
			}
			j.Distribution = &model.Distribution{Type: model.DistributionPyTorch, ProcessCountPerInstance: 2}
			g := e.hub.RunMessage(j).Job.Gang
			if g == nil || !slices.Equal(g.NodeIDs, j.NodeIDs) || !slices.Equal(g.Addresses, tt.addrs) || g.ProcessesPerNode != 2 || !tt.want(g.MasterPort) {
				t.Errorf("gang spec = %+v", g)
			}
		})
	}
}

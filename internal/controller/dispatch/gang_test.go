package dispatch

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"kumo/internal/agentproto"
	"kumo/internal/model"
	"kumo/internal/store"
)

// TestReconcileGangAllOrNone gives a gang job its nodes only when all of
// them are idle at once, and a smaller job behind it waits its turn.
func TestReconcileGangAllOrNone(t *testing.T) {
	e := newEnv(t, "n1", "n2", "n3")
	e.node(t, "n1", model.NodeIdle, t0, "")
	e.node(t, "n2", model.NodeIdle, t0.Add(time.Second), "")
	e.node(t, "n3", model.NodeRunning, t0, "other")
	e.job(t, "gang", cpuID, 1, func(j *model.Job) {
		j.InstanceCount = 3
		j.Distribution = &model.Distribution{Type: model.DistributionPyTorch, ProcessCountPerInstance: 2}
	})
	e.job(t, "small", cpuID, 2, nil)
	if err := e.d.Reconcile(t.Context(), cpuID); err != nil {
		t.Fatal(err)
	}
	jobs, nodes := e.assignments(t, cpuID)
	if jobs["gang"] != "" || jobs["small"] != "" || nodes["n1"] != "" || nodes["n2"] != "" {
		t.Fatalf("with 2 of 3 nodes idle: jobs %v, nodes %v; want nothing assigned", jobs, nodes)
	}
	// n3 frees up: the gang gets all three in one go.
	n3, err := e.st.NodeGet(t.Context(), "n3")
	if err != nil {
		t.Fatal(err)
	}
	n3.Free("other", t0.Add(2*time.Second))
	n3.JobID, n3.State = "", model.NodeIdle
	if err := e.st.NodeUpdate(t.Context(), n3, model.NodeRunning); err != nil {
		t.Fatal(err)
	}
	if err := e.d.Reconcile(t.Context(), cpuID); err != nil {
		t.Fatal(err)
	}
	j, err := e.st.JobGet(t.Context(), wsID+"/jobs/gang")
	if err != nil {
		t.Fatal(err)
	}
	if j.Status != model.JobPreparing || len(j.NodeIDs) != 3 || j.NodeID != j.NodeIDs[0] {
		t.Fatalf("gang: %s on %q (rank 0 %q); want Preparing on 3 nodes", j.Status, j.NodeIDs, j.NodeID)
	}
	if got := j.History[len(j.History)-1].NodeIDs; !slices.Equal(got, j.NodeIDs) {
		t.Errorf("attempt nodes = %q, want %q", got, j.NodeIDs)
	}
	_, nodes = e.assignments(t, cpuID)
	for _, id := range []string{"n1", "n2", "n3"} {
		if nodes[id] != "gang" {
			t.Errorf("node %s runs %q, want gang", id, nodes[id])
		}
	}
	runs := map[string]bool{}
	for _, m := range e.sender.messages() {
		if m.RunID == "run-gang" {
			runs[m.Node] = true
		}
	}
	if len(runs) != 3 {
		t.Errorf("Run sent to %v, want every node of the gang", runs)
	}
}

// TestReconcileGangKeepsHeldNodes starts a gang's retry with the node it
// kept from its last attempt and one new idle node, the kept node in its
// old rank, once the kept node has stopped the old attempt: until then it
// waits, and the kept node is told to stop.
func TestReconcileGangKeepsHeldNodes(t *testing.T) {
	e := newEnv(t, "n1", "n2", "n3")
	gangID := wsID + "/jobs/gang"
	e.node(t, "n1", model.NodeRunning, t0, gangID) // rank 1 survived, still stopping attempt 1
	e.node(t, "n3", model.NodeIdle, t0, "")
	e.job(t, "gang", cpuID, 1, func(j *model.Job) {
		j.InstanceCount, j.NodeIDs, j.Attempts = 2, []string{"", "n1"}, 1
	})
	if err := e.d.Reconcile(t.Context(), cpuID); err != nil {
		t.Fatal(err)
	}
	if j, _ := e.st.JobGet(t.Context(), gangID); j.Status != model.JobQueued {
		t.Fatalf("gang %s while its kept node still runs its old attempt, want Queued", j.Status)
	}
	if m := e.sender.messages(); len(m) != 1 || m[0] != (sent{Node: "n1", Type: agentproto.TypeCancel, RunID: "run-gang"}) {
		t.Errorf("sent %+v, want a cancel of the old attempt on n1", m)
	}
	// The old attempt ended: n1 is idle, still the job's.
	n1, err := e.st.NodeGet(t.Context(), "n1")
	if err != nil {
		t.Fatal(err)
	}
	n1.State = model.NodeIdle
	if err := e.st.NodeUpdate(t.Context(), n1, model.NodeRunning); err != nil {
		t.Fatal(err)
	}
	if err := e.d.Reconcile(t.Context(), cpuID); err != nil {
		t.Fatal(err)
	}
	j, err := e.st.JobGet(t.Context(), gangID)
	if err != nil {
		t.Fatal(err)
	}
	if j.Status != model.JobPreparing || !slices.Equal(j.NodeIDs, []string{"n3", "n1"}) || j.Attempts != 2 {
		t.Errorf("gang: %s on %q, attempt %d; want Preparing on [n3 n1], attempt 2", j.Status, j.NodeIDs, j.Attempts)
	}
}

// TestReconcileFreesNodesKeptForCanceledJob frees an idle node kept for a
// gang's retry once the job no longer waits for it.
func TestReconcileFreesNodesKeptForCanceledJob(t *testing.T) {
	e := newEnv(t, "n1")
	e.node(t, "n1", model.NodeIdle, t0, wsID+"/jobs/gang")
	e.job(t, "gang", cpuID, 1, func(j *model.Job) {
		j.InstanceCount, j.NodeIDs, j.Status = 2, []string{"", "n1"}, model.JobCanceled
	})
	if err := e.d.Reconcile(t.Context(), cpuID); err != nil {
		t.Fatal(err)
	}
	if n, err := e.st.NodeGet(t.Context(), "n1"); err != nil || n.JobID != "" || n.State != model.NodeIdle {
		t.Errorf("n1 = %s with %q (%v), want idle and free", n.State, n.JobID, err)
	}
}

// TestGangNeverDeadlocks is a property test: on a cluster of max nodes,
// gang and single jobs arrive in random orders and sizes, and running jobs
// end in random orders. Whatever the order, no node is ever held by two
// jobs, a job holds all its nodes or none, jobs start in arrival order,
// and every job runs in the end (two gangs that together need more than
// the cluster never wait on each other).
func TestGangNeverDeadlocks(t *testing.T) {
	const maxNodes = 4
	for seed := range uint64(40) {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(seed, 7))
			ids := make([]string, maxNodes)
			for i := range ids {
				ids[i] = fmt.Sprintf("n%d", i)
			}
			e := newEnv(t, ids...)
			for _, id := range ids {
				e.node(t, id, model.NodeIdle, t0, "")
			}
			nJobs := 6 + rng.IntN(8)
			sizes := make([]int, nJobs)
			for i := range sizes {
				sizes[i] = 1 + rng.IntN(maxNodes) // from one node to the whole cluster
			}
			submitted, done := 0, 0
			started := map[string]bool{}
			for step := 0; done < nJobs; step++ {
				if step > 50*nJobs {
					t.Fatalf("no progress: %d of %d jobs done, sizes %v", done, nJobs, sizes)
				}
				switch k := rng.IntN(3); {
				case k == 0 && submitted < nJobs:
					e.job(t, fmt.Sprintf("j%02d", submitted), cpuID, int64(submitted+1), func(j *model.Job) { j.InstanceCount = sizes[submitted] })
					submitted++
				case k == 1:
					if err := e.d.Reconcile(t.Context(), cpuID); err != nil {
						t.Fatal(err)
					}
				default:
					// End a random running job; with nothing running and
					// every job submitted, reconcile must start one.
					running, err := e.st.JobListByCompute(t.Context(), cpuID, model.JobPreparing)
					if err != nil {
						t.Fatal(err)
					}
					if len(running) == 0 {
						if submitted == nJobs {
							if err := e.d.Reconcile(t.Context(), cpuID); err != nil {
								t.Fatal(err)
							}
							running, err = e.st.JobListByCompute(t.Context(), cpuID, model.JobPreparing)
							if err != nil {
								t.Fatal(err)
							}
							if len(running) == 0 {
								t.Fatalf("deadlock: every node idle, %d jobs queued, none starts (sizes %v)", nJobs-done, sizes)
							}
						}
						break
					}
					e.complete(t, running[rng.IntN(len(running))])
					done++
				}
				checkGangInvariants(t, e, started)
			}
		})
	}
}

// complete ends a running job with exit code 0 and frees all its nodes
// in one store call.
func (e *env) complete(t *testing.T, j model.Job) {
	t.Helper()
	from := j.Status
	zero := 0
	j.Finish(&zero, "exited", "", t0.Add(time.Hour))
	held := j.NodeIDs
	if len(held) == 0 {
		held = []string{j.NodeID}
	}
	var changes []store.NodeChange
	for _, id := range held {
		n, err := e.st.NodeGet(t.Context(), id)
		if err != nil {
			t.Fatal(err)
		}
		if !n.Free(j.ID, t0.Add(time.Hour)) {
			t.Fatalf("node %s does not run %s", id, j.Name)
		}
		changes = append(changes, store.NodeChange{Node: n, From: model.NodeRunning})
	}
	if err := e.st.JobUpdateNodes(t.Context(), j, from, changes); err != nil {
		t.Fatal(err)
	}
}

// checkGangInvariants fails the test if a node is held by two jobs, a job
// holds some but not all of its nodes, or a job started before an earlier
// one. started records the jobs seen started so far.
func checkGangInvariants(t *testing.T, e *env, started map[string]bool) {
	t.Helper()
	js, err := e.st.JobListByCompute(t.Context(), cpuID, model.JobQueued, model.JobPreparing, model.JobCompleted)
	if err != nil {
		t.Fatal(err)
	}
	ns, err := e.st.NodeListByCompute(t.Context(), cpuID)
	if err != nil {
		t.Fatal(err)
	}
	holds := map[string]int{}
	for _, n := range ns {
		if n.JobID != "" {
			holds[n.JobID]++
		}
	}
	queuedBefore := false
	for _, j := range js { // in arrival order
		want := 0
		if j.Status == model.JobPreparing {
			want = j.InstanceCount
		}
		if holds[j.ID] != want {
			t.Fatalf("job %s (%s, %d nodes) holds %d nodes", j.Name, j.Status, j.InstanceCount, holds[j.ID])
		}
		if j.Status == model.JobQueued {
			queuedBefore = true
			continue
		}
		if !started[j.Name] && queuedBefore {
			t.Fatalf("job %s started ahead of an earlier queued job", j.Name)
		}
		started[j.Name] = true
	}
}

// TestLoopPlacesOnNodeFreedByCheck: the running loop's check, beside the
// placements, frees an idle node kept for a canceled gang, and the job
// queued behind it gets that node without another Notify.
func TestLoopPlacesOnNodeFreedByCheck(t *testing.T) {
	e := newEnv(t, "n1")
	e.node(t, "n1", model.NodeIdle, t0, wsID+"/jobs/gang")
	e.job(t, "gang", cpuID, 1, func(j *model.Job) {
		j.InstanceCount, j.NodeIDs, j.Status = 2, []string{"", "n1"}, model.JobCanceled
	})
	e.job(t, "next", cpuID, 2, nil)
	e.d.Start(t.Context())
	defer e.d.Stop()
	eventually(t, "the queued job to be sent to n1", func() bool { return len(e.sender.messages()) == 1 })
	want := []sent{{Node: "n1", Type: agentproto.TypeRun, RunID: "run-next"}}
	if diff := cmp.Diff(want, e.sender.messages()); diff != "" {
		t.Errorf("sent (-want +got):\n%s", diff)
	}
	jobs, nodes := e.assignments(t, cpuID)
	if jobs["next"] != "n1" || nodes["n1"] != "next" {
		t.Errorf("jobs %v, nodes %v; want next on n1", jobs, nodes)
	}
}

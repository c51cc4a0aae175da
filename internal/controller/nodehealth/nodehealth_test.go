package nodehealth

import (
	"io"
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"go.uber.org/goleak"

	"kumo/internal/agentproto"
	"kumo/internal/model"
	"kumo/internal/provider"
	"kumo/internal/provider/fake"
	"kumo/internal/store"
	"kumo/internal/store/sqlite"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

type sent struct{ msgs []agentproto.Message }

func (s *sent) Send(nodeID string, m agentproto.Message) error {
	s.msgs = append(s.msgs, m)
	return nil
}

type seen map[string]time.Time

const ws = "/subscriptions/s/resourceGroups/rg/providers/Microsoft.MachineLearningServices/workspaces/ws"

// env is a checker over a real SQLite store and the fake provider, with
// one cluster of each priority, each with one node running a job.
type env struct {
	t     *testing.T
	st    store.Store
	prov  *fake.Fake
	now   time.Time
	sent  *sent
	c     *Checker
	nodes map[model.Priority]model.Node
	jobs  map[model.Priority]model.Job
}

func newEnv(t *testing.T) *env {
	st, err := sqlite.Open(t.Context(), filepath.Join(t.TempDir(), "kumo.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	e := &env{t: t, st: st, now: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC), sent: &sent{},
		nodes: map[model.Priority]model.Node{}, jobs: map[model.Priority]model.Job{}}
	e.prov = fake.New(fake.Config{Now: func() time.Time { return e.now }})
	if err := st.WorkspaceCreate(t.Context(), model.Workspace{ID: ws, Subscription: "s", ResourceGroup: "rg", Name: "ws", Location: "local"}); err != nil {
		t.Fatal(err)
	}
	live := seen{}
	for i, prio := range []model.Priority{model.PriorityLowPriority, model.PriorityDedicated} {
		name := []string{"spot", "ded"}[i]
		c := model.Compute{ID: ws + "/computes/" + name, WorkspaceID: ws, Name: name, Location: "local", VMSize: "Standard_D2_v2",
			Priority: prio, State: model.StateSucceeded, ETag: "e"}
		if err := st.ComputeCreate(t.Context(), c, model.Operation{ID: "op" + name, ComputeID: c.ID, Kind: model.OpCreate, Status: model.OpSucceeded}); err != nil {
			t.Fatal(err)
		}
		n := model.Node{ID: name + "-1", ComputeID: c.ID, State: model.NodeIdle, CreatedAt: e.now, StateSince: e.now}
		if err := st.NodeCreate(t.Context(), n); err != nil {
			t.Fatal(err)
		}
		if err := e.prov.Create(t.Context(), []provider.Instance{{ID: n.ID, Compute: c.ID, Preemptible: prio == model.PriorityLowPriority}}); err != nil {
			t.Fatal(err)
		}
		j := model.Job{ID: ws + "/jobs/" + name, WorkspaceID: ws, Name: name, RunID: "run-" + name, ComputeID: c.ID, Command: "x",
			InstanceCount: 1, Status: model.JobQueued, Seq: int64(i), CreatedAt: e.now}
		if err := st.JobCreate(t.Context(), j); err != nil {
			t.Fatal(err)
		}
		if err := j.Assign(&n, e.now); err != nil {
			t.Fatal(err)
		}
		if err := st.JobUpdate(t.Context(), j, model.JobQueued, &n, model.NodeIdle); err != nil {
			t.Fatal(err)
		}
		e.nodes[prio], e.jobs[prio] = n, j
		live[n.ID] = e.now
	}
	e.c = New(Config{Store: st, Providers: map[string]provider.Provider{"local": e.prov},
		Regions:  map[string]model.Region{"local": model.NewRegion("local", "fake", model.Host{VCPUs: 64, MemoryGB: 256})},
		Liveness: seenAlways{live, &e.now}, Sender: e.sent, ReportGrace: 10 * time.Second,
		Now: func() time.Time { return e.now }, Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
	return e
}

// seenAlways reports every known node as heard from just now.
type seenAlways struct {
	s   seen
	now *time.Time
}

func (s seenAlways) LastSeen(id string) (time.Time, bool) {
	_, ok := s.s[id]
	return *s.now, ok
}

func (e *env) check() {
	e.t.Helper()
	if err := e.c.Check(e.t.Context()); err != nil {
		e.t.Fatal(err)
	}
}

func (e *env) node(id string) model.Node {
	n, err := e.st.NodeGet(e.t.Context(), id)
	if err != nil {
		e.t.Fatal(err)
	}
	return n
}

func (e *env) job(id string) model.Job {
	j, err := e.st.JobGet(e.t.Context(), id)
	if err != nil {
		e.t.Fatal(err)
	}
	return j
}

// A preemption notice gives a LowPriority node's job notice (Evict with
// the deadline, on each pass) until the deadline and the report grace pass;
// then the node is preempted and the job requeued. The same notice on a
// Dedicated node never preempts it: it is judged as a stopped instance.
func TestPreemptionNotice(t *testing.T) {
	e := newEnv(t)
	spot, ded := e.nodes[model.PriorityLowPriority], e.nodes[model.PriorityDedicated]
	e.prov.Preempt(spot.ID)
	e.check()
	want := []agentproto.Message{{Type: agentproto.TypeEvict, RunID: "run-spot", Deadline: e.now}}
	if diff := cmp.Diff(want, e.sent.msgs); diff != "" {
		t.Fatalf("sent (-want +got):\n%s", diff)
	}
	if n := e.node(spot.ID); n.State != model.NodeRunning {
		t.Fatalf("spot node during the notice = %s, want running", n.State)
	}
	e.now = e.now.Add(11 * time.Second)
	e.check()
	if n := e.node(spot.ID); n.State != model.NodePreempted || n.JobID != "" {
		t.Errorf("spot node after the grace = %s with job %q, want preempted without a job", n.State, n.JobID)
	}
	j := e.job(e.jobs[model.PriorityLowPriority].ID)
	if j.Status != model.JobQueued || len(j.History) != 1 || j.History[0].Class != model.ClassPreemption {
		t.Errorf("spot job = %s, history %+v; want Queued after a preemption", j.Status, j.History)
	}

	e.sent.msgs = nil
	e.prov.Preempt(ded.ID)
	e.check()
	if len(e.sent.msgs) != 0 {
		t.Errorf("sent %+v for a Dedicated node, want nothing", e.sent.msgs)
	}
	n := e.node(ded.ID)
	if n.State != model.NodeUnusable {
		t.Errorf("dedicated node = %s, want unusable (its instance stopped), never preempted", n.State)
	}
	if j := e.job(e.jobs[model.PriorityDedicated].ID); j.History[0].Class != model.ClassInfrastructure {
		t.Errorf("dedicated job's attempt class = %q, want infrastructure", j.History[0].Class)
	}
}

func TestStopWithoutStart(t *testing.T) {
	New(Config{}).Stop()
}

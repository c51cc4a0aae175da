package autoscale

import (
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"kumo/internal/controller/nodehealth"
	"kumo/internal/model"
	"kumo/internal/provider"
	"kumo/internal/provider/fake"
	"kumo/internal/store"
	"kumo/internal/store/sqlite"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

var t0 = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

const (
	wsID    = "/subscriptions/sub/resourceGroups/rg/providers/Microsoft.MachineLearningServices/workspaces/ws"
	vmSize  = "Standard_DS2_v2" // 2 vCPUs, 7 GiB, standardDSv2Family
	agentCA = "/etc/kumo/ca.pem"
)

// clock is a controllable Config.Now.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = t
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// liveness is a fake agent hub's Liveness.
type liveness struct {
	mu   sync.Mutex
	seen map[string]time.Time
	now  func() time.Time // when set, every agent is seen now
}

func (l *liveness) LastSeen(id string) (time.Time, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.now != nil {
		return l.now(), true
	}
	t, ok := l.seen[id]
	return t, ok
}

func (l *liveness) Seen(id string, at time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.seen[id] = at
}

// env is one autoscaler over a fresh SQLite store with one workspace, a
// fake provider in region "local", a controllable clock and a fake
// Liveness.
type env struct {
	t     *testing.T
	st    store.Store
	clock *clock
	live  *liveness
	prov  *fake.Fake
	a     *Autoscaler
	h     *nodehealth.Checker // the health loop the autoscaler works with
	seq   int64
}

type envOpt func(*Config)

func newEnv(t *testing.T, fc fake.Config, opts ...envOpt) *env {
	t.Helper()
	st, err := sqlite.Open(t.Context(), filepath.Join(t.TempDir(), "kumo.db"))
	if err != nil {
		t.Fatalf("sqlite.Open: %v", err)
	}
	t.Cleanup(func() {
		if err := st.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	ws := model.Workspace{ID: wsID, Subscription: "sub", ResourceGroup: "rg", Name: "ws", Location: "local", CreatedAt: t0, ModifiedAt: t0}
	if err := st.WorkspaceCreate(t.Context(), ws); err != nil {
		t.Fatalf("WorkspaceCreate: %v", err)
	}
	e := &env{t: t, st: st, clock: &clock{t: t0}, live: &liveness{seen: map[string]time.Time{}}}
	if fc.Now == nil {
		fc.Now = e.clock.Now
	}
	e.prov = fake.New(fc)
	cfg := Config{
		Store:       st,
		Providers:   map[string]provider.Provider{"local": e.prov},
		Regions:     map[string]model.Region{"local": model.NewRegion("local", "fake", model.Host{VCPUs: 64, MemoryGB: 256})},
		AgentURL:    "https://cp.example:8443",
		AgentCAFile: agentCA,
		Resync:      time.Hour,
		Now:         e.clock.Now,
		Log:         slog.New(slog.NewTextHandler(io.Discard, nil)),
	}
	for _, o := range opts {
		o(&cfg)
	}
	e.a = New(cfg)
	e.h = nodehealth.New(nodehealth.Config{
		Store: st, Providers: cfg.Providers, Regions: cfg.Regions, Liveness: e.live, Now: cfg.Now, Log: cfg.Log, Resync: cfg.Resync,
		Changed: func(id string) {
			e.a.Notify(id)
			if cfg.Changed != nil {
				cfg.Changed(id)
			}
		},
	})
	return e
}

// compute stores a Succeeded cluster named name.
func (e *env) compute(name string, scale model.ScaleSettings) model.Compute {
	e.t.Helper()
	c := model.Compute{
		ID: wsID + "/computes/" + name, WorkspaceID: wsID, Name: name, Location: "local",
		VMSize: vmSize, Priority: model.PriorityDedicated, Scale: scale,
		RemoteLogin: "Disabled", State: model.StateSucceeded, ETag: "etag-0",
		CreatedAt: t0, ModifiedAt: t0,
	}
	op := model.Operation{ID: "op-" + name, Location: "local", Kind: model.OpCreate, ComputeID: c.ID, Status: model.OpSucceeded, StartedAt: t0, EndedAt: t0}
	c.OperationID = op.ID
	if err := e.st.ComputeCreate(e.t.Context(), c, op); err != nil {
		e.t.Fatalf("ComputeCreate(%s): %v", name, err)
	}
	return c
}

// patch changes a compute's scale settings as a PATCH does.
func (e *env) patch(c model.Compute, scale model.ScaleSettings) model.Compute {
	e.t.Helper()
	prev := c.ETag
	c.Scale, c.ETag = scale, prev+"+"
	if err := e.st.ComputeUpdate(e.t.Context(), c, prev, nil); err != nil {
		e.t.Fatalf("ComputeUpdate: %v", err)
	}
	return c
}

// jobs queues n jobs on c.
func (e *env) jobs(c model.Compute, n int) []model.Job {
	e.t.Helper()
	var out []model.Job
	for range n {
		e.seq++
		name := fmt.Sprintf("job%d", e.seq)
		j := model.Job{
			ID: wsID + "/jobs/" + name, WorkspaceID: wsID, Name: name, RunID: "run-" + name, ComputeID: c.ID,
			Command: "true", InstanceCount: 1, Status: model.JobQueued, Seq: e.seq, CreatedAt: e.clock.Now(),
		}
		if err := e.st.JobCreate(e.t.Context(), j); err != nil {
			e.t.Fatalf("JobCreate: %v", err)
		}
		out = append(out, j)
	}
	return out
}

func (e *env) reconcile(c model.Compute) Result {
	e.t.Helper()
	res, err := e.a.Reconcile(e.t.Context(), c.ID)
	if err != nil {
		e.t.Fatalf("Reconcile: %v", err)
	}
	return res
}

func (e *env) checkHealth() {
	e.t.Helper()
	if err := e.h.Check(e.t.Context()); err != nil {
		e.t.Fatalf("Check: %v", err)
	}
}

func (e *env) nodes(c model.Compute) []model.Node {
	e.t.Helper()
	ns, err := e.st.NodeListByCompute(e.t.Context(), c.ID)
	if err != nil {
		e.t.Fatalf("NodeListByCompute: %v", err)
	}
	return ns
}

func (e *env) node(id string) model.Node {
	e.t.Helper()
	n, err := e.st.NodeGet(e.t.Context(), id)
	if err != nil {
		e.t.Fatalf("NodeGet(%s): %v", id, err)
	}
	return n
}

func (e *env) job(id string) model.Job {
	e.t.Helper()
	j, err := e.st.JobGet(e.t.Context(), id)
	if err != nil {
		e.t.Fatalf("JobGet(%s): %v", id, err)
	}
	return j
}

// states counts c's nodes by state.
func (e *env) states(c model.Compute) map[model.NodeState]int {
	e.t.Helper()
	out := map[model.NodeState]int{}
	for _, n := range e.nodes(c) {
		out[n.State]++
	}
	return out
}

func (e *env) status(c model.Compute) model.ComputeStatus {
	e.t.Helper()
	s, err := e.st.ComputeStatusGet(e.t.Context(), c.ID)
	if err != nil {
		e.t.Fatalf("ComputeStatusGet: %v", err)
	}
	return s
}

// events returns c's events as "Kind: message".
func (e *env) events(c model.Compute) []string {
	e.t.Helper()
	evs, err := e.st.EventList(e.t.Context(), c.ID, 0)
	if err != nil {
		e.t.Fatalf("EventList: %v", err)
	}
	var out []string
	for _, ev := range evs {
		out = append(out, ev.Kind+": "+ev.Message)
	}
	return out
}

// register does what the agent hub does when a preparing node's agent
// registers: the node becomes idle and its agent is seen now.
func (e *env) register(ns ...model.Node) {
	e.t.Helper()
	now := e.clock.Now()
	for _, n := range ns {
		n.State, n.StateSince = model.NodeIdle, now
		if err := e.st.NodeUpdate(e.t.Context(), n, model.NodePreparing); err != nil {
			e.t.Fatalf("register %s: %v", n.ID, err)
		}
		e.live.Seen(n.ID, now)
	}
}

// registerAll registers every preparing node of c and returns c's nodes.
func (e *env) registerAll(c model.Compute) []model.Node {
	e.t.Helper()
	for _, n := range e.nodes(c) {
		if n.State == model.NodePreparing {
			e.register(n)
		}
	}
	return e.nodes(c)
}

// dispatch does what the dispatcher does: j starts on the idle node n.
func (e *env) dispatch(j model.Job, n model.Node) (model.Job, model.Node) {
	e.t.Helper()
	j = e.job(j.ID)
	n = e.node(n.ID)
	now := e.clock.Now()
	from := j.Status
	if j.Status == model.JobNotStarted {
		j.Status = model.JobQueued // held out of the queue by a test
	}
	if err := j.Assign(&n, now); err != nil {
		e.t.Fatal(err)
	}
	j.Start(n.ID, now)
	if err := e.st.JobUpdate(e.t.Context(), j, from, &n, model.NodeIdle); err != nil {
		e.t.Fatalf("dispatch %s to %s: %v", j.Name, n.ID, err)
	}
	return j, n
}

// finish completes j and frees its node, as the hub does on exit.
func (e *env) finish(j model.Job) {
	e.t.Helper()
	j = e.job(j.ID)
	n := e.node(j.NodeID)
	now := e.clock.Now()
	from := j.Status
	zero := 0
	j.Status, j.ExitCode, j.EndedAt = model.JobCompleted, &zero, now
	n.State, n.JobID, n.StateSince = model.NodeIdle, "", now
	if err := e.st.JobUpdate(e.t.Context(), j, from, &n, model.NodeRunning); err != nil {
		e.t.Fatalf("finish %s: %v", j.Name, err)
	}
}

// instances returns the IDs the provider holds.
func (e *env) instances() []string {
	e.t.Helper()
	ins, err := e.prov.List(e.t.Context())
	if err != nil {
		e.t.Fatalf("List: %v", err)
	}
	var ids []string
	for _, in := range ins {
		ids = append(ids, in.ID)
	}
	return ids
}

func nodeIDs(ns []model.Node) []string {
	var ids []string
	for _, n := range ns {
		ids = append(ids, n.ID)
	}
	return ids
}

package autoscale

import (
	"io"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"kumo/internal/agentproto"
	"kumo/internal/controller/nodehealth"
	"kumo/internal/model"
	"kumo/internal/provider"
	"kumo/internal/provider/fake"
)

func TestHealth(t *testing.T) {
	tests := []struct {
		name     string
		fake     fake.Config
		register bool                       // the node's agent registers at once
		setup    func(e *env, n model.Node) // after registration, before the clock moves
		advance  time.Duration              // then the clock moves this much
		want     string                     // the node's reason, "" for still usable
	}{
		{name: "heartbeat fresh", register: true, advance: 29 * time.Second},
		{name: "heartbeat stopped", register: true, advance: 31 * time.Second,
			want: "agent stopped heartbeating 31s ago"},
		{name: "heartbeat kept up", register: true, advance: time.Hour,
			setup: func(e *env, n model.Node) { e.live.now = e.clock.Now }},
		{name: "never seen since the control plane started", register: true, advance: 30 * time.Second,
			setup: func(e *env, n model.Node) { delete(e.live.seen, n.ID) },
			want:  "agent not heard from since the control plane started 30s ago"},
		{name: "boot in time", advance: 119 * time.Second},
		{name: "boot timeout", advance: 2 * time.Minute, want: "agent did not register within 2m0s"},
		{name: "instance failed", fake: fake.Config{BootFailRate: 1}, register: true,
			want: "instance failed: injected failure"},
		{name: "instance stopped", register: true,
			setup: func(e *env, n model.Node) { e.prov.Preempt(n.ID) },
			want:  "instance stopped: preempted"},
		{name: "instance missing", register: true, advance: 11 * time.Second,
			setup: func(e *env, n model.Node) {
				e.live.now = e.clock.Now
				if err := e.prov.Delete(e.t.Context(), []string{n.ID}); err != nil {
					e.t.Fatal(err)
				}
			},
			want: "instance missing from the provider"},
		{name: "instance missing but just created", register: true, advance: time.Second,
			setup: func(e *env, n model.Node) {
				e.live.now = e.clock.Now
				if err := e.prov.Delete(e.t.Context(), []string{n.ID}); err != nil {
					e.t.Fatal(err)
				}
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, tt.fake)
			c := e.compute("cpu", model.ScaleSettings{MinNodes: 1, MaxNodes: 1})
			e.reconcile(c)
			n := e.nodes(c)[0]
			if tt.register {
				e.register(n)
			}
			if tt.setup != nil {
				tt.setup(e, n)
			}
			e.clock.Advance(tt.advance)
			e.checkHealth()
			got := e.node(n.ID)
			wantState := model.NodeIdle
			if !tt.register {
				wantState = model.NodePreparing
			}
			if tt.want != "" {
				wantState = model.NodeUnusable
			}
			if got.State != wantState || got.Reason != tt.want {
				t.Fatalf("node = %s %q, want %s %q", got.State, got.Reason, wantState, tt.want)
			}
			if tt.want == "" {
				return
			}
			if !got.StateSince.Equal(e.clock.Now()) {
				t.Errorf("StateSince = %v, want now", got.StateSince)
			}
			wantEvent := "NodeUnusable: node " + n.ID + " unusable: " + tt.want
			if evs := e.events(c); !slices.Contains(evs, wantEvent) {
				t.Errorf("events = %q, want one %q", evs, wantEvent)
			}
			// The next scaling pass removes the node and records why.
			e.reconcile(c)
			if ns := e.nodes(c); len(ns) != 0 {
				t.Errorf("nodes after the pass = %v, want none until the backoff ends", ns)
			}
			if ids := e.instances(); len(ids) != 0 {
				t.Errorf("provider still holds %q", ids)
			}
			wantErr := []model.Error{{Code: ErrorNodeUnusable, Message: "node " + n.ID + ": " + tt.want}}
			if diff := cmp.Diff(wantErr, e.status(c).Errors); diff != "" {
				t.Errorf("status errors (-want +got):\n%s", diff)
			}
		})
	}
}

// A node lost while running a job requeues the job once; the second loss
// fails it with the reason.
func TestLostNodeRequeuesJobOnce(t *testing.T) {
	var changed []string
	e := newEnv(t, fake.Config{}, func(c *Config) { c.Changed = func(id string) { changed = append(changed, id) } })
	c := e.compute("cpu", model.ScaleSettings{MaxNodes: 2, IdleTime: time.Hour})
	j := e.jobs(c, 1)[0]

	lose := func(attempt int) (model.Node, string) {
		t.Helper()
		e.reconcile(c)
		ns := e.nodes(c)
		if len(ns) != 1 || ns[0].State != model.NodePreparing {
			t.Fatalf("attempt %d: nodes = %+v, want one preparing", attempt, ns)
		}
		e.register(ns[0])
		_, n := e.dispatch(j, ns[0])
		e.clock.Advance(31 * time.Second)
		e.checkHealth()
		return n, "node " + n.ID + ": agent stopped heartbeating 31s ago"
	}

	n1, why1 := lose(1)
	got := e.job(j.ID)
	if got.Status != model.JobQueued || got.NodeID != "" || got.Attempts != 1 || got.Error != nil {
		t.Fatalf("after the first loss job = %s on %q, attempts %d, error %v; want Queued, no node, attempts 1", got.Status, got.NodeID, got.Attempts, got.Error)
	}
	if n := e.node(n1.ID); n.State != model.NodeUnusable || n.JobID != "" {
		t.Errorf("lost node = %s with job %q, want unusable without a job", n.State, n.JobID)
	}
	if !slices.Contains(changed, c.ID) {
		t.Errorf("Changed not called for %s", c.ID)
	}
	// The replacement waits for the backoff.
	res := e.reconcile(c)
	if res.RequeueAfter != time.Second || len(e.nodes(c)) != 0 {
		t.Fatalf("after removal: RequeueAfter %v, %d nodes; want 1s and none", res.RequeueAfter, len(e.nodes(c)))
	}
	e.clock.Advance(time.Second)

	n2, why2 := lose(2)
	got = e.job(j.ID)
	wantErr := &model.Error{Code: model.ErrorCodeNodeFailure, Message: why2 + " (the job was requeued once already)"}
	if got.Status != model.JobFailed || got.Attempts != 2 || !cmp.Equal(got.Error, wantErr) || got.EndedAt.IsZero() {
		t.Errorf("after the second loss job = %s, attempts %d, error %+v, ended %v; want Failed, 2, %+v", got.Status, got.Attempts, got.Error, got.EndedAt, wantErr)
	}
	wantHistory := []model.Attempt{
		{Number: 1, NodeID: n1.ID, Class: model.ClassInfrastructure, Reason: model.ReasonNodeLost, Message: why1},
		{Number: 2, NodeID: n2.ID, Class: model.ClassInfrastructure, Reason: model.ReasonNodeLost, Message: why2},
	}
	if diff := cmp.Diff(wantHistory, got.History, cmpopts.IgnoreFields(model.Attempt{}, "StartedAt", "EndedAt")); diff != "" {
		t.Errorf("history (-want +got):\n%s", diff)
	}
	for _, a := range got.History {
		if a.StartedAt.IsZero() || a.EndedAt.Sub(a.StartedAt) != 31*time.Second {
			t.Errorf("attempt %d ran %v to %v, want 31s", a.Number, a.StartedAt, a.EndedAt)
		}
	}
	wantEvents := []string{
		"NodeUnusable: node " + n1.ID + " unusable: agent stopped heartbeating 31s ago; job " + j.ID + " requeued",
		"NodeUnusable: node " + n2.ID + " unusable: agent stopped heartbeating 31s ago; job " + j.ID + " failed",
	}
	var evs []string
	for _, ev := range e.events(c) {
		if strings.HasPrefix(ev, EventNodeUnusable) {
			evs = append(evs, ev)
		}
	}
	if diff := cmp.Diff(wantEvents, evs); diff != "" {
		t.Errorf("NodeUnusable events (-want +got):\n%s", diff)
	}
	e.reconcile(c)
	wantErrs := []model.Error{{Code: ErrorNodeUnusable, Message: why1}, {Code: ErrorNodeUnusable, Message: why2}}
	if diff := cmp.Diff(wantErrs, e.status(c).Errors); diff != "" {
		t.Errorf("status errors (-want +got):\n%s", diff)
	}
}

// Nodes that fail to boot are replaced after 1s, 2s, 4s…; a replacement
// that comes up resets the backoff and clears the errors.
func TestFailedBootReplacedWithBackoff(t *testing.T) {
	e := newEnv(t, fake.Config{})
	c := e.compute("cpu", model.ScaleSettings{MinNodes: 1, MaxNodes: 1})
	e.reconcile(c)
	for i, wait := range []time.Duration{time.Second, 2 * time.Second, 4 * time.Second} {
		e.clock.Advance(2 * time.Minute) // the agent never registers
		e.checkHealth()
		if res := e.reconcile(c); res.RequeueAfter != wait {
			t.Fatalf("failure %d: RequeueAfter = %v, want %v", i+1, res.RequeueAfter, wait)
		}
		if len(e.nodes(c)) != 0 {
			t.Fatalf("failure %d: replaced before the backoff ended", i+1)
		}
		e.clock.Advance(wait - time.Millisecond)
		if res := e.reconcile(c); len(e.nodes(c)) != 0 || res.RequeueAfter != time.Millisecond {
			t.Fatalf("failure %d: replaced early (RequeueAfter %v)", i+1, res.RequeueAfter)
		}
		e.clock.Advance(time.Millisecond)
		e.reconcile(c)
		ns := e.nodes(c)
		if len(ns) != 1 || ns[0].Attempts != i+2 {
			t.Fatalf("failure %d: nodes = %+v, want one replacement with Attempts %d", i+1, ns, i+2)
		}
	}
	st := e.status(c)
	if len(st.Errors) != 3 || st.Allocation != model.AllocationResizing {
		t.Errorf("status = %+v, want 3 NodeUnusable errors while Resizing", st)
	}
	e.registerAll(c)
	e.reconcile(c)
	if st := e.status(c); st.Errors != nil || st.Allocation != model.AllocationSteady {
		t.Errorf("after a node came up status = %+v, want Steady without errors", st)
	}
	// A new failure starts the backoff again at 1s.
	e.clock.Advance(31 * time.Second)
	e.checkHealth()
	if res := e.reconcile(c); res.RequeueAfter != time.Second {
		t.Errorf("RequeueAfter = %v after the backoff reset, want 1s", res.RequeueAfter)
	}
}

// capacityHidden is a provider without the CapacityReporter capability,
// so that only Create finds out capacity is short.
type capacityHidden struct{ provider.Provider }

func TestCreateFailure(t *testing.T) {
	e := newEnv(t, fake.Config{Capacity: 1}, func(c *Config) {
		c.Providers["local"] = capacityHidden{c.Providers["local"]}
	})
	c := e.compute("cpu", model.ScaleSettings{MaxNodes: 3})
	e.jobs(c, 2)
	res := e.reconcile(c)
	got := e.states(c)
	if got[model.NodePreparing] != 1 || got[model.NodeUnusable] != 1 || res.RequeueAfter != requeueSoon {
		t.Fatalf("states = %v, RequeueAfter %v; want 1 preparing, 1 unusable, requeue soon", got, res.RequeueAfter)
	}
	var bad model.Node
	for _, n := range e.nodes(c) {
		if n.State == model.NodeUnusable {
			bad = n
		}
	}
	const capMsg = "insufficient instances for size Standard_DS2_v2: need 1, 0 free of 1"
	if want := "create failed: " + capMsg; bad.Reason != want {
		t.Errorf("reason = %q, want %q", bad.Reason, want)
	}
	st := e.status(c)
	if st.Blocked != BlockedCapacity || st.BlockedDetail != capMsg {
		t.Errorf("blocked = %s %q, want %s %q", st.Blocked, st.BlockedDetail, BlockedCapacity, capMsg)
	}
	if evs := e.events(c); !slices.Contains(evs, "AllocationFailed: node "+bad.ID+": create failed: "+capMsg) {
		t.Errorf("events = %q, want an AllocationFailed for %s", evs, bad.ID)
	}
	// The next pass removes it and backs off, still reporting the shortage.
	res = e.reconcile(c)
	if got := e.states(c); got[model.NodeUnusable] != 0 || res.RequeueAfter != time.Second {
		t.Errorf("states = %v, RequeueAfter %v; want the unusable node gone and a 1s backoff", got, res.RequeueAfter)
	}
	if st := e.status(c); st.Blocked != BlockedCapacity {
		t.Errorf("blocked = %q after the removal, want %s", st.Blocked, BlockedCapacity)
	}
}

func TestOrphanInstanceDeleted(t *testing.T) {
	e := newEnv(t, fake.Config{})
	c := e.compute("cpu", model.ScaleSettings{MinNodes: 1, MaxNodes: 1})
	e.reconcile(c)
	kept := e.nodes(c)[0].ID
	if err := e.prov.Create(t.Context(), []provider.Instance{{ID: "cpu-orphan", Compute: c.ID}}); err != nil {
		t.Fatal(err)
	}
	e.checkHealth()
	if got := e.instances(); !slices.Equal(got, []string{kept}) {
		t.Errorf("instances = %q, want only %s", got, kept)
	}
}

// After a restart the errors of removed nodes stay on the status until a
// node made since comes up, and the backoff goes on where it was: both are
// kept in the store, not in the autoscaler that began them.
func TestRestartKeepsNodeErrors(t *testing.T) {
	e := newEnv(t, fake.Config{})
	c := e.compute("cpu", model.ScaleSettings{MinNodes: 1, MaxNodes: 1})
	e.reconcile(c)
	e.clock.Advance(2 * time.Minute)
	e.checkHealth()
	e.reconcile(c)
	st := e.status(c)
	want := st.Errors
	if len(want) != 1 || st.Failures != 1 || !st.RetryAt.Equal(e.clock.Now().Add(time.Second)) {
		t.Fatalf("status = %+v, want one error, 1 failure and a retry in 1s", st)
	}

	e.clock.Advance(time.Millisecond)
	e.a = New(e.a.cfg) // the control plane restarts
	res := e.reconcile(c)
	if got := e.status(c).Errors; !cmp.Equal(got, want) {
		t.Errorf("errors after restart = %+v, want %+v", got, want)
	}
	if got := e.states(c); len(got) != 0 || res.RequeueAfter != time.Second-time.Millisecond {
		t.Fatalf("states = %v, RequeueAfter %v; want no node before the stored backoff ends in 999ms", got, res.RequeueAfter)
	}
	e.clock.Advance(time.Second)
	e.reconcile(c)
	ns := e.nodes(c)
	if len(ns) != 1 || ns[0].Attempts != 2 {
		t.Fatalf("nodes = %+v, want one replacement with Attempts 2 (the stored failure counted)", ns)
	}
	e.registerAll(c)
	e.reconcile(c)
	if got := e.status(c); got.Errors != nil || got.Allocation != model.AllocationSteady || got.Failures != 0 {
		t.Errorf("status = %+v, want Steady without errors or failures", got)
	}
}

// A node another component marked preempted while it held a job is removed
// and its job requeued; a preemption is not a failure, so the replacement
// comes at once.
func TestPreemptedNodeRemoved(t *testing.T) {
	e := newEnv(t, fake.Config{})
	c := e.compute("cpu", model.ScaleSettings{MaxNodes: 1})
	j := e.jobs(c, 1)[0]
	e.reconcile(c)
	n := e.registerAll(c)[0]
	_, n = e.dispatch(j, n)
	e.prov.Preempt(n.ID)
	p := n
	p.State, p.Reason = model.NodePreempted, "preempted"
	if err := e.st.NodeUpdate(t.Context(), p, model.NodeRunning); err != nil {
		t.Fatal(err)
	}
	res := e.reconcile(c)
	if got := e.job(j.ID); got.Status != model.JobQueued || got.NodeID != "" {
		t.Errorf("job = %s on %q, want Queued on no node", got.Status, got.NodeID)
	}
	ns := e.nodes(c)
	if len(ns) != 1 || ns[0].ID == n.ID || ns[0].State != model.NodePreparing || res.RequeueAfter != 0 {
		t.Errorf("nodes = %+v, RequeueAfter %v; want one new preparing node at once", ns, res.RequeueAfter)
	}
	if _, ok := e.prov.Instance(n.ID); ok {
		t.Errorf("preempted instance %s still held", n.ID)
	}
	if got := e.status(c).Errors; got != nil {
		t.Errorf("errors = %+v, want none for a preemption", got)
	}
	if evs := e.events(c); !slices.Contains(evs, "NodePreempted: node "+n.ID+" preempted: preempted; job "+j.ID+" requeued") {
		t.Errorf("events = %q, want the requeue recorded", evs)
	}
}

// The health pass acts on a provider's preemption notices for LowPriority
// clusters only: the node becomes preempted, its job's attempt ends with
// class preemption and the job is requeued; the same notice on a Dedicated
// cluster's node is judged as a stopped instance. After
// MaxPreemptionRetries the job fails with PreemptionError.
func TestPreemptionNotice(t *testing.T) {
	for _, prio := range []model.Priority{model.PriorityLowPriority, model.PriorityDedicated} {
		t.Run(string(prio), func(t *testing.T) {
			e := newEnv(t, fake.Config{})
			c := e.compute("cpu", model.ScaleSettings{MaxNodes: 1})
			c.Priority = prio
			c = e.patch(c, c.Scale)
			j := e.jobs(c, 1)[0]
			for attempt := 1; attempt <= model.MaxPreemptionRetries+1; attempt++ {
				e.reconcile(c)
				e.clock.Advance(time.Minute) // past any backoff
				e.reconcile(c)
				ns := e.registerAll(c)
				var n model.Node
				for _, x := range ns {
					if x.State == model.NodeIdle {
						n = x
					}
				}
				if n.ID == "" {
					t.Fatalf("attempt %d: no idle node in %+v", attempt, ns)
				}
				e.live.now = e.clock.Now
				e.dispatch(j, n)
				e.prov.Preempt(n.ID)
				e.checkHealth()
				got, node := e.job(j.ID), e.node(n.ID)
				if prio == model.PriorityDedicated {
					if node.State != model.NodeUnusable || got.History[attempt-1].Class != model.ClassInfrastructure {
						t.Fatalf("dedicated node = %s, attempt class %q; want unusable, infrastructure", node.State, got.History[attempt-1].Class)
					}
					return
				}
				if node.State != model.NodePreempted {
					t.Fatalf("attempt %d: node = %s, want preempted", attempt, node.State)
				}
				last := got.History[len(got.History)-1]
				if last.Class != model.ClassPreemption || last.Reason != model.ReasonPreempted || last.NodeID != n.ID {
					t.Fatalf("attempt %d: last attempt = %+v, want a preemption on %s", attempt, last, n.ID)
				}
				if attempt <= model.MaxPreemptionRetries {
					if got.Status != model.JobQueued {
						t.Fatalf("attempt %d: job = %s, want Queued", attempt, got.Status)
					}
					continue
				}
				if got.Status != model.JobFailed || got.Error == nil || got.Error.Code != model.ErrorCodePreemption ||
					len(got.History) != model.MaxPreemptionRetries+1 || got.Retries(model.ClassPreemption) != model.MaxPreemptionRetries+1 {
					t.Fatalf("after the cap job = %s, error %+v, %d attempts; want Failed with %s and %d attempts",
						got.Status, got.Error, len(got.History), model.ErrorCodePreemption, model.MaxPreemptionRetries+1)
				}
			}
		})
	}
}

// sentMessages records what a health pass sends to agents.
type sentMessages struct{ msgs []agentproto.Message }

func (s *sentMessages) Send(nodeID string, m agentproto.Message) error {
	s.msgs = append(s.msgs, m)
	return nil
}

// A LowPriority node running a job gets notice: its agent is sent Evict
// with the deadline on each pass and the node stays running, so the agent
// can report the job; once the deadline and the report grace have passed
// without a report, the node is preempted and the job requeued.
func TestEvictionNotice(t *testing.T) {
	e := newEnv(t, fake.Config{})
	var sent sentMessages
	h := nodehealth.New(nodehealth.Config{
		Store: e.st, Providers: map[string]provider.Provider{"local": e.prov},
		Regions:  map[string]model.Region{"local": model.NewRegion("local", "fake", model.Host{VCPUs: 64, MemoryGB: 256})},
		Liveness: e.live, Sender: &sent, Now: e.clock.Now, ReportGrace: 10 * time.Second,
		Log: slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	c := e.compute("cpu", model.ScaleSettings{MaxNodes: 1})
	c.Priority = model.PriorityLowPriority
	c = e.patch(c, c.Scale)
	j := e.jobs(c, 1)[0]
	e.reconcile(c)
	n := e.registerAll(c)[0]
	e.live.now = e.clock.Now
	j, _ = e.dispatch(j, n)
	e.prov.Preempt(n.ID) // taken now: the deadline is now
	deadline := e.clock.Now()
	for range 2 {
		if err := h.Check(t.Context()); err != nil {
			t.Fatal(err)
		}
		e.clock.Advance(4 * time.Second)
	}
	want := agentproto.Message{Type: agentproto.TypeEvict, RunID: j.RunID, Deadline: deadline}
	if len(sent.msgs) != 2 || !cmp.Equal(sent.msgs[0], want) {
		t.Fatalf("sent %+v, want Evict %+v on each pass", sent.msgs, want)
	}
	if got := e.node(n.ID); got.State != model.NodeRunning {
		t.Fatalf("node during the notice = %s, want running", got.State)
	}
	if evs := e.events(c); !slices.ContainsFunc(evs, func(s string) bool { return strings.HasPrefix(s, nodehealth.EventEvictionNotice) }) {
		t.Errorf("events = %q, want the notice recorded", evs)
	}
	e.clock.Advance(3 * time.Second) // deadline + 11s: past the grace, no report came
	if err := h.Check(t.Context()); err != nil {
		t.Fatal(err)
	}
	if got := e.node(n.ID); got.State != model.NodePreempted {
		t.Errorf("node after the grace = %s, want preempted", got.State)
	}
	if got := e.job(j.ID); got.Status != model.JobQueued || got.History[0].Class != model.ClassPreemption {
		t.Errorf("job = %s, history %+v; want Queued after a preemption", got.Status, got.History)
	}
}

package autoscale

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"kumo/internal/model"
	"kumo/internal/provider"
	"kumo/internal/provider/fake"
	"kumo/internal/secret"
	"kumo/internal/store"
)

func TestScaleUp(t *testing.T) {
	tests := []struct {
		name      string
		scale     model.ScaleSettings
		jobs      int
		quota     int64 // standardDSv2Family limit; 0 means the default
		capacity  int   // fake provider capacity; 0 means unlimited
		other     int   // nodes of another DSv2 cluster of the workspace
		wantNodes int
		want      model.ComputeStatus // ComputeID and AllocationSince are not compared
		wantEvent []string
	}{
		{
			name: "0 to N as N jobs queue", scale: model.ScaleSettings{MaxNodes: 4}, jobs: 3, wantNodes: 3,
			want:      model.ComputeStatus{TargetNodes: 3, Allocation: model.AllocationResizing},
			wantEvent: []string{"ScaleUp: 0 → 3 nodes: 3 nodes for waiting jobs"},
		},
		{
			name: "no jobs, min 0", scale: model.ScaleSettings{MaxNodes: 4}, jobs: 0, wantNodes: 0,
			want: model.ComputeStatus{TargetNodes: 0, Allocation: model.AllocationSteady},
		},
		{
			name: "min keeps nodes", scale: model.ScaleSettings{MinNodes: 2, MaxNodes: 4}, jobs: 0, wantNodes: 2,
			want:      model.ComputeStatus{TargetNodes: 2, Allocation: model.AllocationResizing},
			wantEvent: []string{"ScaleUp: 0 → 2 nodes: minNodeCount is 2"},
		},
		{
			name: "capped by max", scale: model.ScaleSettings{MaxNodes: 2}, jobs: 5, wantNodes: 2,
			want: model.ComputeStatus{TargetNodes: 2, Allocation: model.AllocationResizing,
				Blocked: BlockedMaxNodes, BlockedDetail: "jobs need 5 nodes; maxNodeCount is 2"},
			wantEvent: []string{"ScaleUp: 0 → 2 nodes: 5 nodes for waiting jobs", "MaxNodesReached: jobs need 5 nodes; maxNodeCount is 2"},
		},
		{
			name: "capped by quota", scale: model.ScaleSettings{MaxNodes: 10}, jobs: 6, quota: 8, other: 1, wantNodes: 3,
			want: model.ComputeStatus{TargetNodes: 6, Allocation: model.AllocationResizing,
				Errors:  []model.Error{{Code: BlockedQuota, Message: "family standardDSv2Family: limit 8 vCPUs, in use 8, one node needs 2"}},
				Blocked: BlockedQuota, BlockedDetail: "family standardDSv2Family: limit 8 vCPUs, in use 8, one node needs 2"},
			wantEvent: []string{"ScaleUp: 0 → 3 nodes: 6 nodes for waiting jobs", "QuotaExceeded: family standardDSv2Family: limit 8 vCPUs, in use 2, one node needs 2"},
		},
		{
			name: "capped by capacity", scale: model.ScaleSettings{MaxNodes: 10}, jobs: 4, capacity: 1, wantNodes: 1,
			want: model.ComputeStatus{TargetNodes: 4, Allocation: model.AllocationResizing,
				Errors:  []model.Error{{Code: BlockedCapacity, Message: "provider fake has room for 0 more Standard_DS2_v2 nodes; 3 more needed"}},
				Blocked: BlockedCapacity, BlockedDetail: "provider fake has room for 0 more Standard_DS2_v2 nodes; 3 more needed"},
			wantEvent: []string{"ScaleUp: 0 → 1 nodes: 4 nodes for waiting jobs", "CapacityExhausted: provider fake has room for 1 more Standard_DS2_v2 nodes; 4 more needed"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, fake.Config{Capacity: tt.capacity})
			ctx := t.Context()
			if tt.quota > 0 {
				if err := e.st.QuotaSet(ctx, model.Quota{WorkspaceID: wsID, Family: "standardDSv2Family", Limit: tt.quota}); err != nil {
					t.Fatal(err)
				}
			}
			if tt.other > 0 {
				o := e.compute("other", model.ScaleSettings{MinNodes: tt.other, MaxNodes: tt.other})
				e.reconcile(o)
				if got := len(e.nodes(o)); got != tt.other {
					t.Fatalf("other cluster has %d nodes, want %d", got, tt.other)
				}
			}
			c := e.compute("cpu", tt.scale)
			e.jobs(c, tt.jobs)

			// Two passes: the second must change nothing but the numbers
			// in a blocked detail.
			for range 2 {
				e.reconcile(c)
			}
			nodes := e.nodes(c)
			if len(nodes) != tt.wantNodes {
				t.Fatalf("got %d nodes, want %d", len(nodes), tt.wantNodes)
			}
			for _, n := range nodes {
				if n.State != model.NodePreparing || !strings.HasPrefix(n.ID, "cpu-") || !provider.ValidID(n.ID) || !n.CreatedAt.Equal(t0) {
					t.Errorf("node = %+v, want a preparing node cpu-… created at t0", n)
				}
				in, ok := e.prov.Instance(n.ID)
				if !ok {
					t.Errorf("provider has no instance %s", n.ID)
					continue
				}
				wantSize := provider.Size{Name: vmSize, VCPUs: 2, MemoryMB: 7 * 1024}
				if in.Compute != c.ID || in.Size != wantSize || in.Agent.URL != "https://cp.example:8443" || in.Agent.CAFile != agentCA {
					t.Errorf("instance %s = %+v, want compute %s, size %+v and the configured agent URL and CA", n.ID, in, c.ID, wantSize)
				}
				if secret.HashToken(in.Agent.Credential) != n.CredentialHash || in.Agent.Credential == "" {
					t.Errorf("instance %s credential does not hash to the node's CredentialHash", n.ID)
				}
			}
			got := e.status(c)
			if diff := cmp.Diff(tt.want, got, cmpopts.IgnoreFields(model.ComputeStatus{}, "ComputeID", "AllocationSince")); diff != "" {
				t.Errorf("status (-want +got):\n%s", diff)
			}
			if !got.AllocationSince.Equal(t0) {
				t.Errorf("AllocationSince = %v, want %v", got.AllocationSince, t0)
			}
			if diff := cmp.Diff(tt.wantEvent, e.events(c)); diff != "" {
				t.Errorf("events (-want +got):\n%s", diff)
			}
		})
	}
}

// A lower-priority cluster counts against the low-priority quota, not its
// family's.
func TestScaleUpLowPriorityQuota(t *testing.T) {
	e := newEnv(t, fake.Config{})
	if err := e.st.QuotaSet(t.Context(), model.Quota{WorkspaceID: wsID, Family: model.LowPriorityFamily, Limit: 2}); err != nil {
		t.Fatal(err)
	}
	c := e.compute("cpu", model.ScaleSettings{MaxNodes: 4})
	c.Priority = model.PriorityLowPriority
	c = e.patch(c, c.Scale)
	e.jobs(c, 3)
	e.reconcile(c)
	if got := len(e.nodes(c)); got != 1 {
		t.Errorf("got %d nodes, want 1", got)
	}
	if got, want := e.status(c).BlockedDetail, "family lowPriorityCores: limit 2 vCPUs, in use 0, one node needs 2"; got != want {
		t.Errorf("BlockedDetail = %q, want %q", got, want)
	}
}

// A quiet cluster's first status keeps the transition time the API showed
// before any pass: Steady since the compute was written.
func TestFirstPassKeepsSteadySince(t *testing.T) {
	e := newEnv(t, fake.Config{})
	c := e.compute("cpu", model.ScaleSettings{MaxNodes: 4})
	e.clock.Advance(5 * time.Second)
	e.reconcile(c)
	if got := e.status(c); got.Allocation != model.AllocationSteady || !got.AllocationSince.Equal(c.ModifiedAt) {
		t.Errorf("status = %+v, want Steady since the compute was written (%v)", got, c.ModifiedAt)
	}
}

func TestSteadyWhenAllUp(t *testing.T) {
	e := newEnv(t, fake.Config{})
	c := e.compute("cpu", model.ScaleSettings{MinNodes: 2, MaxNodes: 4, IdleTime: time.Minute})
	e.reconcile(c)
	e.clock.Advance(10 * time.Second)
	e.registerAll(c)
	e.reconcile(c)
	got := e.status(c)
	if got.Allocation != model.AllocationSteady || !got.AllocationSince.Equal(t0.Add(10*time.Second)) || got.TargetNodes != 2 {
		t.Errorf("status = %+v, want Steady since t0+10s with target 2", got)
	}
	e.clock.Advance(time.Hour)
	e.reconcile(c)
	if got := e.status(c); !got.AllocationSince.Equal(t0.Add(10 * time.Second)) {
		t.Errorf("AllocationSince moved to %v without a change", got.AllocationSince)
	}
	if got := e.states(c); got[model.NodeIdle] != 2 {
		t.Errorf("min nodes removed: %v", got)
	}
}

func TestScaleDown(t *testing.T) {
	const idle = 2 * time.Minute
	tests := []struct {
		name    string
		scale   model.ScaleSettings
		nodes   int // started by as many jobs, which then finish
		running int // of those jobs, how many are still running
		advance time.Duration
		// patch, when not nil, replaces the scale settings before the pass.
		patch     *model.ScaleSettings
		wantIdle  int
		wantRun   int
		wantAfter time.Duration
		wantEvent int // ScaleDown events
	}{
		{name: "not before the idle time", scale: model.ScaleSettings{MaxNodes: 4, IdleTime: idle}, nodes: 3,
			advance: time.Minute, wantIdle: 3, wantAfter: time.Minute},
		{name: "after the idle time", scale: model.ScaleSettings{MaxNodes: 4, IdleTime: idle}, nodes: 3,
			advance: idle, wantIdle: 0, wantEvent: 3},
		{name: "only above min", scale: model.ScaleSettings{MinNodes: 1, MaxNodes: 4, IdleTime: idle}, nodes: 3,
			advance: idle, wantIdle: 1, wantEvent: 2},
		{name: "never a running node", scale: model.ScaleSettings{MaxNodes: 4, IdleTime: idle}, nodes: 3, running: 2,
			advance: time.Hour, wantIdle: 0, wantRun: 2, wantEvent: 1},
		{name: "idle time zero removes at once", scale: model.ScaleSettings{MaxNodes: 4}, nodes: 2,
			wantIdle: 0, wantEvent: 2},
		{name: "PATCHed max removes idle excess at once", scale: model.ScaleSettings{MaxNodes: 4, IdleTime: idle}, nodes: 4,
			patch: &model.ScaleSettings{MaxNodes: 1, IdleTime: idle}, advance: time.Second,
			wantIdle: 1, wantAfter: idle - time.Second, wantEvent: 3},
		{name: "PATCHed max never removes running nodes", scale: model.ScaleSettings{MaxNodes: 4, IdleTime: idle}, nodes: 4, running: 3,
			patch: &model.ScaleSettings{MaxNodes: 1, IdleTime: idle}, advance: time.Second,
			wantIdle: 0, wantRun: 3, wantEvent: 1},
		{name: "PATCHed min raises the count", scale: model.ScaleSettings{MaxNodes: 4, IdleTime: idle}, nodes: 1,
			patch: &model.ScaleSettings{MinNodes: 3, MaxNodes: 4, IdleTime: idle}, advance: idle,
			wantIdle: 1, wantAfter: 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, fake.Config{})
			c := e.compute("cpu", tt.scale)
			jobs := e.jobs(c, tt.nodes)
			e.reconcile(c)
			nodes := e.registerAll(c)
			if len(nodes) != tt.nodes {
				t.Fatalf("scale-up made %d nodes, want %d", len(nodes), tt.nodes)
			}
			for i, j := range jobs {
				e.dispatch(j, nodes[i])
			}
			e.clock.Advance(time.Minute) // the jobs run a minute
			for _, j := range jobs[tt.running:] {
				e.finish(j)
			}
			e.live.now = e.clock.Now
			if tt.patch != nil {
				c = e.patch(c, *tt.patch)
			}
			e.clock.Advance(tt.advance)
			res := e.reconcile(c)
			e.checkHealth() // heartbeats are fresh: changes nothing

			got := e.states(c)
			if got[model.NodeIdle] != tt.wantIdle || got[model.NodeRunning] != tt.wantRun || got[model.NodeLeaving] != 0 {
				t.Errorf("node states = %v, want %d idle and %d running", got, tt.wantIdle, tt.wantRun)
			}
			if tt.patch != nil && tt.patch.MinNodes > 0 {
				if got[model.NodePreparing] != tt.patch.MinNodes-tt.wantIdle {
					t.Errorf("node states = %v, want %d preparing", got, tt.patch.MinNodes-tt.wantIdle)
				}
			}
			if res.RequeueAfter != tt.wantAfter {
				t.Errorf("RequeueAfter = %v, want %v", res.RequeueAfter, tt.wantAfter)
			}
			if st := e.status(c); got[model.NodePreparing] == 0 && (st.Allocation != model.AllocationSteady || st.TargetNodes != tt.wantIdle+tt.wantRun) {
				// Idle nodes waiting out their idle time are kept on
				// purpose: the cluster is steady at what it holds.
				t.Errorf("status = %s target %d, want Steady at %d", st.Allocation, st.TargetNodes, tt.wantIdle+tt.wantRun)
			}
			var downs []string
			for _, ev := range e.events(c) {
				if strings.HasPrefix(ev, EventScaleDown+": ") {
					downs = append(downs, ev)
				}
			}
			if len(downs) != tt.wantEvent {
				t.Errorf("ScaleDown events = %q, want %d", downs, tt.wantEvent)
			}
			// The provider holds exactly the nodes left.
			ids := nodeIDs(e.nodes(c))
			slices.Sort(ids)
			if diff := cmp.Diff(ids, e.instances()); diff != "" {
				t.Errorf("provider instances differ from nodes (-nodes +instances):\n%s", diff)
			}
			// A second pass changes nothing.
			e.reconcile(c)
			if again := e.states(c); !cmp.Equal(again, got) {
				t.Errorf("second pass changed node states from %v to %v", got, again)
			}
		})
	}
}

func TestScaleDownEventReason(t *testing.T) {
	e := newEnv(t, fake.Config{})
	c := e.compute("cpu", model.ScaleSettings{MaxNodes: 2, IdleTime: 2 * time.Minute})
	j := e.jobs(c, 1)[0]
	e.reconcile(c)
	n := e.registerAll(c)[0]
	e.dispatch(j, n)
	e.finish(j)
	e.live.now = e.clock.Now
	e.clock.Advance(2 * time.Minute)
	e.reconcile(c)
	want := []string{
		"ScaleUp: 0 → 1 nodes: 1 node for waiting jobs",
		"ScaleDown: node " + n.ID + " idle for 2m0s ≥ PT2M",
	}
	if diff := cmp.Diff(want, e.events(c)); diff != "" {
		t.Errorf("events (-want +got):\n%s", diff)
	}
	if got := e.status(c); got.Allocation != model.AllocationSteady || got.TargetNodes != 0 {
		t.Errorf("status = %+v, want Steady at 0", got)
	}
}

// raceStore gives a node a job just before the autoscaler marks it leaving,
// as the dispatcher may.
type raceStore struct {
	store.Store
	before func(n model.Node)
}

func (s *raceStore) NodeUpdate(ctx context.Context, n model.Node, from model.NodeState) error {
	if s.before != nil && n.State == model.NodeLeaving {
		s.before(n)
	}
	return s.Store.NodeUpdate(ctx, n, from)
}

func TestScaleDownSkipsNodeJustDispatched(t *testing.T) {
	var rs raceStore
	e := newEnv(t, fake.Config{}, func(c *Config) {
		rs.Store = c.Store
		c.Store = &rs
	})
	c := e.compute("cpu", model.ScaleSettings{MaxNodes: 2})
	first := e.jobs(c, 1)
	e.reconcile(c)
	n := e.registerAll(c)[0]
	e.dispatch(first[0], n)
	e.finish(first[0])
	// A job arrives after the pass read no demand and is dispatched to the
	// idle node between the pass's read and its write. (NotStarted keeps it
	// out of the pass's demand.)
	late := e.jobs(c, 1)[0]
	hold := late
	hold.Status = model.JobNotStarted
	if err := e.st.JobUpdate(t.Context(), hold, model.JobQueued, nil, ""); err != nil {
		t.Fatal(err)
	}
	rs.before = func(model.Node) {
		rs.before = nil
		e.dispatch(late, n)
	}
	e.live.now = e.clock.Now
	e.reconcile(c)
	if got := e.node(n.ID); got.State != model.NodeRunning || got.JobID != late.ID {
		t.Errorf("node = %s running %q, want running %s", got.State, got.JobID, late.ID)
	}
	if got := e.instances(); !slices.Equal(got, []string{n.ID}) {
		t.Errorf("instances = %q, want [%s]", got, n.ID)
	}
}

func TestSkipsComputesNotReady(t *testing.T) {
	for _, state := range []model.ProvisioningState{model.StateCreating, model.StateFailed, model.StateDeleting} {
		t.Run(string(state), func(t *testing.T) {
			e := newEnv(t, fake.Config{})
			c := e.compute("cpu", model.ScaleSettings{MinNodes: 1, MaxNodes: 2})
			prev := c.ETag
			c.State, c.ETag = state, "etag-1"
			if err := e.st.ComputeUpdate(t.Context(), c, prev, nil); err != nil {
				t.Fatal(err)
			}
			e.reconcile(c)
			if got := e.nodes(c); len(got) != 0 {
				t.Errorf("got %d nodes for a %s compute, want none", len(got), state)
			}
		})
	}
	e := newEnv(t, fake.Config{})
	if _, err := e.a.Reconcile(t.Context(), wsID+"/computes/missing"); err != nil {
		t.Errorf("Reconcile(missing compute) = %v, want nil", err)
	}
}

func TestBackoff(t *testing.T) {
	for _, tt := range []struct {
		n    int
		want time.Duration
	}{{1, time.Second}, {2, 2 * time.Second}, {3, 4 * time.Second}, {6, 32 * time.Second}, {7, time.Minute}, {100, time.Minute}} {
		if got := backoff(tt.n); got != tt.want {
			t.Errorf("backoff(%d) = %v, want %v", tt.n, got, tt.want)
		}
	}
}

// Each node accrues its size's price for the cluster's priority from its
// creation until it leaves; the record outlives the node.
func TestNodeUsageRecorded(t *testing.T) {
	e := newEnv(t, fake.Config{})
	c := e.compute("cpu", model.ScaleSettings{MaxNodes: 1, IdleTime: time.Minute})
	c.Priority = model.PriorityLowPriority
	c = e.patch(c, c.Scale)
	e.jobs(c, 1)
	e.reconcile(c)
	n := e.nodes(c)[0]
	got, err := e.st.UsageList(t.Context(), wsID, c.ID, time.Time{}, t0.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	want := []model.NodeUsage{{NodeID: n.ID, ComputeID: c.ID, WorkspaceID: wsID, VMSize: vmSize,
		Priority: model.PriorityLowPriority, PricePerHour: 0.0292, StartedAt: n.CreatedAt}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Fatalf("usage (-want +got):\n%s", diff)
	}
	// The node fails to boot: it is unusable, then removed; its usage ends
	// when it became unusable.
	e.clock.Advance(3 * time.Minute)
	e.checkHealth()
	lost := e.node(n.ID)
	e.reconcile(c)
	got, _ = e.st.UsageList(t.Context(), wsID, c.ID, time.Time{}, t0.Add(time.Hour))
	if len(got) == 0 || !got[0].EndedAt.Equal(lost.StateSince) {
		t.Errorf("usage after removal = %+v, want it ended at %v", got, lost.StateSince)
	}
}

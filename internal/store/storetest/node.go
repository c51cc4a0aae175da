package storetest

import (
	"errors"
	"fmt"
	"hash/fnv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"kumo/internal/model"
	"kumo/internal/store"
)

var nodeTests = []test{
	{"CreateGet", testNodeCreateGet},
	{"CreateConflict", testNodeCreateConflict},
	{"SSHPortConflict", testNodeSSHPortConflict},
	{"Missing", testNodeMissing},
	{"Update", testNodeUpdate},
	{"List", testNodeList},
	{"CountByCompute", testNodeCountByCompute},
	{"PlacementCandidates", testNodePlacementCandidates},
	{"Delete", testNodeDelete},
	{"BindAgentKey", testNodeBindAgentKey},
	{"Usage", testNodeUsage},
	{"UsageSum", testNodeUsageSum},
}

// newNode returns a node of the compute with computeID, with every field
// set. Its SSH port follows from its ID (see sshPortOf): nodes hold
// distinct ports.
func newNode(id, computeID string, state model.NodeState) model.Node {
	var ready time.Time
	if state != model.NodePreparing {
		ready = at(21) // its agent registered
	}
	return model.Node{
		ReadyAt:        ready,
		ID:             id,
		ComputeID:      computeID,
		State:          state,
		CredentialHash: "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
		Address:        "10.0.0.4",
		SSHPort:        sshPortOf(id),
		Note:           "limits recorded only",
		CreatedAt:      at(20),
		StateSince:     at(21),
		Attempts:       1,
	}
}

// sshPortOf returns a port from 50000 to 59999 for the node with id, the
// same for the same ID; the few IDs a test uses get distinct ones.
func sshPortOf(id string) int {
	h := fnv.New32a()
	h.Write([]byte(id))
	return 50000 + int(h.Sum32()%10000)
}

// mustCreateNode creates n or fails the test.
func mustCreateNode(t *testing.T, s store.Store, n model.Node) {
	t.Helper()
	if err := s.NodeCreate(t.Context(), n); err != nil {
		t.Fatalf("NodeCreate(%s): %v", n.ID, err)
	}
}

// wantNode fails the test unless the stored node with id equals want.
func wantNode(t *testing.T, s store.Store, id string, want model.Node) {
	t.Helper()
	got, err := s.NodeGet(t.Context(), id)
	if err != nil {
		t.Fatalf("NodeGet(%s): %v", id, err)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("NodeGet(%s) mismatch (-want +got):\n%s", id, diff)
	}
}

// wantNoNode fails the test if a node with id exists.
func wantNoNode(t *testing.T, s store.Store, id string) {
	t.Helper()
	if _, err := s.NodeGet(t.Context(), id); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("NodeGet(%s) error = %v, want ErrNotFound", id, err)
	}
}

// nodeIDs returns the IDs of ns, for compact comparisons.
func nodeIDs(ns []model.Node) []string {
	var ids []string
	for _, n := range ns {
		ids = append(ids, n.ID)
	}
	return ids
}

func testNodeCreateGet(t *testing.T, s store.Store) {
	c := stubCompute.ID
	running := newNode("node-2", c, model.NodeRunning)
	running.JobID = c + "/jobs/train"
	unusable := newNode("node-3", c, model.NodeUnusable)
	unusable.Reason = "heartbeat lost"
	unusable.AgentKey = "bound-key"
	tests := []struct {
		name string
		n    model.Node
	}{
		{"preparing", newNode("node-1", c, model.NodePreparing)},
		{"running", running},
		{"unusable", unusable},
		{"bare", model.Node{ID: "node-4", ComputeID: c, State: model.NodePreparing}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			mustCreateNode(t, s, tt.n)
			wantNode(t, s, tt.n.ID, tt.n)
		})
	}
}

func testNodeCreateConflict(t *testing.T, s store.Store) {
	n := newNode("node-1", stubCompute.ID, model.NodeIdle)
	mustCreateNode(t, s, n)
	dup := newNode("node-1", stubCompute.ID+"2", model.NodePreparing)
	if err := s.NodeCreate(t.Context(), dup); !errors.Is(err, store.ErrConflict) {
		t.Errorf("NodeCreate(duplicate) error = %v, want ErrConflict", err)
	}
	wantNode(t, s, n.ID, n)
}

func testNodeMissing(t *testing.T, s store.Store) {
	n := newNode("node-1", stubCompute.ID, model.NodeIdle)
	mustCreateNode(t, s, n)
	// Node IDs are matched exactly.
	for _, id := range []string{"nope", "NODE-1"} {
		wantNoNode(t, s, id)
	}
	missing := newNode("nope", stubCompute.ID, model.NodeIdle)
	if err := s.NodeUpdate(t.Context(), missing, model.NodeIdle); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("NodeUpdate(missing) error = %v, want ErrNotFound", err)
	}
	if err := s.NodeDelete(t.Context(), "nope"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("NodeDelete(missing) error = %v, want ErrNotFound", err)
	}
}

func testNodeUpdate(t *testing.T, s store.Store) {
	orig := newNode("node-1", stubCompute.ID, model.NodePreparing)
	mustCreateNode(t, s, orig)

	idle := orig
	idle.State = model.NodeIdle
	idle.CredentialHash = "new"
	idle.Address = "10.0.0.9"
	idle.SSHPort = 50001
	idle.HostKey = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIPlaceholderHostKeyForTheConformanceSuite0"
	idle.Note = ""
	idle.StateSince = at(30)
	idle.ReadyAt = at(30) // its agent registered
	idle.Attempts = 2
	if err := s.NodeUpdate(t.Context(), idle, model.NodePreparing); err != nil {
		t.Fatalf("NodeUpdate(preparing→idle): %v", err)
	}
	wantNode(t, s, orig.ID, idle)

	// The stored state is now idle: an update from preparing fails and
	// changes nothing.
	leaving := idle
	leaving.State, leaving.Reason = model.NodeLeaving, "scale down"
	if err := s.NodeUpdate(t.Context(), leaving, model.NodePreparing); !errors.Is(err, store.ErrPreconditionFailed) {
		t.Errorf("NodeUpdate(stale from) error = %v, want ErrPreconditionFailed", err)
	}
	wantNode(t, s, orig.ID, idle)

	if err := s.NodeUpdate(t.Context(), leaving, model.NodeIdle); err != nil {
		t.Fatalf("NodeUpdate(idle→leaving): %v", err)
	}
	wantNode(t, s, orig.ID, leaving)

	// An update from a state to itself is allowed.
	leaving.Reason = "scale down: idle"
	if err := s.NodeUpdate(t.Context(), leaving, model.NodeLeaving); err != nil {
		t.Fatalf("NodeUpdate(leaving→leaving): %v", err)
	}
	wantNode(t, s, orig.ID, leaving)
}

func testNodeList(t *testing.T, s store.Store) {
	w := setupWorkspace(t, s, "ws")
	cpu := newCompute(w, "cpu").ID
	gpu := newCompute(w, "gpu").ID
	for _, n := range []struct {
		id      string
		compute string
		created int
	}{
		{"n-b", cpu, 5},
		{"n-a", cpu, 5}, // same time as n-b: ordered by ID
		{"n-c", cpu, 1},
		{"n-d", gpu, 3},
		{"n-e", gpu + "x", 2}, // its ID extends gpu's: not gpu's node
	} {
		node := newNode(n.id, n.compute, model.NodeIdle)
		node.CreatedAt = at(n.created)
		mustCreateNode(t, s, node)
	}
	tests := []struct {
		name    string
		compute string // "" lists every node
		wantIDs []string
	}{
		{"all", "", []string{"n-c", "n-e", "n-d", "n-a", "n-b"}},
		{"cpu", cpu, []string{"n-c", "n-a", "n-b"}},
		{"compute ID case", strings.ToUpper(cpu), []string{"n-c", "n-a", "n-b"}},
		{"gpu", gpu, []string{"n-d"}},
		{"missing compute", newCompute(w, "nope").ID, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var (
				got []model.Node
				err error
			)
			if tt.compute == "" {
				got, err = s.NodeList(t.Context())
			} else {
				got, err = s.NodeListByCompute(t.Context(), tt.compute)
			}
			if err != nil {
				t.Fatalf("list: %v", err)
			}
			if diff := cmp.Diff(tt.wantIDs, nodeIDs(got)); diff != "" {
				t.Errorf("node IDs (-want +got):\n%s", diff)
			}
		})
	}
}

// testNodePlacementCandidates: a compute's idle nodes (ordered by
// CreatedAt, then ID) and the head of its queue, at most one job per idle
// node, or neither when it has no idle node or no queued job. Other states
// do not count, nor does an idle node or a queued job of a compute whose
// ID extends this one's.
func testNodePlacementCandidates(t *testing.T, s store.Store) {
	w := setupWorkspace(t, s, "ws")
	type node struct {
		id      string
		state   model.NodeState
		created int
	}
	type job struct {
		name   string
		status model.JobStatus
		seq    int64
	}
	tests := []struct {
		name       string
		nodes      []node
		jobs       []job
		ask        func(id string) string // the compute ID asked for; nil asks as stored
		wantNodes  []string
		wantQueued []string
	}{
		{
			name:  "every node busy",
			nodes: []node{{"busy-1", model.NodeRunning, 1}, {"busy-2", model.NodePreparing, 2}},
			jobs:  []job{{"busy-q", model.JobQueued, 1}, {"busy-r", model.JobRunning, 2}},
		},
		{
			name:  "nothing queued",
			nodes: []node{{"calm-1", model.NodeIdle, 1}, {"calm-2", model.NodeIdle, 2}},
			jobs:  []job{{"calm-r", model.JobRunning, 1}, {"calm-done", model.JobCompleted, 2}},
		},
		{
			name: "head as long as the idle nodes",
			nodes: []node{
				{"head-b", model.NodeIdle, 5},
				{"head-a", model.NodeIdle, 5}, // same time as head-b: ordered by ID
				{"head-c", model.NodeIdle, 3},
				{"head-run", model.NodeRunning, 1},
			},
			jobs: []job{
				{"head-30", model.JobQueued, 30}, {"head-10", model.JobQueued, 10}, {"head-40", model.JobQueued, 40},
				{"head-20", model.JobQueued, 20}, {"head-5", model.JobRunning, 5},
			},
			wantNodes:  []string{"head-c", "head-a", "head-b"},
			wantQueued: []string{"head-10", "head-20", "head-30"},
		},
		{
			name:       "fewer queued than idle",
			nodes:      []node{{"few-1", model.NodeIdle, 1}, {"few-2", model.NodeIdle, 2}, {"few-3", model.NodeIdle, 3}},
			jobs:       []job{{"few-q", model.JobQueued, 1}},
			wantNodes:  []string{"few-1", "few-2", "few-3"},
			wantQueued: []string{"few-q"},
		},
		{
			name:       "compute ID case",
			nodes:      []node{{"case-1", model.NodeIdle, 1}},
			jobs:       []job{{"case-q", model.JobQueued, 1}},
			ask:        strings.ToUpper,
			wantNodes:  []string{"case-1"},
			wantQueued: []string{"case-q"},
		},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			compute := fmt.Sprintf("cpu%d", i)
			id := newCompute(w, compute).ID
			// A compute whose ID extends this one's, with an idle node and
			// a queued job of its own.
			mustCreateNode(t, s, newNode(fmt.Sprintf("other-%d", i), id+"x", model.NodeIdle))
			other := newJob(w, fmt.Sprintf("other-%d", i), compute+"x", 0)
			mustCreateJob(t, s, other)
			for _, n := range tt.nodes {
				node := newNode(n.id, id, n.state)
				node.CreatedAt = at(n.created)
				mustCreateNode(t, s, node)
			}
			for _, j := range tt.jobs {
				job := newJob(w, j.name, compute, j.seq)
				job.Status = j.status
				mustCreateJob(t, s, job)
			}
			if tt.ask != nil {
				id = tt.ask(id)
			}
			idle, queued, err := s.PlacementCandidates(t.Context(), id)
			if err != nil {
				t.Fatalf("PlacementCandidates: %v", err)
			}
			if diff := cmp.Diff(tt.wantNodes, nodeIDs(idle)); diff != "" {
				t.Errorf("idle nodes (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tt.wantQueued, jobNames(queued)); diff != "" {
				t.Errorf("queued jobs (-want +got):\n%s", diff)
			}
		})
	}
}

func testNodeDelete(t *testing.T, s store.Store) {
	n := newNode("node-1", stubCompute.ID, model.NodeLeaving)
	keep := newNode("node-2", stubCompute.ID, model.NodeIdle)
	mustCreateNode(t, s, n)
	mustCreateNode(t, s, keep)
	if err := s.NodeDelete(t.Context(), n.ID); err != nil {
		t.Fatalf("NodeDelete: %v", err)
	}
	wantNoNode(t, s, n.ID)
	wantNode(t, s, keep.ID, keep)
	if err := s.NodeDelete(t.Context(), n.ID); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("second NodeDelete error = %v, want ErrNotFound", err)
	}
	// The ID is free again.
	mustCreateNode(t, s, n)
}

func testNodeBindAgentKey(t *testing.T, s store.Store) {
	n := newNode("node-1", stubCompute.ID, model.NodePreparing)
	mustCreateNode(t, s, n)
	if err := s.NodeBindAgentKey(t.Context(), n.ID, "key-a"); err != nil {
		t.Fatalf("NodeBindAgentKey(unbound): %v", err)
	}
	n.AgentKey = "key-a"
	wantNode(t, s, n.ID, n)

	// Binding the same key again is harmless; another key is refused and
	// changes nothing.
	if err := s.NodeBindAgentKey(t.Context(), n.ID, "key-a"); err != nil {
		t.Errorf("NodeBindAgentKey(same key) = %v, want nil", err)
	}
	if err := s.NodeBindAgentKey(t.Context(), n.ID, "key-b"); !errors.Is(err, store.ErrPreconditionFailed) {
		t.Errorf("NodeBindAgentKey(other key) = %v, want ErrPreconditionFailed", err)
	}
	wantNode(t, s, n.ID, n)

	// NodeUpdate, with a stale or changed AgentKey, leaves the bound key.
	idle := n
	idle.State, idle.AgentKey = model.NodeIdle, ""
	if err := s.NodeUpdate(t.Context(), idle, model.NodePreparing); err != nil {
		t.Fatalf("NodeUpdate: %v", err)
	}
	idle.AgentKey = "key-a"
	wantNode(t, s, n.ID, idle)
	running := idle
	running.State, running.AgentKey = model.NodeRunning, "key-c"
	if err := s.NodeUpdate(t.Context(), running, model.NodeIdle); err != nil {
		t.Fatalf("NodeUpdate: %v", err)
	}
	running.AgentKey = "key-a"
	wantNode(t, s, n.ID, running)

	if err := s.NodeBindAgentKey(t.Context(), "nope", "key-a"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("NodeBindAgentKey(missing) = %v, want ErrNotFound", err)
	}
}

// testNodeUsage: a node created with its usage record accrues until it is
// deleted, ending at the time it left service; records outlive the node
// and are listed by workspace, compute and time range.
func testNodeUsage(t *testing.T, s store.Store) {
	w := setupWorkspace(t, s, "ws")
	w2 := setupWorkspace(t, s, "ws2")
	cpu, gpu := newCompute(w, "cpu").ID, newCompute(w, "gpu").ID
	other := newCompute(w2, "cpu").ID
	usage := func(n model.Node, ws model.Workspace, price float64) model.NodeUsage {
		return model.NodeUsage{NodeID: n.ID, ComputeID: n.ComputeID, WorkspaceID: ws.ID, VMSize: "Standard_D2_v2",
			Priority: model.PriorityLowPriority, PricePerHour: price, StartedAt: n.CreatedAt}
	}
	a := newNode("a", cpu, model.NodePreparing) // created at(20)
	b := newNode("b", gpu, model.NodePreparing)
	b.CreatedAt = at(30)
	c := newNode("c", other, model.NodePreparing)
	for _, x := range []struct {
		n  model.Node
		ws model.Workspace
		p  float64
	}{{a, w, 0.146}, {b, w, 3.06}, {c, w2, 1}} {
		if err := s.NodeCreateUsage(t.Context(), x.n, usage(x.n, x.ws, x.p)); err != nil {
			t.Fatalf("NodeCreateUsage(%s): %v", x.n.ID, err)
		}
	}
	wantNode(t, s, "a", a)
	if err := s.NodeCreateUsage(t.Context(), a, usage(a, w, 1)); !errors.Is(err, store.ErrConflict) {
		t.Errorf("NodeCreateUsage(existing) = %v, want ErrConflict", err)
	}
	// a leaves service at(50) and is removed.
	gone := a
	gone.State, gone.StateSince, gone.Reason = model.NodeLeaving, at(50), "scale down"
	if err := s.NodeUpdate(t.Context(), gone, model.NodePreparing); err != nil {
		t.Fatal(err)
	}
	if err := s.NodeDelete(t.Context(), "a"); err != nil {
		t.Fatal(err)
	}
	ua, ub := usage(a, w, 0.146), usage(b, w, 3.06)
	ua.EndedAt = at(50)
	tests := []struct {
		name     string
		compute  string
		from, to time.Time
		want     []model.NodeUsage
	}{
		{"all", "", time.Time{}, at(100), []model.NodeUsage{ua, ub}},
		{"one compute", strings.ToUpper(gpu), time.Time{}, at(100), []model.NodeUsage{ub}},
		{"after a ended", "", at(60), at(100), []model.NodeUsage{ub}},
		{"before b started", "", at(0), at(25), []model.NodeUsage{ua}},
		{"none", "", at(0), at(10), nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := s.UsageList(t.Context(), w.ID, tt.compute, tt.from, tt.to)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("UsageList (-want +got):\n%s", diff)
			}
		})
	}
}

// testNodeCountByCompute: a compute's nodes are counted by state, only
// that compute's, whatever the case of its ID, and the counts follow
// updates and deletes.
func testNodeCountByCompute(t *testing.T, s store.Store) {
	w := setupWorkspace(t, s, "ws")
	cpu := newCompute(w, "cpu").ID
	other := newCompute(w, "cpux").ID // its ID extends cpu's
	for _, n := range []struct {
		id      string
		compute string
		state   model.NodeState
	}{
		{"n-a", cpu, model.NodeIdle},
		{"n-b", cpu, model.NodeIdle},
		{"n-c", cpu, model.NodeRunning},
		{"n-d", cpu, model.NodePreparing},
		{"n-e", other, model.NodeIdle},
	} {
		mustCreateNode(t, s, newNode(n.id, n.compute, n.state))
	}
	leaving := newNode("n-a", cpu, model.NodeLeaving)
	if err := s.NodeUpdate(t.Context(), leaving, model.NodeIdle); err != nil {
		t.Fatalf("NodeUpdate: %v", err)
	}
	if err := s.NodeDelete(t.Context(), "n-d"); err != nil {
		t.Fatalf("NodeDelete: %v", err)
	}
	tests := []struct {
		name    string
		compute string
		want    map[model.NodeState]int
	}{
		{"by state", cpu, map[model.NodeState]int{model.NodeIdle: 1, model.NodeRunning: 1, model.NodeLeaving: 1}},
		{"compute ID case", strings.ToUpper(cpu), map[model.NodeState]int{model.NodeIdle: 1, model.NodeRunning: 1, model.NodeLeaving: 1}},
		{"other compute", other, map[model.NodeState]int{model.NodeIdle: 1}},
		{"no nodes", newCompute(w, "gpu").ID, map[model.NodeState]int{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := s.NodeCountByCompute(t.Context(), tt.compute)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("NodeCountByCompute (-want +got):\n%s", diff)
			}
		})
	}
}

// testNodeUsageSum: UsageSumByCompute gives, for a compute and a range,
// what summing UsageList's records in Go gives: the count, the cost
// (each record clamped to the range, nanoseconds included) and the price
// per hour of the records still open.
func testNodeUsageSum(t *testing.T, s store.Store) {
	w := setupWorkspace(t, s, "ws")
	cpu, gpu := newCompute(w, "cpu").ID, newCompute(w, "gpu").ID
	for _, x := range []struct {
		id       string
		compute  string
		price    float64
		start    int
		leftAt   int // 0: still in service
		leftNano int // extra nanoseconds in leftAt
	}{
		{"a", cpu, 0.146, 20, 50, 123456789},
		{"b", cpu, 3.06, 30, 0, 0},
		{"c", cpu, 1.5, 3600, 0, 0},
		{"d", cpu, 0.9, 40, 7300, 1},
		{"e", gpu, 10, 20, 0, 0},
	} {
		n := newNode(x.id, x.compute, model.NodePreparing)
		n.CreatedAt = at(x.start)
		u := model.NodeUsage{NodeID: n.ID, ComputeID: n.ComputeID, WorkspaceID: w.ID, VMSize: "Standard_D2_v2",
			Priority: model.PriorityDedicated, PricePerHour: x.price, StartedAt: n.CreatedAt}
		if err := s.NodeCreateUsage(t.Context(), n, u); err != nil {
			t.Fatalf("NodeCreateUsage(%s): %v", n.ID, err)
		}
		if x.leftAt == 0 {
			continue
		}
		gone := n
		gone.State, gone.StateSince = model.NodeLeaving, at(x.leftAt).Add(time.Duration(x.leftNano))
		if err := s.NodeUpdate(t.Context(), gone, model.NodePreparing); err != nil {
			t.Fatal(err)
		}
		if err := s.NodeDelete(t.Context(), n.ID); err != nil {
			t.Fatal(err)
		}
	}
	// A record copied with its end (as storecopy does) is summed alike.
	f := newNode("f", cpu, model.NodePreparing)
	f.CreatedAt = at(35)
	if err := s.NodeCreateUsage(t.Context(), f, model.NodeUsage{NodeID: f.ID, ComputeID: cpu, WorkspaceID: w.ID,
		VMSize: "Standard_D2_v2", Priority: model.PriorityDedicated, PricePerHour: 2.5, StartedAt: f.CreatedAt,
		EndedAt: at(70).Add(3)}); err != nil {
		t.Fatalf("NodeCreateUsage(f): %v", err)
	}
	tests := []struct {
		name     string
		compute  string
		from, to time.Time
	}{
		{"since creation", cpu, at(10), at(9000)},
		{"from zero", strings.ToUpper(cpu), time.Time{}, at(9000)},
		{"within a's span", cpu, at(25), at(45).Add(17)},
		{"after a ended", cpu, at(60), at(4000)},
		{"before any", cpu, at(0), at(10)},
		{"other compute", gpu, at(10), at(100)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			us, err := s.UsageList(t.Context(), w.ID, tt.compute, tt.from, tt.to)
			if err != nil {
				t.Fatal(err)
			}
			var want store.UsageSum
			for _, u := range us {
				want.Records++
				want.Cost += u.Cost(tt.from, tt.to)
				if u.EndedAt.IsZero() {
					want.OpenPricePerHour += u.PricePerHour
				}
			}
			got, err := s.UsageSumByCompute(t.Context(), tt.compute, tt.from, tt.to)
			if err != nil {
				t.Fatal(err)
			}
			// The database adds in its own order: equal to a part in 10^12.
			near := cmpopts.EquateApprox(1e-12, 0)
			if diff := cmp.Diff(want, got, near); diff != "" {
				t.Errorf("UsageSumByCompute (-want +got):\n%s", diff)
			}
		})
	}
}

// testNodeSSHPortConflict checks that no two nodes hold one SSH port: a
// create that names a held port is refused, with ErrConflict, and writes
// nothing (neither the node nor its usage record). Port 0 means none and
// may repeat; a deleted node's port is free again.
func testNodeSSHPortConflict(t *testing.T, s store.Store) {
	c := stubCompute
	holder := newNode("holder", c.ID, model.NodeIdle)
	holder.SSHPort = 50123
	mustCreateNode(t, s, holder)

	dup := newNode("dup", c.ID, model.NodePreparing)
	dup.SSHPort = holder.SSHPort
	if err := s.NodeCreate(t.Context(), dup); !errors.Is(err, store.ErrConflict) {
		t.Errorf("NodeCreate(port held) error = %v, want ErrConflict", err)
	}
	wantNoNode(t, s, dup.ID)

	u := model.NodeUsage{NodeID: dup.ID, ComputeID: c.ID, WorkspaceID: c.WorkspaceID, VMSize: "Standard_D2_v2",
		Priority: model.PriorityDedicated, PricePerHour: 1, StartedAt: dup.CreatedAt}
	if err := s.NodeCreateUsage(t.Context(), dup, u); !errors.Is(err, store.ErrConflict) {
		t.Errorf("NodeCreateUsage(port held) error = %v, want ErrConflict", err)
	}
	wantNoNode(t, s, dup.ID)
	us, err := s.UsageList(t.Context(), c.WorkspaceID, "", at(0), at(1000))
	if err != nil {
		t.Fatalf("UsageList: %v", err)
	}
	for _, u := range us {
		if u.NodeID == dup.ID {
			t.Errorf("UsageList has a record of node %s, whose create was refused", dup.ID)
		}
	}
	wantNode(t, s, holder.ID, holder)

	// Nor may an update take a held port.
	other := newNode("other", c.ID, model.NodeIdle)
	mustCreateNode(t, s, other)
	moved := other
	moved.SSHPort = holder.SSHPort
	if err := s.NodeUpdate(t.Context(), moved, other.State); !errors.Is(err, store.ErrConflict) {
		t.Errorf("NodeUpdate(port held) error = %v, want ErrConflict", err)
	}
	wantNode(t, s, other.ID, other)

	for _, id := range []string{"bare-1", "bare-2"} {
		mustCreateNode(t, s, model.Node{ID: id, ComputeID: c.ID, State: model.NodePreparing})
	}

	if err := s.NodeDelete(t.Context(), holder.ID); err != nil {
		t.Fatalf("NodeDelete(%s): %v", holder.ID, err)
	}
	mustCreateNode(t, s, dup)
	wantNode(t, s, dup.ID, dup)
}

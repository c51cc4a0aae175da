package autoscale

import (
	"slices"
	"testing"

	"github.com/google/go-cmp/cmp"

	"kumo/internal/model"
	"kumo/internal/provider/fake"
)

// TestSSHPortsLowestFree checks that new nodes get the lowest SSH ports no
// node holds, across clusters, that a removed node's port goes to the next
// new node, and that an autoscaler started afresh (a restart) reads the
// ports in use from the store.
func TestSSHPortsLowestFree(t *testing.T) {
	e := newEnv(t, fake.Config{})
	a := e.compute("a", model.ScaleSettings{MaxNodes: 3})
	b := e.compute("b", model.ScaleSettings{MaxNodes: 1})
	e.jobs(a, 3)
	e.reconcile(a)
	e.jobs(b, 1)
	e.reconcile(b)
	if diff := cmp.Diff([]int{50000, 50001, 50002, 50003}, e.ports()); diff != "" {
		t.Fatalf("ports after scale-up (-want +got):\n%s", diff)
	}

	// One of a's nodes leaves (scaled down); the next new node takes its
	// port.
	nodes, err := e.st.NodeListByCompute(t.Context(), a.ID)
	if err != nil {
		t.Fatal(err)
	}
	var gone model.Node
	for _, n := range nodes {
		if n.SSHPort == 50001 {
			gone = n
		}
	}
	left := gone
	left.State, left.StateSince = model.NodeLeaving, e.clock.Now()
	if err := e.st.NodeUpdate(t.Context(), left, gone.State); err != nil {
		t.Fatal(err)
	}
	e.reconcile(a) // removes the leaving node and replaces it
	if diff := cmp.Diff([]int{50000, 50001, 50002, 50003}, e.ports()); diff != "" {
		t.Errorf("ports after a replacement (-want +got):\n%s", diff)
	}
	if _, err := e.st.NodeGet(t.Context(), gone.ID); err == nil {
		t.Errorf("node %s still stored", gone.ID)
	}

	// A restarted control plane's autoscaler reads the ports in use.
	e.a = New(e.a.cfg)
	e.patch(b, model.ScaleSettings{MaxNodes: 2})
	e.jobs(b, 1)
	e.reconcile(b)
	if diff := cmp.Diff([]int{50000, 50001, 50002, 50003, 50004}, e.ports()); diff != "" {
		t.Errorf("ports after a restart (-want +got):\n%s", diff)
	}
}

// ports returns the SSH ports of every stored node, sorted.
func (e *env) ports() []int {
	e.t.Helper()
	nodes, err := e.st.NodeList(e.t.Context())
	if err != nil {
		e.t.Fatal(err)
	}
	var out []int
	for _, n := range nodes {
		out = append(out, n.SSHPort)
	}
	slices.Sort(out)
	return out
}

// TestSSHPortTakenElsewhere checks that a port the autoscaler believes free
// but another control plane's node holds (the store refuses it) is not
// handed out twice: the autoscaler reads the ports again and takes the next
// free one.
func TestSSHPortTakenElsewhere(t *testing.T) {
	e := newEnv(t, fake.Config{})
	c := e.compute("a", model.ScaleSettings{MaxNodes: 3})
	e.jobs(c, 1)
	e.reconcile(c) // seeds the hint: 50000 held
	other := model.Node{ID: "elsewhere-1", ComputeID: wsID + "/computes/elsewhere", State: model.NodePreparing, SSHPort: 50001,
		CreatedAt: e.clock.Now(), StateSince: e.clock.Now()}
	if err := e.st.NodeCreate(t.Context(), other); err != nil {
		t.Fatal(err)
	}
	e.jobs(c, 1)
	e.reconcile(c)
	if diff := cmp.Diff([]int{50000, 50001, 50002}, e.ports()); diff != "" {
		t.Errorf("ports (-want +got):\n%s", diff)
	}
}

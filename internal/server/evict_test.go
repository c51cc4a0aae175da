package server_test

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"kumo/api"
	"kumo/internal/model"
	"kumo/internal/provider"
)

// fakeEvicter records simulateEviction's calls; notPreemptible IDs are
// refused as a provider refuses instances created Dedicated.
type fakeEvicter struct {
	mu             sync.Mutex
	calls          [][]string
	notPreemptible map[string]bool
}

func (f *fakeEvicter) SimulateEviction(ctx context.Context, location string, ids []string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, ids)
	for _, id := range ids {
		if f.notPreemptible[id] {
			return fmt.Errorf("local provider: %s: %w", id, provider.ErrNotPreemptible)
		}
	}
	return nil
}

func TestSimulateEviction(t *testing.T) {
	h := newHarness(t)
	for name, prio := range map[string]string{"low": "LowPriority", "ded": "Dedicated"} {
		body := computeBody("Standard_D2_v2", 0, 2)
		body["properties"].(map[string]any)["properties"].(map[string]any)["vmPriority"] = prio
		h.mustDo("PUT", wsBase+"/computes/"+name, body, model.RoleContributor, 201, nil)
	}
	h.reconcile()
	now := time.Now().UTC()
	for _, n := range []struct {
		id, compute string
		state       model.NodeState
	}{{"low-1", "low", model.NodeRunning}, {"low-2", "low", model.NodeIdle}, {"low-3", "low", model.NodePreempted}, {"ded-1", "ded", model.NodeIdle}} {
		if err := h.st.NodeCreate(context.Background(), model.Node{ID: n.id, ComputeID: wsBase + "/computes/" + n.compute,
			State: n.state, CreatedAt: now, StateSince: now}); err != nil {
			t.Fatal(err)
		}
	}
	tests := []struct {
		name      string
		path      string
		role      model.Role
		want      int
		wantCode  string
		wantNodes []string // asked of the evicter
	}{
		{"every live node", "/computes/low/simulateEviction", model.RoleContributor, 202, "", []string{"low-1", "low-2"}},
		{"one node", "/computes/low/simulateEviction?nodeId=low-2", model.RoleContributor, 202, "", []string{"low-2"}},
		{"reader", "/computes/low/simulateEviction", model.RoleReader, 403, api.CodeAuthorizationFailed, nil},
		{"dedicated", "/computes/ded/simulateEviction", model.RoleContributor, 409, api.CodeOperationNotAllowed, nil},
		{"dedicated node", "/computes/ded/simulateEviction?nodeId=ded-1", model.RoleContributor, 409, api.CodeOperationNotAllowed, nil},
		{"unknown node", "/computes/low/simulateEviction?nodeId=nope", model.RoleContributor, 404, api.CodeResourceNotFound, nil},
		{"gone node", "/computes/low/simulateEviction?nodeId=low-3", model.RoleContributor, 404, api.CodeResourceNotFound, nil},
		{"unknown compute", "/computes/nope/simulateEviction", model.RoleContributor, 404, api.CodeResourceNotFound, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h.ev.calls = nil
			status, body, _ := h.do("POST", wsBase+tt.path, nil, tt.role)
			if status != tt.want || (tt.wantCode != "" && !strings.Contains(string(body), `"code":"`+tt.wantCode+`"`)) {
				t.Fatalf("status %d %s, want %d %s", status, body, tt.want, tt.wantCode)
			}
			var want [][]string
			if tt.wantNodes != nil {
				want = [][]string{tt.wantNodes}
			}
			if diff := cmp.Diff(want, h.ev.calls); diff != "" {
				t.Errorf("evicter calls (-want +got):\n%s", diff)
			}
		})
	}
	h.ev.notPreemptible = map[string]bool{"low-1": true}
	if status, body, _ := h.do("POST", wsBase+"/computes/low/simulateEviction", nil, model.RoleContributor); status != http.StatusConflict ||
		!strings.Contains(string(body), api.CodeOperationNotAllowed) {
		t.Errorf("a node made before the cluster was LowPriority: status %d %s, want 409", status, body)
	}
}

// A queued job whose last attempt was evicted says so, with what the retry
// waits for, and gets an estimated start from the cluster's boot times.
func TestEvictedWaitingToRetry(t *testing.T) {
	h := newHarness(t)
	body := computeBody("Standard_D2_v2", 0, 2)
	body["properties"].(map[string]any)["properties"].(map[string]any)["vmPriority"] = "LowPriority"
	h.mustDo("PUT", wsBase+"/computes/spot", body, model.RoleContributor, 201, nil)
	h.reconcile()
	putJob(h, "j1", &api.JobProperties{Command: "train", ComputeID: "spot"})
	ctx := context.Background()
	j, err := h.st.JobGet(ctx, wsBase+"/jobs/j1")
	if err != nil {
		t.Fatal(err)
	}
	// Attempt 1 ran on n1 (booted in 8s) and was evicted; n1 is gone.
	start := time.Now().UTC().Add(-time.Minute)
	if err := h.st.NodeCreate(ctx, model.Node{ID: "n2", ComputeID: j.ComputeID, State: model.NodeRunning, JobID: "other",
		CreatedAt: start, ReadyAt: start.Add(8 * time.Second), StateSince: start}); err != nil {
		t.Fatal(err)
	}
	from := j.Status
	if err := j.Assign(&model.Node{ID: "n1", State: model.NodeIdle}, start); err != nil {
		t.Fatal(err)
	}
	j.Lose(model.ReasonPreempted, "node n1: preempted", start.Add(time.Second))
	if err := h.st.JobUpdate(ctx, j, from, nil, ""); err != nil {
		t.Fatal(err)
	}
	var got api.JobResource
	h.mustDo("GET", wsBase+"/jobs/j1", nil, model.RoleReader, 200, &got)
	p := got.Properties
	if r := p.PendingReason; r == nil || r.Code != api.PendingEvictedWaitingToRetry || r.Details["waitingFor"] != api.PendingWaitingForNodes ||
		!strings.Contains(r.Message, "evicted from node n1") {
		t.Errorf("pending reason = %+v, want EvictedWaitingToRetry waiting for nodes", r)
	}
	est, err := time.Parse(api.TimeFormat, p.EstimatedStartTime)
	if d := time.Until(est); err != nil || d < 5*time.Second || d > 9*time.Second {
		t.Errorf("estimated start %q (in %v), want about one boot (8s) from now", p.EstimatedStartTime, d)
	}
}

func TestJobMaxRetries(t *testing.T) {
	h := newHarness(t)
	putJob(h, "retried", &api.JobProperties{Command: "true", Kumo: &api.KumoJobSettings{MaxRetries: 3}})
	var got api.JobResource
	h.mustDo("GET", wsBase+"/jobs/retried", nil, model.RoleReader, 200, &got)
	if k := got.Properties.Kumo; k == nil || k.MaxRetries != 3 {
		t.Errorf("kumo settings = %+v, want maxRetries 3", k)
	}
	if j, err := h.st.JobGet(context.Background(), wsBase+"/jobs/retried"); err != nil || j.MaxRetries != 3 {
		t.Errorf("stored MaxRetries = %d, %v; want 3", j.MaxRetries, err)
	}
	for _, n := range []int{-1, model.MaxUserRetries + 1} {
		status, body, _ := h.do("PUT", wsBase+"/jobs/bad", api.JobResource{Properties: &api.JobProperties{JobType: "Command",
			Command: "true", ComputeID: "local", Kumo: &api.KumoJobSettings{MaxRetries: n}}}, model.RoleContributor)
		if status != http.StatusBadRequest || !strings.Contains(string(body), "maxRetries") {
			t.Errorf("maxRetries %d: status %d %s, want 400", n, status, body)
		}
	}
}

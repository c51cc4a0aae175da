package server_test

import (
	"context"
	"net/http"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"kumo/api"
	"kumo/internal/model"
)

// TestGangJobAccepted stores a multi-node job's node count and
// distribution and gives them back.
func TestGangJobAccepted(t *testing.T) {
	h := newHarness(t)
	h.mustDo("PUT", wsBase+"/computes/cpu", computeBody("Standard_D2_v2", 0, 3), model.RoleContributor, 201, nil)
	h.reconcile()
	tests := []struct {
		name string
		n    int
		dist *api.Distribution
		want *model.Distribution
	}{
		{"pytorch", 2, &api.Distribution{DistributionType: "PyTorch", ProcessCountPerInstance: 2},
			&model.Distribution{Type: model.DistributionPyTorch, ProcessCountPerInstance: 2}},
		{"mpi", 3, &api.Distribution{DistributionType: "Mpi", ProcessCountPerInstance: 4},
			&model.Distribution{Type: model.DistributionMpi, ProcessCountPerInstance: 4}},
		{"tensorflow", 2, &api.Distribution{DistributionType: "TensorFlow", WorkerCount: 2, ParameterServerCount: 2},
			&model.Distribution{Type: model.DistributionTensorFlow, WorkerCount: 2, ParameterServerCount: 2}},
		{"no distribution", 3, nil, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			putJob(h, tt.name[:2], &api.JobProperties{Command: "true", ComputeID: "cpu",
				Resources: &api.JobResourceConfig{InstanceCount: tt.n}, Distribution: tt.dist})
			j, err := h.st.JobGet(context.Background(), wsBase+"/jobs/"+tt.name[:2])
			if err != nil {
				t.Fatal(err)
			}
			if j.InstanceCount != tt.n || !cmp.Equal(j.Distribution, tt.want) {
				t.Errorf("stored %d nodes, %+v; want %d, %+v", j.InstanceCount, j.Distribution, tt.n, tt.want)
			}
			if len(j.Warnings) != 0 {
				t.Errorf("warnings = %q, want none", j.Warnings)
			}
			var got api.JobResource
			h.mustDo("GET", wsBase+"/jobs/"+tt.name[:2], nil, model.RoleReader, 200, &got)
			if got.Properties.Resources.InstanceCount != tt.n || !cmp.Equal(got.Properties.Distribution, tt.dist) {
				t.Errorf("API gives %+v, %+v; want %d, %+v", got.Properties.Resources, got.Properties.Distribution, tt.n, tt.dist)
			}
			if r := got.Properties.PendingReason; r == nil || r.Code != api.PendingWaitingForGang || !strings.Contains(r.Message, "0 of") {
				t.Errorf("pending reason = %+v, want WaitingForGang with 0 of %d nodes ready", r, tt.n)
			}
		})
	}
}

// TestGangJobRefused refuses node counts a compute can never give and
// distributions that do not fit, and stores nothing.
func TestGangJobRefused(t *testing.T) {
	h := newHarness(t)
	h.mustDo("PUT", wsBase+"/computes/cpu", computeBody("Standard_D2_v2", 0, 3), model.RoleContributor, 201, nil)
	h.reconcile()
	tests := []struct {
		name    string
		compute string
		n       int
		dist    *api.Distribution
		want    string
	}{
		{"more than max", "cpu", 4, nil, "instanceCount"},
		{"negative", "cpu", -1, nil, "instanceCount"},
		{"local is one host", "local", 2, nil, "instanceCount"},
		{"unknown type", "cpu", 2, &api.Distribution{DistributionType: "Ray"}, "distributionType"},
		{"too many processes", "cpu", 2, &api.Distribution{DistributionType: "PyTorch", ProcessCountPerInstance: model.MaxProcessesPerInstance + 1}, "processCountPerInstance"},
		{"workers on pytorch", "cpu", 2, &api.Distribution{DistributionType: "PyTorch", WorkerCount: 2}, "TensorFlow"},
		{"uneven tensorflow", "cpu", 2, &api.Distribution{DistributionType: "TensorFlow", WorkerCount: 3}, "evenly"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			status, body, _ := h.do("PUT", wsBase+"/jobs/bad", api.JobResource{Properties: &api.JobProperties{JobType: "Command",
				Command: "true", ComputeID: tt.compute, Resources: &api.JobResourceConfig{InstanceCount: tt.n}, Distribution: tt.dist}}, model.RoleContributor)
			if status != http.StatusBadRequest || !strings.Contains(string(body), tt.want) || !strings.Contains(string(body), `"error"`) {
				t.Errorf("status %d %s, want 400 naming %s", status, body, tt.want)
			}
			if _, err := h.st.JobGet(context.Background(), wsBase+"/jobs/bad"); err == nil {
				t.Error("the refused job was stored")
			}
		})
	}
}

package client

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"kumo/api"
)

// createAndWait serves a PUT answered with operation states ops and then
// compute GETs answered with states, runs CreateComputeTarget and
// WaitForCompletion, and returns what was printed and the error.
func createAndWait(t *testing.T, ctx context.Context, ops []api.OperationStatus, states []api.ComputeResource) (string, error) {
	t.Helper()
	f := newFakeARM(t)
	opSeq := &sequence[api.OperationStatus]{vals: ops}
	resSeq := &sequence[api.ComputeResource]{vals: states}
	f.mux.HandleFunc("PUT "+testWS+"/computes/cpu-cluster", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Azure-AsyncOperation", f.srv.URL+"/subscriptions/"+testSub+"/providers/Microsoft.MachineLearningServices/locations/local/computeOperationsStatus/op1?api-version="+api.DefaultAPIVersion)
		w.Header().Set("Retry-After-Ms", "1")
		writeJSON(w, http.StatusCreated, cluster("cpu-cluster", api.ProvisioningCreating, 0, 2))
	})
	f.mux.HandleFunc("GET /subscriptions/"+testSub+"/providers/Microsoft.MachineLearningServices/locations/local/computeOperationsStatus/op1", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, opSeq.next())
	})
	f.mux.HandleFunc("GET "+testWS+"/computes/cpu-cluster", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, resSeq.next())
	})
	ct, err := f.workspace().CreateComputeTarget(ctx, "cpu-cluster", AmlComputeProvisioningConfiguration{MinNodes: 2, MaxNodes: 4})
	if err != nil {
		t.Fatalf("CreateComputeTarget: %v", err)
	}
	var out bytes.Buffer
	err = ct.WaitForCompletion(ctx, &out)
	return out.String(), err
}

func TestWaitForCompletion(t *testing.T) {
	inProgress := api.OperationStatus{Status: api.OperationInProgress}
	succeeded := api.OperationStatus{Status: api.OperationSucceeded}
	failedCluster := cluster("cpu-cluster", api.ProvisioningFailed, 0, 2)
	failedCluster.Properties.ProvisioningErrors = []api.ErrorResponse{{Error: &api.ErrorDetail{Code: "QuotaExceeded", Message: "no cores"}}}
	erroring := cluster("cpu-cluster", api.ProvisioningSucceeded, 1, 2)
	erroring.Properties.Properties.Errors = []api.ErrorResponse{{Error: &api.ErrorDetail{Code: "NodeUnusable", Message: "disk full"}}}

	tests := []struct {
		name    string
		ops     []api.OperationStatus
		states  []api.ComputeResource
		want    string
		wantErr string
	}{
		{
			name: "creating then two nodes",
			ops:  []api.OperationStatus{inProgress, inProgress, succeeded},
			states: []api.ComputeResource{
				cluster("cpu-cluster", api.ProvisioningSucceeded, 0, 2),
				cluster("cpu-cluster", api.ProvisioningSucceeded, 1, 2),
				cluster("cpu-cluster", api.ProvisioningSucceeded, 2, 2),
			},
			want: "InProgress..\n" +
				"SucceededProvisioning operation finished, operation \"Succeeded\"\n" +
				"Succeeded.Waiting for cluster to scale. 1 out of 2 nodes ready.\n" +
				".\n" +
				"AmlCompute wait for completion finished\n\n" +
				"Minimum number of nodes requested have been provisioned\n",
		},
		{
			name: "already there",
			ops:  []api.OperationStatus{succeeded},
			states: []api.ComputeResource{
				cluster("cpu-cluster", api.ProvisioningSucceeded, 2, 2),
			},
			want: "SucceededProvisioning operation finished, operation \"Succeeded\"\n" +
				"Succeeded\n" +
				"AmlCompute wait for completion finished\n\n" +
				"Minimum number of nodes requested have been provisioned\n",
		},
		{
			name: "operation failed",
			ops: []api.OperationStatus{inProgress, {Status: api.OperationFailed, Error: &api.OperationStatusError{
				Code: "QuotaExceeded", Message: "one node needs 2 vCPUs, the quota is 0"}}},
			states:  []api.ComputeResource{failedCluster},
			want:    "InProgress.\nFailedProvisioning operation finished, operation \"Failed\"\n",
			wantErr: "QuotaExceeded: one node needs 2 vCPUs, the quota is 0",
		},
		{
			name:   "cluster failed",
			ops:    []api.OperationStatus{succeeded},
			states: []api.ComputeResource{cluster("cpu-cluster", api.ProvisioningCreating, 0, 2), failedCluster},
			want: "SucceededProvisioning operation finished, operation \"Succeeded\"\n" +
				"Creating\nFailed\n" +
				"AmlCompute wait for completion finished\n\n" +
				"Terminal state of \"Failed\" has been reached\n\n" +
				"Provisioning errors: QuotaExceeded: no cores\n\n",
			wantErr: "QuotaExceeded: no cores",
		},
		{
			name:   "cluster errors",
			ops:    []api.OperationStatus{succeeded},
			states: []api.ComputeResource{erroring},
			want: "SucceededProvisioning operation finished, operation \"Succeeded\"\n" +
				"Succeeded\n" +
				"AmlCompute wait for completion finished\n\n" +
				"There were errors reported from AmlCompute:\nNodeUnusable: disk full\n",
			wantErr: "NodeUnusable: disk full",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := createAndWait(t, context.Background(), tt.ops, tt.states)
			if got != tt.want {
				t.Errorf("output:\n%s\nwant:\n%s", got, tt.want)
			}
			if tt.wantErr == "" && err != nil || tt.wantErr != "" && (err == nil || err.Error() != tt.wantErr) {
				t.Errorf("WaitForCompletion error = %v, want %q", err, tt.wantErr)
			}
		})
	}
}

func TestWaitForCompletionTimeout(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	got, err := createAndWait(t, ctx,
		[]api.OperationStatus{{Status: api.OperationSucceeded}},
		[]api.ComputeResource{cluster("cpu-cluster", api.ProvisioningSucceeded, 1, 2)})
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("error = %v, want DeadlineExceeded", err)
	}
	if !containsAll(got, "Waiting for cluster to scale. 1 out of 2 nodes ready.\n",
		"Wait timeout has been reached\n",
		`Current provisioning state of AmlCompute is "Succeeded" and current node count is "1"`) {
		t.Errorf("output:\n%s\nlacks the timeout report", got)
	}
	if n := strings.Count(got, "Waiting for cluster"); n != 1 {
		t.Errorf("printed the waiting line %d times, want once", n)
	}
}

func TestWaitForCompletionSilent(t *testing.T) {
	f := newFakeARM(t)
	f.mux.HandleFunc("GET "+testWS+"/computes/c1", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, cluster("c1", api.ProvisioningSucceeded, 0, 0))
	})
	ct := &ComputeTarget{ws: f.workspace(), name: "c1"}
	if err := ct.WaitForCompletion(context.Background(), nil); err != nil {
		t.Errorf("WaitForCompletion(nil writer): %v", err)
	}
	st, err := ct.Status(context.Background())
	if err != nil {
		t.Fatalf("Status: %v", err)
	}
	want := ScaleSettings{MinNodes: 0, MaxNodes: 4, IdleSecondsBeforeScaledown: 1800}
	if st.ScaleSettings != want || st.VMSize != "STANDARD_D2_V2" || st.VMPriority != api.PriorityDedicated {
		t.Errorf("Status = %+v", st)
	}
}

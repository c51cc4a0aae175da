// Package storetest is the conformance suite every store.Store backend must
// pass. A backend's tests call Run with a function that opens a fresh,
// empty store:
//
//	func TestConformance(t *testing.T) {
//		storetest.Run(t, func(t *testing.T) store.Store {
//			s, err := sqlite.Open(t.Context(), filepath.Join(t.TempDir(), "kumo.db"))
//			if err != nil {
//				t.Fatal(err)
//			}
//			t.Cleanup(func() { s.Close() })
//			return s
//		})
//	}
//
// A behaviour the suite does not check is not part of the contract; add a
// case here before relying on it.
package storetest

import (
	"testing"
	"time"

	"kumo/internal/model"
	"kumo/internal/store"
)

// Run runs the whole suite, one subtest per behaviour, each on a store that
// open returns fresh and empty. open registers the store's cleanup itself.
func Run(t *testing.T, open func(t *testing.T) store.Store) {
	t.Helper()
	groups := []struct {
		name  string
		tests []test
	}{
		{"Workspace", workspaceTests},
		{"Compute", computeTests},
		{"Operation", operationTests},
		{"Token", tokenTests},
		{"Quota", quotaTests},
		{"Job", jobTests},
		{"JobBatch", jobBatchTests},
		{"Node", nodeTests},
		{"Event", eventTests},
		{"ComputeStatus", computeStatusTests},
		{"NodePresence", presenceTests},
		{"Lease", leaseTests},
	}
	for _, g := range groups {
		t.Run(g.name, func(t *testing.T) {
			for _, tt := range g.tests {
				t.Run(tt.name, func(t *testing.T) {
					tt.run(t, open(t))
				})
			}
		})
	}
}

// test is one conformance case.
type test struct {
	name string
	run  func(t *testing.T, s store.Store)
}

// t0 has nanoseconds, so a backend that rounds timestamps fails.
var t0 = time.Date(2025, 3, 4, 5, 6, 7, 123456789, time.UTC)

// at returns t0 plus n seconds and n nanoseconds.
func at(n int) time.Time {
	return t0.Add(time.Duration(n)*time.Second + time.Duration(n))
}

const provider = "/providers/Microsoft.MachineLearningServices/workspaces/"

// newWorkspace returns a workspace with every field set.
func newWorkspace(sub, rg, name string) model.Workspace {
	return model.Workspace{
		ID:            "/subscriptions/" + sub + "/resourceGroups/" + rg + provider + name,
		Subscription:  sub,
		ResourceGroup: rg,
		Name:          name,
		Location:      "local",
		Description:   "workspace " + name,
		Tags:          map[string]string{"team": "ml", "Env": "Dev"},
		CreatedAt:     at(1),
		ModifiedAt:    at(2),
		CreatedBy:     "alice",
	}
}

// newCompute returns a compute of ws with every field set.
func newCompute(ws model.Workspace, name string) model.Compute {
	return model.Compute{
		ID:          ws.ID + "/computes/" + name,
		WorkspaceID: ws.ID,
		Name:        name,
		Location:    ws.Location,
		Description: "compute " + name,
		Tags:        map[string]string{"owner": "bob"},
		VMSize:      "Standard_DS3_v2",
		Priority:    model.PriorityDedicated,
		Scale:       model.ScaleSettings{MinNodes: 1, MaxNodes: 4, IdleTime: 90*time.Second + 7},
		Credentials: model.Credentials{
			AdminUser:    "azureuser",
			PasswordHash: "$argon2id$v=19$m=65536,t=3,p=4$c2FsdA$aGFzaA",
			SSHPublicKey: "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIExample user@host",
		},
		RemoteLogin: "Enabled",
		State:       model.StateCreating,
		OperationID: "op-" + name,
		ETag:        `W/"1"`,
		CreatedAt:   at(3),
		ModifiedAt:  at(4),
		CreatedBy:   "alice",
		ModifiedBy:  "alice",
	}
}

// newOperation returns an in-progress operation of kind on c.
func newOperation(id string, c model.Compute, kind model.OperationKind) model.Operation {
	return model.Operation{
		ID:        id,
		Location:  c.Location,
		Kind:      kind,
		ComputeID: c.ID,
		Status:    model.OpInProgress,
		StartedAt: at(5),
	}
}

package storecopy

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"kumo/internal/model"
	"kumo/internal/store"
	"kumo/internal/store/postgres"
	"kumo/internal/store/postgres/pgtest"
	"kumo/internal/store/sqlite"
)

var t0 = time.Date(2025, 3, 4, 5, 6, 7, 123456789, time.UTC)

const wsID = "/subscriptions/s1/resourceGroups/RG/providers/Microsoft.MachineLearningServices/workspaces/Team"

// fill writes a row to every table of st and returns what it wrote.
func fill(t *testing.T, st store.Store) state {
	t.Helper()
	ctx := t.Context()
	exit := 3
	s := state{
		ws: model.Workspace{ID: wsID, Subscription: "s1", ResourceGroup: "RG", Name: "Team", Location: "local",
			Description: "d", Tags: map[string]string{"a": "b"}, CreatedAt: t0, ModifiedAt: t0, CreatedBy: "alice"},
		compute: model.Compute{ID: wsID + "/computes/Gpu", WorkspaceID: wsID, Name: "Gpu", Location: "local",
			VMSize: "Standard_DS3_v2", Priority: model.PriorityDedicated,
			Scale:       model.ScaleSettings{MinNodes: 0, MaxNodes: 2, IdleTime: time.Minute + 1},
			Credentials: model.Credentials{AdminUser: "azureuser", PasswordHash: "$argon2id$x"}, RemoteLogin: "Enabled",
			State: model.StateSucceeded, OperationID: "op1", ETag: `W/"1"`, CreatedAt: t0, ModifiedAt: t0, CreatedBy: "alice", ModifiedBy: "alice"},
		op: model.Operation{ID: "op1", Location: "local", Kind: model.OperationKind("Create"), ComputeID: wsID + "/computes/Gpu",
			Status: model.OpSucceeded, StartedAt: t0, EndedAt: t0.Add(time.Second)},
		quota: model.Quota{WorkspaceID: wsID, Family: "standardDSv2Family", Limit: 48},
		tokens: []model.Token{
			{ID: "kt1", Name: "owner", Role: model.RoleOwner, Hash: "h1", CreatedAt: t0},
			{ID: "kt2", Name: "ci", Role: model.RoleContributor, Hash: "h2", CreatedAt: t0.Add(time.Second), RevokedAt: t0.Add(2 * time.Second)},
		},
		node: model.Node{ID: "node-1", ComputeID: wsID + "/computes/Gpu", State: model.NodeState("Idle"), CredentialHash: "ch",
			Address: "127.0.0.1", SSHPort: 50022, CreatedAt: t0, StateSince: t0.Add(time.Second), Attempts: 1, HostKey: "ssh-ed25519 AAAA",
			ReadyAt: t0.Add(time.Second)},
		usage: model.NodeUsage{NodeID: "node-1", ComputeID: wsID + "/computes/Gpu", WorkspaceID: wsID, VMSize: "Standard_DS3_v2",
			Priority: model.PriorityDedicated, PricePerHour: 0.293, StartedAt: t0},
		job: model.Job{ID: wsID + "/jobs/Train", WorkspaceID: wsID, Name: "Train", RunID: "run-1", ComputeID: wsID + "/computes/Gpu",
			Command: "echo hi", Env: map[string]string{"K": "V"}, InstanceCount: 1, Status: model.JobStatus("Completed"),
			NodeID: "node-1", Attempts: 1, ExitCode: &exit, CancelRequested: true, Seq: 7, CreatedAt: t0, StartedAt: t0, EndedAt: t0,
			CreatedBy: "alice", CreatedByToken: "kt1", Warnings: []string{"w"},
			History: []model.Attempt{{Number: 1, NodeID: "node-1", StartedAt: t0, EndedAt: t0, ExitCode: &exit}}},
		events: []model.Event{
			{ComputeID: wsID + "/computes/Gpu", Time: t0, Kind: "ScaleUp", Message: "first"},
			{ComputeID: wsID + "/computes/Gpu", Time: t0, Kind: "ScaleUp", Message: "second, same time"},
		},
		status: model.ComputeStatus{ComputeID: wsID + "/computes/Gpu", TargetNodes: 1, Allocation: "Steady", AllocationSince: t0,
			Errors: []model.Error{{Code: "E", Message: "m"}}},
	}
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(st.WorkspaceCreate(ctx, s.ws))
	must(st.ComputeCreate(ctx, s.compute, s.op))
	must(st.QuotaSet(ctx, s.quota))
	for _, tk := range s.tokens {
		must(st.TokenCreate(ctx, tk))
	}
	must(st.NodeCreateUsage(ctx, s.node, s.usage))
	must(st.JobCreate(ctx, s.job))
	for _, e := range s.events {
		must(st.EventAppend(ctx, e))
	}
	must(st.ComputeStatusSet(ctx, s.status))
	return s
}

// state is one row of each table, as read back through the Store.
type state struct {
	ws      model.Workspace
	compute model.Compute
	op      model.Operation
	quota   model.Quota
	tokens  []model.Token
	node    model.Node
	usage   model.NodeUsage
	job     model.Job
	events  []model.Event
	status  model.ComputeStatus
}

// read reads back from st what fill wrote.
func read(t *testing.T, st store.Store) state {
	t.Helper()
	ctx := context.Background()
	var s state
	var err error
	check := func(what string, e error) {
		t.Helper()
		if e != nil {
			t.Fatalf("%s: %v", what, e)
		}
	}
	s.ws, err = st.WorkspaceGet(ctx, wsID)
	check("WorkspaceGet", err)
	s.compute, err = st.ComputeGet(ctx, wsID+"/computes/gpu")
	check("ComputeGet", err)
	s.op, err = st.OperationGet(ctx, "op1")
	check("OperationGet", err)
	qs, err := st.QuotaList(ctx, wsID)
	check("QuotaList", err)
	if len(qs) == 1 {
		s.quota = qs[0]
	}
	s.tokens, err = st.TokenList(ctx)
	check("TokenList", err)
	s.node, err = st.NodeGet(ctx, "node-1")
	check("NodeGet", err)
	us, err := st.UsageList(ctx, wsID, "", t0.Add(-time.Hour), t0.Add(time.Hour))
	check("UsageList", err)
	if len(us) == 1 {
		s.usage = us[0]
	}
	s.job, err = st.JobGetByRunID(ctx, "run-1")
	check("JobGetByRunID", err)
	s.events, err = st.EventList(ctx, wsID+"/computes/Gpu", 0)
	check("EventList", err)
	s.status, err = st.ComputeStatusGet(ctx, wsID+"/computes/Gpu")
	check("ComputeStatusGet", err)
	return s
}

var allowState = cmp.AllowUnexported(state{})

func TestSQLiteToPostgres(t *testing.T) {
	ctx := t.Context()
	path := filepath.Join(t.TempDir(), "kumo.db")
	src, err := sqlite.Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	want := fill(t, src)
	if diff := cmp.Diff(want, read(t, src), allowState); diff != "" {
		t.Fatalf("sqlite read back (-want +got):\n%s", diff)
	}
	// The source stays open, as a running control plane's would.
	defer src.Close()
	// A Seq counter ahead of the largest Seq stored (the job moved to Seq
	// 9 and back to 7) stays ahead after the copy: the counter moves with
	// the store.
	for _, seq := range []int64{9, 7} {
		j := want.job
		j.Seq = seq
		if err := src.JobUpdate(ctx, j, j.Status, nil, ""); err != nil {
			t.Fatalf("JobUpdate: %v", err)
		}
	}

	url := pgtest.NewDatabase(t)
	tables, err := SQLiteToPostgres(ctx, path, url)
	if err != nil {
		t.Fatalf("SQLiteToPostgres: %v", err)
	}
	rows := map[string]int64{}
	for _, tb := range tables {
		rows[tb.Name] = tb.Rows
	}
	wantRows := map[string]int64{"workspaces": 1, "computes": 1, "operations": 1, "quotas": 1, "tokens": 2, "nodes": 1,
		"node_usage": 1, "jobs": 1, "events": 2, "compute_status": 1, "job_seq": 1}
	if diff := cmp.Diff(wantRows, rows); diff != "" {
		t.Errorf("rows copied (-want +got):\n%s", diff)
	}

	dst, err := postgres.Open(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer dst.Close()
	if diff := cmp.Diff(want, read(t, dst), allowState); diff != "" {
		t.Errorf("postgres after migrate (-want +got):\n%s", diff)
	}
	next := want.job
	next.ID, next.Name, next.RunID = wsID+"/jobs/Next", "Next", "run-next"
	if got, err := dst.JobSubmit(ctx, next); err != nil || got.Seq != 10 {
		t.Errorf("JobSubmit after migrate: Seq %d, %v; want 10, after the source's counter", got.Seq, err)
	}
	// Events appended after the copy come after the copied ones.
	later := model.Event{ComputeID: wsID + "/computes/Gpu", Time: t0, Kind: "ScaleDown", Message: "third, same time"}
	if err := dst.EventAppend(ctx, later); err != nil {
		t.Fatalf("EventAppend after migrate: %v", err)
	}
	es, err := dst.EventList(ctx, wsID+"/computes/Gpu", 0)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(append(want.events, later), es); diff != "" {
		t.Errorf("events after one more (-want +got):\n%s", diff)
	}

	// A second migrate finds the target in use, and changes nothing.
	_, err = SQLiteToPostgres(ctx, path, url)
	if err == nil || !strings.Contains(err.Error(), "not empty") {
		t.Errorf("second SQLiteToPostgres = %v, want a refusal of a non-empty target", err)
	}
	tokens, err := dst.TokenList(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(tokens) != 2 {
		t.Errorf("tokens after the refused migrate: %d, want 2", len(tokens))
	}
}

func TestSQLiteToPostgresHidesPassword(t *testing.T) {
	path := filepath.Join(t.TempDir(), "kumo.db")
	_, err := SQLiteToPostgres(t.Context(), path, "postgres://kumo:s3cret@127.0.0.1:1/kumo?connect_timeout=2")
	if err == nil {
		t.Fatal("SQLiteToPostgres succeeded with no server")
	}
	if strings.Contains(err.Error(), "s3cret") {
		t.Errorf("error shows the password: %v", err)
	}
}

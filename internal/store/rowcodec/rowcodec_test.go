package rowcodec

import (
	"database/sql"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"kumo/internal/model"
)

// row is a result row held in memory: Scan assigns its values in order,
// as a driver would (a sql.Scanner destination gets the raw value, nil for
// NULL).
type row []any

func (r row) Scan(dest ...any) error {
	if len(dest) != len(r) {
		return fmt.Errorf("scan: %d destinations for %d columns", len(dest), len(r))
	}
	for i, d := range dest {
		v := r[i]
		if ns, ok := v.(sql.NullString); ok {
			v = nil
			if ns.Valid {
				v = ns.String
			}
		}
		if ni, ok := v.(sql.NullInt64); ok {
			v = nil
			if ni.Valid {
				v = ni.Int64
			}
		}
		if sc, ok := d.(sql.Scanner); ok {
			if err := sc.Scan(v); err != nil {
				return fmt.Errorf("scan column %d: %w", i, err)
			}
			continue
		}
		dv := reflect.ValueOf(d).Elem()
		sv := reflect.ValueOf(v)
		if !sv.IsValid() || !sv.Type().ConvertibleTo(dv.Type()) {
			return fmt.Errorf("scan column %d: %T into %s", i, v, dv.Type())
		}
		dv.Set(sv.Convert(dv.Type()))
	}
	return nil
}

func TestEncTimeSortsAsText(t *testing.T) {
	east := time.FixedZone("east", 5*3600)
	times := []time.Time{
		time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC),
		time.Date(2026, 1, 2, 3, 4, 5, 7, time.UTC),
		time.Date(2026, 1, 2, 9, 4, 5, 100, east), // 04:04:05 UTC
		time.Date(2026, 1, 2, 4, 4, 6, 0, time.UTC),
	}
	for i := 1; i < len(times); i++ {
		a, b := EncTime(times[i-1]), EncTime(times[i])
		if len(a) != len(b) || a >= b {
			t.Errorf("EncTime(%v) = %q, EncTime(%v) = %q: want equal width and ascending", times[i-1], a, times[i], b)
		}
	}
	var d Decoder
	for _, tm := range times {
		if got := d.Time("t", EncTime(tm)); !got.Equal(tm) || got.Location() != time.UTC {
			t.Errorf("Time(EncTime(%v)) = %v, want the same instant in UTC", tm, got)
		}
	}
	if d.Err() != nil {
		t.Fatalf("Err() = %v", d.Err())
	}
}

func TestEmptyIsNull(t *testing.T) {
	tests := []struct {
		name  string
		enc   func() (sql.NullString, error)
		valid bool
		want  string
	}{
		{"nil tags", func() (sql.NullString, error) { return EncTags(nil) }, false, ""},
		{"empty tags", func() (sql.NullString, error) { return EncTags(map[string]string{}) }, false, ""},
		{"tags", func() (sql.NullString, error) { return EncTags(map[string]string{"a": "b"}) }, true, `{"a":"b"}`},
		{"nil errors", func() (sql.NullString, error) { return EncErrors(nil) }, false, ""},
		{"errors", func() (sql.NullString, error) { return EncErrors([]model.Error{{Code: "C", Message: "m"}}) }, true,
			`[{"code":"C","message":"m"}]`},
		{"zero time", func() (sql.NullString, error) { return EncOptTime(time.Time{}), nil }, false, ""},
		{"time", func() (sql.NullString, error) { return EncOptTime(time.Date(2026, 1, 2, 3, 4, 5, 6, time.UTC)), nil }, true,
			"2026-01-02T03:04:05.000000006Z"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tt.enc()
			if err != nil {
				t.Fatal(err)
			}
			if got.Valid != tt.valid || (tt.valid && !strings.EqualFold(got.String, tt.want)) {
				t.Errorf("got %+v, want valid=%v %q", got, tt.valid, tt.want)
			}
		})
	}
}

func TestDecoderKeepsFirstError(t *testing.T) {
	var d Decoder
	d.Time("created_at", "yesterday")
	d.Tags("tags", sql.NullString{String: "{", Valid: true})
	err := d.Err()
	if err == nil || !strings.Contains(err.Error(), "column created_at") {
		t.Fatalf("Err() = %v, want the created_at error", err)
	}
	var perr *time.ParseError
	if !errors.As(err, &perr) {
		t.Errorf("Err() = %v, want it to wrap a *time.ParseError", err)
	}
}

func TestScanJobReadsJobArgs(t *testing.T) {
	exit := 3
	full := model.Job{
		ID: "/ws/jobs/j", WorkspaceID: "/ws", Name: "j", RunID: "r", ComputeID: "/ws/computes/C",
		DisplayName: "d", ExperimentName: "e", Command: "true", Env: map[string]string{"K": "V"}, SnapshotID: "s",
		Timeout: time.Minute, InstanceCount: 2, Status: model.JobRunning, NodeID: "n0", Attempts: 1,
		ExitCode: &exit, Error: &model.Error{Code: "X", Message: "y"}, CancelRequested: true, Seq: 7,
		CreatedAt: time.Date(2026, 1, 1, 0, 0, 0, 1, time.UTC), StartedAt: time.Date(2026, 1, 1, 0, 1, 0, 0, time.UTC),
		CreatedBy: "me", Warnings: []string{"w"}, CreatedByToken: "t", MaxRetries: 2, NodeIDs: []string{"n0", "n1"},
		Distribution: &model.Distribution{Type: model.DistributionType("PyTorch"), ProcessCountPerInstance: 2},
		History: []model.Attempt{{Number: 1, NodeID: "n0", NodeIDs: []string{"n0", "n1"},
			StartedAt: time.Date(2026, 1, 1, 0, 1, 0, 0, time.UTC), Message: "m"}},
	}
	tests := []struct {
		name string
		job  model.Job
	}{
		{"full", full},
		{"empty", model.Job{ID: "/ws/jobs/e", WorkspaceID: "/ws", Name: "e", CreatedAt: full.CreatedAt}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			args, err := JobArgs(tt.job)
			if err != nil {
				t.Fatal(err)
			}
			if args[2] != Fold(tt.job.ComputeID) {
				t.Fatalf("JobArgs[2] = %v, want compute_key %q", args[2], Fold(tt.job.ComputeID))
			}
			// The row a SELECT of ScanJob's columns returns: identity, then
			// JobArgs without compute_key, which is not read back.
			r := append(row{tt.job.ID, tt.job.WorkspaceID, tt.job.Name}, args[:2]...)
			r = append(r, args[3:]...)
			got, err := ScanJob(r)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.job, got); diff != "" {
				t.Errorf("ScanJob(JobArgs(j)) differs (-want +got):\n%s", diff)
			}
		})
	}
}

func TestScanNodeReadsNodeInsertArgs(t *testing.T) {
	n := model.Node{ID: "i-1", ComputeID: "/ws/computes/C", State: model.NodeIdle, CredentialHash: "h",
		Address: "127.0.0.1", SSHPort: 22, JobID: "j", Reason: "r", Note: "n", Attempts: 2, AgentKey: "k", HostKey: "hk",
		CreatedAt: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC), StateSince: time.Date(2026, 1, 1, 0, 0, 1, 0, time.UTC)}
	args := NodeInsertArgs(n)
	if args[2] != "/ws/computes/c" {
		t.Fatalf("NodeInsertArgs[2] = %v, want the folded compute ID", args[2])
	}
	got, err := ScanNode(append(row{args[0], args[1]}, args[3:]...))
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(n, got); diff != "" {
		t.Errorf("ScanNode(NodeInsertArgs(n)) differs (-want +got):\n%s", diff)
	}
	up := NodeArgs(n, model.NodeRunning)
	if up[len(up)-2] != n.ID || up[len(up)-1] != string(model.NodeRunning) {
		t.Errorf("NodeArgs ends %v, want the node's ID then the expected state", up[len(up)-2:])
	}
}

func TestScanReportsBadColumn(t *testing.T) {
	_, err := ScanToken(row{"id", "name", "Owner", "hash", "not a time", sql.NullString{}})
	if err == nil || !strings.Contains(err.Error(), "created_at") {
		t.Errorf("ScanToken with a bad created_at: err = %v, want one naming the column", err)
	}
}

// pick returns the values of args at the given indexes: the columns a
// SELECT reads back out of those an insert writes.
func pick(args []any, idx ...int) row {
	r := make(row, len(idx))
	for i, j := range idx {
		r[i] = args[j]
	}
	return r
}

func TestScanReadsInsertArgs(t *testing.T) {
	at := time.Date(2026, 3, 4, 5, 6, 7, 8, time.UTC)
	errs := []model.Error{{Code: "QuotaExceeded", Message: "no room"}}
	tests := []struct {
		name string
		// roundTrip encodes a value, scans the row its columns make, and
		// returns the value and what was scanned.
		roundTrip func() (want, got any, err error)
	}{
		{"compute", func() (any, any, error) {
			c := model.Compute{ID: "/ws/computes/C", WorkspaceID: "/ws", Name: "C", Location: "l", Description: "d",
				Tags: map[string]string{"a": "b"}, VMSize: "S", Priority: model.Priority("Dedicated"),
				Scale:       model.ScaleSettings{MinNodes: 1, MaxNodes: 3, IdleTime: time.Minute},
				Credentials: model.Credentials{AdminUser: "u", PasswordHash: "h", SSHPublicKey: "k"}, RemoteLogin: "Enabled",
				State: model.ProvisioningState("Failed"), Errors: errs, OperationID: "op", ETag: "e",
				CreatedAt: at, ModifiedAt: at.Add(time.Second), CreatedBy: "me", ModifiedBy: "you"}
			args, err := ComputeArgs(c)
			if err != nil {
				return nil, nil, err
			}
			got, err := ScanCompute(append(row{c.ID, c.WorkspaceID, c.Name}, args...))
			return c, got, err
		}},
		{"compute status", func() (any, any, error) {
			cs := model.ComputeStatus{ComputeID: "/ws/computes/C", TargetNodes: 2, Allocation: "Resizing",
				AllocationSince: at, Errors: errs, Blocked: "QuotaExceeded", BlockedDetail: "d",
				Failures: 3, LastFailure: at.Add(time.Second), RetryAt: at.Add(5 * time.Second)}
			args, err := ComputeStatusArgs(cs)
			if err != nil {
				return nil, nil, err
			}
			got, err := ScanComputeStatus(pick(args, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10))
			return cs, got, err
		}},
		{"workspace", func() (any, any, error) {
			w := model.Workspace{ID: "/s/rg/ws", Subscription: "S", ResourceGroup: "RG", Name: "WS", Location: "l",
				Description: "d", CreatedAt: at, ModifiedAt: at, CreatedBy: "me"}
			args, err := WorkspaceInsertArgs(w)
			if err != nil {
				return nil, nil, err
			}
			got, err := ScanWorkspace(pick(args, 1, 2, 4, 6, 8, 9, 10, 11, 12, 13))
			return w, got, err
		}},
		{"operation", func() (any, any, error) {
			op := model.Operation{ID: "op", Location: "l", Kind: model.OperationKind("Create"), ComputeID: "/ws/computes/C",
				Status: model.OperationStatus("Failed"), Error: &errs[0], StartedAt: at, EndedAt: at.Add(time.Minute)}
			got, err := ScanOperation(pick(OperationInsertArgs(op), 0, 1, 2, 3, 5, 6, 7, 8, 9))
			return op, got, err
		}},
		{"token", func() (any, any, error) {
			tok := model.Token{ID: "t", Name: "n", Role: model.RoleOwner, Hash: "h", CreatedAt: at}
			got, err := ScanToken(row(TokenInsertArgs(tok)))
			return tok, got, err
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			want, got, err := tt.roundTrip()
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("scanned value differs from the encoded one (-want +got):\n%s", diff)
			}
		})
	}
}

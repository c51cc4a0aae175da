package sqlite

import (
	"database/sql"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"kumo/internal/model"
	"kumo/internal/store"
	"kumo/internal/store/rowcodec"
	"kumo/internal/store/schema"
	"kumo/internal/store/storetest"
)

// openTest opens a store on a new file in a temporary directory.
func openTest(t testing.TB, path string) *Store {
	t.Helper()
	s, err := Open(t.Context(), path)
	if err != nil {
		t.Fatalf("Open(%s): %v", path, err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return s
}

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store {
		return openTest(t, filepath.Join(t.TempDir(), "kumo.db"))
	})
}

func TestFeed(t *testing.T) {
	storetest.RunFeed(t, func(t *testing.T) (store.Store, store.Store) {
		s := openTest(t, filepath.Join(t.TempDir(), "kumo.db"))
		return s, s
	})
}

func TestReopen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "kumo.db")
	w := model.Workspace{ID: "/subscriptions/s/resourceGroups/rg/providers/Microsoft.MachineLearningServices/workspaces/Ws",
		Subscription: "s", ResourceGroup: "rg", Name: "Ws", Location: "local"}

	s, err := Open(t.Context(), path)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	if err := s.WorkspaceCreate(t.Context(), w); err != nil {
		t.Fatalf("WorkspaceCreate: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}

	s = openTest(t, path)
	got, err := s.WorkspaceGet(t.Context(), w.ID)
	if err != nil {
		t.Fatalf("WorkspaceGet after reopen: %v", err)
	}
	if diff := cmp.Diff(w, got); diff != "" {
		t.Errorf("WorkspaceGet after reopen (-want +got):\n%s", diff)
	}

	applied, err := s.migrate(t.Context())
	if err != nil {
		t.Fatalf("migrate again: %v", err)
	}
	if len(applied) != 0 {
		t.Errorf("migrate again applied %v, want nothing", applied)
	}
	ms, err := schema.Load(migrationFS)
	if err != nil {
		t.Fatalf("migrations: %v", err)
	}
	var n int
	if err := s.r.QueryRowContext(t.Context(), `SELECT count(*) FROM schema_migrations`).Scan(&n); err != nil {
		t.Fatalf("count schema_migrations: %v", err)
	}
	if n != len(ms) {
		t.Errorf("schema_migrations has %d rows, want %d", n, len(ms))
	}
}

func TestPragmas(t *testing.T) {
	s := openTest(t, filepath.Join(t.TempDir(), "kumo.db"))
	tests := []struct {
		name   string
		db     *sql.DB
		pragma string
		want   string
	}{
		{"writer journal", s.w, "journal_mode", "wal"},
		{"writer foreign keys", s.w, "foreign_keys", "1"},
		{"writer synchronous", s.w, "synchronous", "1"}, // NORMAL
		{"writer busy timeout", s.w, "busy_timeout", "10000"},
		{"reader journal", s.r, "journal_mode", "wal"},
		{"reader foreign keys", s.r, "foreign_keys", "1"},
		{"reader busy timeout", s.r, "busy_timeout", "10000"},
		{"reader query only", s.r, "query_only", "1"},
		{"writer mmap", s.w, "mmap_size", "0"},
		{"reader mmap", s.r, "mmap_size", "0"},
		{"writer cache", s.w, "cache_size", fmt.Sprint(-writeCacheKiB)},
		{"reader cache", s.r, "cache_size", "-2000"},
		{"writer temp store", s.w, "temp_store", "2"}, // MEMORY
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got string
			if err := tt.db.QueryRowContext(t.Context(), "PRAGMA "+tt.pragma).Scan(&got); err != nil {
				t.Fatalf("PRAGMA %s: %v", tt.pragma, err)
			}
			if got != tt.want {
				t.Errorf("PRAGMA %s = %q, want %q", tt.pragma, got, tt.want)
			}
		})
	}
}

func TestOpenRejectsNonFile(t *testing.T) {
	for _, path := range []string{"", ":memory:", "file:x.db", "x.db?mode=ro"} {
		if s, err := Open(t.Context(), path); err == nil {
			s.Close()
			t.Errorf("Open(%q) succeeded, want an error", path)
		}
	}
}

func TestReady(t *testing.T) {
	s := openTest(t, filepath.Join(t.TempDir(), "kumo.db"))
	if err := s.Ready(t.Context()); err != nil {
		t.Fatalf("Ready on a fresh store: %v", err)
	}
	if _, err := s.w.ExecContext(t.Context(), `INSERT INTO schema_migrations (version, name) VALUES (9999, '9999_future.sql')`); err != nil {
		t.Fatal(err)
	}
	if err := s.Ready(t.Context()); err == nil || !strings.Contains(err.Error(), "newer than this binary") {
		t.Errorf("Ready with a newer schema = %v, want an error saying so", err)
	}
	if _, err := s.w.ExecContext(t.Context(), `DELETE FROM schema_migrations`); err != nil {
		t.Fatal(err)
	}
	if err := s.Ready(t.Context()); err == nil || !strings.Contains(err.Error(), "not applied") {
		t.Errorf("Ready with migrations missing = %v, want an error saying so", err)
	}
}

// TestJobCountsBackfill checks that migration 0009 counts the jobs stored
// before it: it is undone on a store with jobs and applied again on
// reopen.
func TestJobCountsBackfill(t *testing.T) {
	path := filepath.Join(t.TempDir(), "kumo.db")
	s, err := Open(t.Context(), path)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	const ws = "/subscriptions/s/resourceGroups/rg/providers/Microsoft.MachineLearningServices/workspaces/ws"
	for i, st := range []model.JobStatus{model.JobQueued, model.JobQueued, model.JobRunning} {
		name := fmt.Sprintf("j%d", i)
		j := model.Job{ID: ws + "/jobs/" + name, WorkspaceID: ws, Name: name, RunID: "run-" + name,
			ComputeID: ws + "/computes/cpu", Command: "true", InstanceCount: i + 1, Status: st, Seq: int64(i + 1),
			CreatedAt: time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)}
		if err := s.JobCreate(t.Context(), j); err != nil {
			t.Fatalf("JobCreate: %v", err)
		}
	}
	for _, q := range []string{`DROP TRIGGER job_counts_insert`, `DROP TRIGGER job_counts_update`,
		`DROP TRIGGER job_counts_delete`, `DROP TABLE job_counts`, `DELETE FROM schema_migrations WHERE version = 9`} {
		if _, err := s.w.ExecContext(t.Context(), q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openTest(t, path)
	ctx := t.Context()
	jobs, err := s.JobCountByCompute(ctx, ws+"/computes/cpu", model.JobQueued, model.JobRunning)
	if err != nil {
		t.Fatalf("JobCountByCompute: %v", err)
	}
	if diff := cmp.Diff(map[model.JobStatus]int{model.JobQueued: 2, model.JobRunning: 1}, jobs); diff != "" {
		t.Errorf("jobs (-want +got):\n%s", diff)
	}
	nodes, err := s.JobNodeCountByCompute(ctx, ws+"/computes/cpu", model.JobQueued, model.JobRunning)
	if err != nil {
		t.Fatalf("JobNodeCountByCompute: %v", err)
	}
	if diff := cmp.Diff(map[model.JobStatus]int{model.JobQueued: 1 + 2, model.JobRunning: 3}, nodes); diff != "" {
		t.Errorf("nodes (-want +got):\n%s", diff)
	}
}

// TestUsageNanosBackfill checks that migration 0011 fills started_ns and
// ended_ns for the usage records stored before it, so that a compute's
// cost sum counts them: it is undone on a store with records (one ended)
// and applied again on reopen.
func TestUsageNanosBackfill(t *testing.T) {
	path := filepath.Join(t.TempDir(), "kumo.db")
	s, err := Open(t.Context(), path)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	const ws = "/subscriptions/s/resourceGroups/rg/providers/Microsoft.MachineLearningServices/workspaces/ws"
	cpu := ws + "/computes/cpu"
	t0 := time.Date(2025, 1, 2, 3, 4, 5, 6, time.UTC)
	for i, price := range []float64{0.5, 2} {
		n := model.Node{ID: fmt.Sprintf("n%d", i), ComputeID: cpu, State: model.NodePreparing,
			CreatedAt: t0.Add(time.Duration(i) * time.Minute), StateSince: t0}
		u := model.NodeUsage{NodeID: n.ID, ComputeID: cpu, WorkspaceID: ws, VMSize: "Standard_D2_v2",
			Priority: model.PriorityDedicated, PricePerHour: price, StartedAt: n.CreatedAt}
		if err := s.NodeCreateUsage(t.Context(), n, u); err != nil {
			t.Fatalf("NodeCreateUsage: %v", err)
		}
	}
	gone := model.Node{ID: "n0", ComputeID: cpu, State: model.NodeLeaving, CreatedAt: t0, StateSince: t0.Add(90*time.Minute + 7)}
	if err := s.NodeUpdate(t.Context(), gone, model.NodePreparing); err != nil {
		t.Fatal(err)
	}
	if err := s.NodeDelete(t.Context(), "n0"); err != nil {
		t.Fatal(err)
	}
	for _, q := range []string{`DROP TRIGGER node_usage_ns_update`,
		`DROP INDEX node_usage_by_compute`, `ALTER TABLE node_usage DROP COLUMN started_ns`,
		`ALTER TABLE node_usage DROP COLUMN ended_ns`, `DELETE FROM schema_migrations WHERE version = 11`} {
		if _, err := s.w.ExecContext(t.Context(), q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openTest(t, path)
	from, to := t0.Add(-time.Hour), t0.Add(3*time.Hour)
	got, err := s.UsageSumByCompute(t.Context(), cpu, from, to)
	if err != nil {
		t.Fatalf("UsageSumByCompute: %v", err)
	}
	// n0: 90 min and 7 ns at 0.5; n1: open from t0+1m to t0+3h at 2.
	want := store.UsageSum{Records: 2, Cost: (90*time.Minute+7).Hours()*0.5 + (179*time.Minute).Hours()*2, OpenPricePerHour: 2}
	if diff := cmp.Diff(want, got, cmpopts.EquateApprox(1e-12, 0)); diff != "" {
		t.Errorf("UsageSumByCompute (-want +got):\n%s", diff)
	}
}

// TestFactsBackfill checks migration 0014 on a store made before it: the
// job Seq counter starts after the largest Seq stored, and nodes that
// shared an SSH port (which only an in-memory port list kept apart) get
// ports of their own, so that the unique index can hold. It is undone on a
// store with such rows and applied again on reopen.
func TestFactsBackfill(t *testing.T) {
	path := filepath.Join(t.TempDir(), "kumo.db")
	s, err := Open(t.Context(), path)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	undo := func() {
		for _, q := range []string{`DROP TRIGGER job_seq_insert`, `DROP TRIGGER job_seq_update`, `DROP TABLE job_seq`,
			`DROP INDEX nodes_by_ssh_port`, `ALTER TABLE compute_status DROP COLUMN failures`,
			`ALTER TABLE compute_status DROP COLUMN last_failure`, `ALTER TABLE compute_status DROP COLUMN retry_at`,
			`DELETE FROM schema_migrations WHERE version = 14`} {
			if _, err := s.w.ExecContext(t.Context(), q); err != nil {
				t.Fatalf("%s: %v", q, err)
			}
		}
	}
	insert := func(n model.Node) {
		if _, err := s.w.ExecContext(t.Context(), nodeInsertSQL, rowcodec.NodeInsertArgs(n)...); err != nil {
			t.Fatalf("insert node %s: %v", n.ID, err)
		}
	}
	storetest.FactsBackfill(t, s, undo, insert, func() store.Store {
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		return openTest(t, path)
	})
}

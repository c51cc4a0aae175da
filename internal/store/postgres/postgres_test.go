package postgres

import (
	"context"
	"errors"
	"fmt"
	neturl "net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/jackc/pgx/v5"

	"kumo/internal/model"
	"kumo/internal/store"
	"kumo/internal/store/postgres/pgtest"
	"kumo/internal/store/storetest"
)

// openTest opens a store on a fresh database of the test server.
func openTest(t testing.TB) (*Store, string) {
	t.Helper()
	url := pgtest.NewDatabase(t)
	s, err := Open(t.Context(), url)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return s, url
}

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store {
		s, _ := openTest(t)
		return s
	})
}

func TestFeed(t *testing.T) {
	storetest.RunFeed(t, func(t *testing.T) (store.Store, store.Store) {
		pub, url := openTest(t)
		sub, err := Open(t.Context(), url)
		if err != nil {
			t.Fatalf("Open again: %v", err)
		}
		t.Cleanup(func() { sub.Close() })
		return pub, sub
	})
}

func TestReopen(t *testing.T) {
	s, url := openTest(t)
	w := model.Workspace{ID: "/subscriptions/s/resourceGroups/rg/providers/Microsoft.MachineLearningServices/workspaces/Ws",
		Subscription: "s", ResourceGroup: "rg", Name: "Ws", Location: "local"}
	if err := s.WorkspaceCreate(t.Context(), w); err != nil {
		t.Fatalf("WorkspaceCreate: %v", err)
	}

	s2, err := Open(t.Context(), url)
	if err != nil {
		t.Fatalf("Open again: %v", err)
	}
	defer s2.Close()
	got, err := s2.WorkspaceGet(t.Context(), w.ID)
	if err != nil {
		t.Fatalf("WorkspaceGet after reopen: %v", err)
	}
	if diff := cmp.Diff(w, got); diff != "" {
		t.Errorf("WorkspaceGet after reopen (-want +got):\n%s", diff)
	}
	applied, err := s2.migrate(t.Context())
	if err != nil {
		t.Fatalf("migrate again: %v", err)
	}
	if len(applied) != 0 {
		t.Errorf("migrate again applied %v, want nothing", applied)
	}
	if err := s2.Ready(t.Context()); err != nil {
		t.Errorf("Ready: %v", err)
	}
}

// TestOpenTogether opens several stores on one new database at once: the
// advisory lock lets exactly one of them migrate it.
func TestOpenTogether(t *testing.T) {
	url := pgtest.NewDatabase(t)
	const n = 4
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range n {
		wg.Go(func() {
			s, err := Open(t.Context(), url)
			if err == nil {
				err = s.Ready(t.Context())
				s.Close()
			}
			errs[i] = err
		})
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("Open %d: %v", i, err)
		}
	}
}

func TestReadyNotCurrent(t *testing.T) {
	tests := []struct {
		name, sql, want string
	}{
		{"missing", `DELETE FROM schema_migrations`, "not applied"},
		{"newer", `INSERT INTO schema_migrations (version, name) VALUES (9999, '9999_future.sql')`, "newer than this binary"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, _ := openTest(t)
			if err := s.Ready(t.Context()); err != nil {
				t.Fatalf("Ready on a fresh store: %v", err)
			}
			if _, err := s.pool.Exec(t.Context(), tt.sql); err != nil {
				t.Fatal(err)
			}
			err := s.Ready(t.Context())
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Ready = %v, want an error containing %q", err, tt.want)
			}
		})
	}
}

// TestTokenRevokeRace revokes two owner tokens at once, many times: one
// revoke must win and the other be refused, never both.
func TestTokenRevokeRace(t *testing.T) {
	s, _ := openTest(t)
	ctx := t.Context()
	now := time.Date(2025, 1, 2, 3, 4, 5, 6, time.UTC)
	// Each round starts with one owner, adds another, and revokes both at
	// once.
	create := func(id string) {
		t.Helper()
		if err := s.TokenCreate(ctx, model.Token{ID: id, Name: id, Role: model.RoleOwner, Hash: "h" + id, CreatedAt: now}); err != nil {
			t.Fatal(err)
		}
	}
	survivor := "owner-0"
	create(survivor)
	for round := 1; round <= 20; round++ {
		next := fmt.Sprintf("owner-%d", round)
		create(next)
		ids := []string{survivor, next}
		var wg sync.WaitGroup
		errs := make([]error, 2)
		for i, id := range ids {
			wg.Go(func() { errs[i] = s.TokenRevoke(ctx, id, now) })
		}
		wg.Wait()
		refused := 0
		for i, err := range errs {
			switch {
			case errors.Is(err, store.ErrLastOwner):
				refused++
				survivor = ids[i]
			case err != nil:
				t.Fatalf("TokenRevoke: %v", err)
			}
		}
		if refused != 1 {
			t.Fatalf("round %d: %d of 2 concurrent revokes refused, want 1", round, refused)
		}
	}
}

func TestRedact(t *testing.T) {
	tests := []struct{ in, want string }{
		{"postgres://kumo:s3cret@db.example:5432/kumo?sslmode=disable", "postgres://kumo:xxxxx@db.example:5432/kumo?sslmode=disable"},
		{"postgresql://kumo@127.0.0.1/kumo", "postgresql://kumo@127.0.0.1/kumo"},
		{"postgres://127.0.0.1/kumo?password=s3cret&sslmode=disable", "postgres://127.0.0.1/kumo?password=xxxxx&sslmode=disable"},
		{"host=db password=s3cret", "(database URL)"},
	}
	for _, tt := range tests {
		if got := Redact(tt.in); got != tt.want {
			t.Errorf("Redact(%q) = %q, want %q", tt.in, got, tt.want)
		}
		if strings.Contains(Redact(tt.in), "s3cret") {
			t.Errorf("Redact(%q) keeps the password", tt.in)
		}
	}
}

func TestOpenErrorHidesPassword(t *testing.T) {
	// Nothing listens on port 1; the error must not show the password.
	_, err := Open(t.Context(), "postgres://kumo:s3cret@127.0.0.1:1/kumo?sslmode=disable&connect_timeout=2")
	if err == nil {
		t.Fatal("Open succeeded with no server")
	}
	if strings.Contains(err.Error(), "s3cret") {
		t.Errorf("Open error shows the password: %v", err)
	}
}

// pgTool finds a PostgreSQL client program: on PATH, else in Debian's
// versioned directory. It skips the test when there is none outside CI.
func pgTool(t *testing.T, name string) string {
	t.Helper()
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	if ms, _ := filepath.Glob("/usr/lib/postgresql/*/bin/" + name); len(ms) > 0 {
		return ms[len(ms)-1]
	}
	if os.Getenv("CI") != "" {
		t.Fatalf("%s not found: CI must install postgresql-15", name)
	}
	t.Skipf("%s not found", name)
	return ""
}

// TestDumpRestore checks the backup docs/operations.md documents: pg_dump
// of a store in use, pg_restore into a new database, and the store opens
// there with the same rows.
func TestDumpRestore(t *testing.T) {
	pgDump, pgRestore := pgTool(t, "pg_dump"), pgTool(t, "pg_restore")
	s, url := openTest(t)
	ctx := t.Context()
	w := model.Workspace{ID: "/subscriptions/s/resourceGroups/rg/providers/Microsoft.MachineLearningServices/workspaces/Ws",
		Subscription: "s", ResourceGroup: "rg", Name: "Ws", Location: "local", Tags: map[string]string{"a": "b"},
		CreatedAt: time.Date(2025, 1, 2, 3, 4, 5, 6, time.UTC)}
	tok := model.Token{ID: "kt1", Name: "owner", Role: model.RoleOwner, Hash: "h1", CreatedAt: w.CreatedAt}
	if err := s.WorkspaceCreate(ctx, w); err != nil {
		t.Fatal(err)
	}
	if err := s.TokenCreate(ctx, tok); err != nil {
		t.Fatal(err)
	}
	dump := filepath.Join(t.TempDir(), "kumo.dump")
	if out, err := exec.CommandContext(ctx, pgDump, "--format=custom", "--file="+dump, url).CombinedOutput(); err != nil {
		t.Fatalf("pg_dump: %v\n%s", err, out)
	}
	target := pgtest.NewDatabase(t)
	if out, err := exec.CommandContext(ctx, pgRestore, "--no-owner", "--dbname="+target, dump).CombinedOutput(); err != nil {
		t.Fatalf("pg_restore: %v\n%s", err, out)
	}
	r, err := Open(ctx, target)
	if err != nil {
		t.Fatalf("Open the restored database: %v", err)
	}
	defer r.Close()
	if err := r.Ready(ctx); err != nil {
		t.Errorf("Ready after restore: %v", err)
	}
	got, err := r.WorkspaceGet(ctx, w.ID)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(w, got); diff != "" {
		t.Errorf("workspace after restore (-want +got):\n%s", diff)
	}
	gt, err := r.TokenGetByHash(ctx, "h1")
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(tok, gt); diff != "" {
		t.Errorf("token after restore (-want +got):\n%s", diff)
	}
	// New events number after the restored ones.
	if err := r.EventAppend(ctx, model.Event{ComputeID: "c", Time: w.CreatedAt, Kind: "K", Message: "m"}); err != nil {
		t.Errorf("EventAppend after restore: %v", err)
	}
}

// TestTwoStoresRaceForAJob: two stores on one database, as two control
// planes would have, race to give one queued job to different idle nodes.
// Exactly one assignment wins; the losers change nothing, so exactly one
// node ends up running the job.
func TestTwoStoresRaceForAJob(t *testing.T) {
	a, url := openTest(t)
	b, err := Open(t.Context(), url)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	ctx := t.Context()
	const ws = "/subscriptions/s/resourceGroups/rg/providers/Microsoft.MachineLearningServices/workspaces/ws"
	t0 := time.Date(2025, 3, 4, 5, 6, 7, 8, time.UTC)
	const racers = 8
	var nodes []model.Node
	for i := range racers {
		n := model.Node{ID: fmt.Sprintf("node-%d", i), ComputeID: ws + "/computes/cpu", State: model.NodeIdle,
			CredentialHash: "h", CreatedAt: t0, StateSince: t0}
		if err := a.NodeCreate(ctx, n); err != nil {
			t.Fatal(err)
		}
		nodes = append(nodes, n)
	}
	for round := range 10 {
		name := fmt.Sprintf("job-%d", round)
		j := model.Job{ID: ws + "/jobs/" + name, WorkspaceID: ws, Name: name, RunID: "run-" + name,
			ComputeID: ws + "/computes/cpu", Command: "true", InstanceCount: 1, Status: model.JobQueued,
			Seq: int64(round + 1), CreatedAt: t0}
		if err := a.JobCreate(ctx, j); err != nil {
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		errs := make([]error, racers)
		for i := range racers {
			st := []*Store{a, b}[i%2]
			wg.Go(func() {
				j := j
				j.Status, j.NodeID, j.Attempts = model.JobPreparing, nodes[i].ID, 1
				n := nodes[i]
				n.State, n.JobID = model.NodeRunning, j.ID
				errs[i] = st.JobUpdate(ctx, j, model.JobQueued, &n, model.NodeIdle)
			})
		}
		wg.Wait()
		winner := -1
		for i, err := range errs {
			switch {
			case err == nil:
				if winner >= 0 {
					t.Fatalf("round %d: racers %d and %d both assigned the job", round, winner, i)
				}
				winner = i
			case !errors.Is(err, store.ErrPreconditionFailed):
				t.Fatalf("round %d: racer %d: %v", round, i, err)
			}
		}
		if winner < 0 {
			t.Fatalf("round %d: no racer assigned the job", round)
		}
		got, err := b.JobGet(ctx, j.ID)
		if err != nil {
			t.Fatal(err)
		}
		if got.NodeID != nodes[winner].ID {
			t.Errorf("round %d: job on %s, want the winner's %s", round, got.NodeID, nodes[winner].ID)
		}
		all, err := a.NodeList(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, n := range all {
			running := n.State == model.NodeRunning
			if running != (n.ID == nodes[winner].ID) {
				t.Errorf("round %d: node %s is %s (job %q)", round, n.ID, n.State, n.JobID)
			}
		}
		// Free the winner for the next round.
		n := nodes[winner]
		n.State, n.JobID = model.NodeIdle, ""
		if err := a.NodeUpdate(ctx, n, model.NodeRunning); err != nil {
			t.Fatal(err)
		}
	}
}

// TestGangsRaceWithoutDeadlock: two gang jobs, on two stores, claim the
// same two nodes listed in opposite orders. One wins and one gets
// ErrPreconditionFailed; neither fails with a deadlock.
func TestGangsRaceWithoutDeadlock(t *testing.T) {
	a, url := openTest(t)
	b, err := Open(t.Context(), url)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	ctx := t.Context()
	const ws = "/subscriptions/s/resourceGroups/rg/providers/Microsoft.MachineLearningServices/workspaces/ws"
	t0 := time.Date(2025, 3, 4, 5, 6, 7, 8, time.UTC)
	idle := []model.Node{
		{ID: "node-a", ComputeID: ws + "/computes/cpu", State: model.NodeIdle, CreatedAt: t0, StateSince: t0},
		{ID: "node-b", ComputeID: ws + "/computes/cpu", State: model.NodeIdle, CreatedAt: t0, StateSince: t0},
	}
	for _, n := range idle {
		if err := a.NodeCreate(ctx, n); err != nil {
			t.Fatal(err)
		}
	}
	for round := range 30 {
		var jobs []model.Job
		for g := range 2 {
			name := fmt.Sprintf("gang-%d-%d", round, g)
			j := model.Job{ID: ws + "/jobs/" + name, WorkspaceID: ws, Name: name, RunID: "run-" + name,
				ComputeID: ws + "/computes/cpu", Command: "true", InstanceCount: 2, Status: model.JobQueued,
				Seq: int64(2*round + g + 1), CreatedAt: t0}
			if err := a.JobCreate(ctx, j); err != nil {
				t.Fatal(err)
			}
			jobs = append(jobs, j)
		}
		var wg sync.WaitGroup
		errs := make([]error, 2)
		for g, st := range []*Store{a, b} {
			wg.Go(func() {
				j := jobs[g]
				j.Status, j.Attempts = model.JobPreparing, 1
				var changes []store.NodeChange
				for _, n := range idle {
					n.State, n.JobID = model.NodeRunning, j.ID
					changes = append(changes, store.NodeChange{Node: n, From: model.NodeIdle})
				}
				if g == 1 {
					slices.Reverse(changes)
				}
				errs[g] = st.JobUpdateNodes(ctx, j, model.JobQueued, changes)
			})
		}
		wg.Wait()
		won := 0
		for g, err := range errs {
			switch {
			case err == nil:
				won++
			case !errors.Is(err, store.ErrPreconditionFailed):
				t.Fatalf("round %d: gang %d: %v", round, g, err)
			}
		}
		if won != 1 {
			t.Fatalf("round %d: %d gangs won the nodes, want 1", round, won)
		}
		for _, n := range idle {
			if err := a.NodeUpdate(ctx, n, model.NodeRunning); err != nil {
				t.Fatal(err)
			}
		}
	}
}

// TestReadyDatabaseGone: a store whose database is gone is not ready, and
// says so within the caller's deadline.
func TestReadyDatabaseGone(t *testing.T) {
	s, url := openTest(t)
	u, err := neturl.Parse(url)
	if err != nil {
		t.Fatal(err)
	}
	name := strings.TrimPrefix(u.Path, "/")
	admin, err := pgx.Connect(t.Context(), pgtest.ServerURL(t))
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close(context.Background())
	if _, err := admin.Exec(t.Context(), `DROP DATABASE `+name+` WITH (FORCE)`); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	if err := s.Ready(ctx); err == nil {
		t.Error("Ready with the database dropped = nil, want an error")
	}
}

// TestFeedReconnect: when the listening connection dies, the Store makes
// it again, tells its subscribers to resync (""), and delivers what is
// published after.
func TestFeedReconnect(t *testing.T) {
	s, _ := openTest(t)
	ch, err := s.Subscribe(t.Context(), "kumo_test_feed")
	if err != nil {
		t.Fatalf("Subscribe: %v", err)
	}
	tag, err := s.pool.Exec(t.Context(), `SELECT pg_terminate_backend(pid) FROM pg_stat_activity
		WHERE datname = current_database() AND pid <> pg_backend_pid() AND query LIKE 'LISTEN%'`)
	if err != nil || tag.RowsAffected() != 1 {
		t.Fatalf("terminate the listening connection: %v, %d rows", err, tag.RowsAffected())
	}
	receive := func() string {
		t.Helper()
		select {
		case p := <-ch:
			return p
		case <-time.After(30 * time.Second):
			t.Fatal("nothing received within 30s")
			return ""
		}
	}
	if got := receive(); got != "" {
		t.Fatalf("first payload after the connection died = %q, want a resync (\"\")", got)
	}
	if err := s.Publish(t.Context(), "kumo_test_feed", "after"); err != nil {
		t.Fatalf("Publish: %v", err)
	}
	if got := receive(); got != "after" {
		t.Errorf("payload after the reconnect = %q, want after", got)
	}
}

// TestFactsBackfill checks migration 0006 on a store made before it: the
// job Seq counter starts after the largest Seq stored, and nodes that
// shared an SSH port (which only an in-memory port list kept apart) get
// ports of their own, so that the unique index can hold. It is undone on a
// store with such rows and applied again on reopen.
func TestFactsBackfill(t *testing.T) {
	s, url := openTest(t)
	undo := func() {
		for _, q := range []string{`DROP TRIGGER job_seq_insert ON jobs`, `DROP TRIGGER job_seq_update ON jobs`, `DROP FUNCTION job_seq_follow`,
			`DROP TABLE job_seq`, `DROP INDEX nodes_by_ssh_port`, `ALTER TABLE compute_status DROP COLUMN failures`,
			`ALTER TABLE compute_status DROP COLUMN last_failure`, `ALTER TABLE compute_status DROP COLUMN retry_at`,
			`DELETE FROM schema_migrations WHERE version = 6`} {
			if _, err := s.pool.Exec(t.Context(), q); err != nil {
				t.Fatalf("%s: %v", q, err)
			}
		}
	}
	insert := func(n model.Node) {
		if err := s.NodeCreate(t.Context(), n); err != nil {
			t.Fatalf("NodeCreate(%s): %v", n.ID, err)
		}
	}
	storetest.FactsBackfill(t, s, undo, insert, func() store.Store {
		s2, err := Open(t.Context(), url)
		if err != nil {
			t.Fatalf("Open again: %v", err)
		}
		t.Cleanup(func() { s2.Close() })
		return s2
	})
}

package postgres

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

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

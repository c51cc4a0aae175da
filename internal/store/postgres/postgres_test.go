package postgres

import (
	"context"
	"errors"
	"fmt"
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
	s, _ := openTest(t)
	tests := []struct {
		name, sql, want string
	}{
		{"missing", `DELETE FROM schema_migrations`, "not applied"},
		{"newer", `INSERT INTO schema_migrations (version, name) VALUES (9999, '9999_future.sql')`, "newer than this binary"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tx, err := s.pool.Begin(t.Context())
			if err != nil {
				t.Fatal(err)
			}
			defer tx.Rollback(context.Background())
			if _, err := tx.Exec(t.Context(), tt.sql); err != nil {
				t.Fatal(err)
			}
			// Ready on the transaction's view: run its query inside tx.
			rows, err := tx.Query(t.Context(), `SELECT version FROM schema_migrations`)
			if err != nil {
				t.Fatal(err)
			}
			var done []int
			for rows.Next() {
				var v int
				if err := rows.Scan(&v); err != nil {
					t.Fatal(err)
				}
				done = append(done, v)
			}
			rows.Close()
			ms, err := migrations()
			if err != nil {
				t.Fatal(err)
			}
			err = checkVersions(ms, done)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("checkVersions = %v, want an error containing %q", err, tt.want)
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

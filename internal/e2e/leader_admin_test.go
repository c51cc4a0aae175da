package e2e

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"kumo/internal/store"
	"kumo/internal/store/postgres"
	"kumo/internal/store/postgres/pgtest"
	"kumo/internal/store/sqlite"
)

// TestAdminLeader: kumo admin leader shows the leader lease of a SQLite
// store and of a PostgreSQL one (named by KUMO_DATABASE_URL): none before
// any replica took it, then its holder, address and term, then expired
// once its holder stopped renewing, then released.
func TestAdminLeader(t *testing.T) {
	tests := []struct {
		name string
		open func(t *testing.T) (store.Store, []string, []string) // store, flags, env
	}{
		{"sqlite", func(t *testing.T) (store.Store, []string, []string) {
			dataDir := filepath.Join(t.TempDir(), "data")
			if err := os.MkdirAll(dataDir, 0o700); err != nil {
				t.Fatal(err)
			}
			noURL := []string{"KUMO_DATABASE_URL="} // SQLite, whatever the test's environment says
			if out, err := runEnv(t, noURL, "admin", "leader", "--data-dir", dataDir); err == nil {
				t.Errorf("admin leader without a database succeeded:\n%s", out)
			}
			st, err := sqlite.Open(t.Context(), filepath.Join(dataDir, "kumo.db"))
			if err != nil {
				t.Fatal(err)
			}
			return st, []string{"--data-dir", dataDir}, noURL
		}},
		{"postgres", func(t *testing.T) (store.Store, []string, []string) {
			url := pgtest.NewDatabase(t)
			st, err := postgres.Open(t.Context(), url)
			if err != nil {
				t.Fatal(err)
			}
			return st, nil, []string{"KUMO_DATABASE_URL=" + url}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st, flags, env := tt.open(t)
			defer st.Close()
			show := func(want ...string) string {
				t.Helper()
				out, err := runEnv(t, env, append([]string{"admin", "leader"}, flags...)...)
				if err != nil {
					t.Fatalf("admin leader: %v\n%s", err, out)
				}
				for _, w := range want {
					if !strings.Contains(out, w) {
						t.Errorf("admin leader output lacks %q:\n%s", w, out)
					}
				}
				return out
			}
			show("No leader has held the lease.")

			ctx := t.Context()
			if _, err := st.LeaseAcquire(ctx, "controller", "replica-a", "10.0.0.1:8443", time.Hour); err != nil {
				t.Fatal(err)
			}
			if out := show("Lease:        controller", "Holder:       replica-a", "Address:      10.0.0.1:8443", "Term:         1", "Last renewed:", "Expires:"); strings.Contains(out, "expired") {
				t.Errorf("a lease held for an hour shows as expired:\n%s", out)
			}

			// replica-a releases; replica-b takes over and stops renewing.
			if err := st.LeaseRelease(ctx, "controller", "replica-a"); err != nil {
				t.Fatal(err)
			}
			l, err := st.LeaseAcquire(ctx, "controller", "replica-b", "10.0.0.2:8443", time.Millisecond)
			if err != nil {
				t.Fatal(err)
			}
			for time.Now().Before(l.ExpiresAt.Add(10 * time.Millisecond)) {
				time.Sleep(5 * time.Millisecond)
			}
			show("Holder:       replica-b", "Address:      10.0.0.2:8443", "Term:         2", "expired")

			if err := st.LeaseRelease(ctx, "controller", "replica-b"); err != nil {
				t.Fatal(err)
			}
			show("Holder:       none (released)", "Term:         2", "expired")
		})
	}
}

// runEnv runs kumo with args and env added to the test's environment, and
// returns its combined output.
func runEnv(t *testing.T, env []string, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, kumo, args...)
	cmd.Dir = t.TempDir()
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

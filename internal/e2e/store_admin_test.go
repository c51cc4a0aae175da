package e2e

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"kumo/api"
	"kumo/internal/store/postgres/pgtest"
)

// getRaw returns the body of a GET that must answer 200.
func getRaw(t *testing.T, s *server, path string) string {
	t.Helper()
	status, raw := s.request(context.Background(), "GET", path, nil)
	if status != 200 {
		t.Fatalf("GET %s: %d %s", path, status, raw)
	}
	return string(raw)
}

// withToken sends GET path with the given bearer token and returns the
// status.
func withToken(t *testing.T, s *server, path, token string) int {
	t.Helper()
	req, err := http.NewRequest("GET", s.base+path+"?api-version=2024-04-01", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := s.http.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// readyz returns /readyz's status.
func readyz(t *testing.T, s *server) int {
	t.Helper()
	resp, err := s.http.Get(s.base + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// nodeIDs returns the IDs of a compute's nodes, sorted.
func nodeIDs(t *testing.T, s *server, compute string) []string {
	t.Helper()
	status, raw := s.request(context.Background(), "POST", workspacePath+"/computes/"+compute+"/listNodes", nil)
	var nodes api.NodeList
	if status != 200 || json.Unmarshal(raw, &nodes) != nil {
		t.Fatalf("listNodes: %d %s", status, raw)
	}
	var ids []string
	for _, n := range nodes.Nodes {
		ids = append(ids, n.NodeID)
	}
	slices.Sort(ids)
	return ids
}

// TestMigrateSQLiteToPostgres: a team's SQLite store, made by a real kumo
// up with a cluster, its node, a finished job and a second token, moves
// to PostgreSQL with kumo admin migrate; kumo up --database then answers
// the same API calls, and both tokens still authenticate.
func TestMigrateSQLiteToPostgres(t *testing.T) {
	dbURL := pgtest.NewDatabase(t) // dropped after the servers stop
	// Trust authentication ignores the password; it must never be shown.
	u, err := url.Parse(dbURL)
	if err != nil {
		t.Fatal(err)
	}
	u.User = url.UserPassword(u.User.Username(), "s3cret-pw")
	dbURL = u.String()

	s := startServer(t, "", fastNodes...)
	createCluster(t, s, "pool", 1, 1, "PT30M")
	waitFor(t, 60*time.Second, "a node to register", func() (bool, string) {
		c := getCompute(t, s, "pool")
		return c.Properties.Properties.NodeStateCounts.IdleNodeCount == 1, ""
	})
	submitJob(t, s, "hello", "pool", "echo migrated")
	if j := waitJob(t, s, "hello", 60*time.Second); j.Properties.Status != api.JobCompleted {
		t.Fatalf("job hello: %s %+v", j.Properties.Status, j.Properties.Error)
	}
	var reader api.TokenCreated
	status, raw := s.request(context.Background(), "POST", "/kumo/v1/tokens", api.TokenCreateRequest{Name: "ci", Role: api.RoleReader})
	if status != 201 || json.Unmarshal(raw, &reader) != nil {
		t.Fatalf("create token: %d %s", status, raw)
	}
	// The autoscaler records Steady within a pass or so of the node's
	// start; the answers are compared once nothing is in motion.
	waitFor(t, 60*time.Second, "the cluster to be steady", func() (bool, string) {
		a := getCompute(t, s, "pool").Properties.Properties.AllocationState
		return a == api.AllocationSteady, string(a)
	})
	wantCompute := getRaw(t, s, workspacePath+"/computes/pool")
	wantJob := getRaw(t, s, workspacePath+"/jobs/hello")
	wantNodes := nodeIDs(t, s, "pool")
	wantTokens := getRaw(t, s, "/kumo/v1/tokens")
	if err := s.stop(); err != nil {
		t.Fatalf("stop: %v", err)
	}

	// An API call's answer is compared after the move.
	out, err := run(t, s.dir, "admin", "migrate", "--from", "sqlite:"+filepath.Join(s.dir, "data"), "--to", dbURL)
	if err != nil {
		t.Fatalf("admin migrate: %v\n%s", err, out)
	}
	for _, want := range []string{"computes", "jobs", "nodes", "tokens"} {
		if !strings.Contains(out, want) {
			t.Errorf("migrate output lacks %s:\n%s", want, out)
		}
	}
	if strings.Contains(out, "s3cret-pw") {
		t.Errorf("migrate output shows the database password:\n%s", out)
	}
	// A second migrate into the now-full database is refused.
	if out, err := run(t, s.dir, "admin", "migrate", "--from", "sqlite:"+filepath.Join(s.dir, "data"), "--to", dbURL); err == nil || !strings.Contains(out, "not empty") {
		t.Errorf("second migrate: %v\n%s", err, out)
	}

	// Same directory (CA, client config), same address: the node's agent
	// reconnects to the control plane, now on PostgreSQL.
	s2 := startServer(t, s.dir, append(slices.Clip(fastNodes), "--database", dbURL, "--addr", strings.TrimPrefix(s.base, "https://"))...)
	if !strings.Contains(s2.out.String(), "PostgreSQL at") {
		t.Errorf("kumo up does not say it uses PostgreSQL:\n%s", s2.out)
	}
	if strings.Contains(s2.out.String(), "s3cret-pw") {
		t.Errorf("kumo up shows the database password:\n%s", s2.out)
	}
	if got := readyz(t, s2); got != 200 {
		t.Errorf("readyz on PostgreSQL = %d, want 200", got)
	}
	if got := getRaw(t, s2, workspacePath+"/jobs/hello"); got != wantJob {
		t.Errorf("job after migrate:\n got %s\nwant %s", got, wantJob)
	}
	if got := getRaw(t, s2, workspacePath+"/computes/pool"); got != wantCompute {
		t.Errorf("compute after migrate:\n got %s\nwant %s", got, wantCompute)
	}
	if got := nodeIDs(t, s2, "pool"); !slices.Equal(got, wantNodes) {
		t.Errorf("nodes after migrate: %v, want %v", got, wantNodes)
	}
	if got := getRaw(t, s2, "/kumo/v1/tokens"); got != wantTokens {
		t.Errorf("tokens after migrate:\n got %s\nwant %s", got, wantTokens)
	}
	if got := withToken(t, s2, workspacePath+"/computes", reader.Token); got != 200 {
		t.Errorf("the reader token after migrate: %d, want 200", got)
	}
	// The migrated store takes new work.
	submitJob(t, s2, "after", "pool", "echo on postgres")
	if j := waitJob(t, s2, "after", 60*time.Second); j.Properties.Status != api.JobCompleted {
		t.Errorf("job after migrate: %s %+v", j.Properties.Status, j.Properties.Error)
	}
}

// TestBackupRestoreLiveSQLite backs up the SQLite store of a serving
// control plane, changes the state after the backup, restores the backup
// and checks that kumo serves the state as it was at the backup.
func TestBackupRestoreLiveSQLite(t *testing.T) {
	s := startServer(t, "")
	createCluster(t, s, "kept", 0, 1, "PT30M")
	wantCompute := getRaw(t, s, workspacePath+"/computes/kept")
	backup := filepath.Join(t.TempDir(), "kumo-backup.db")
	dataDir := filepath.Join(s.dir, "data")
	if out, err := run(t, s.dir, "admin", "backup", "--data-dir", dataDir, backup); err != nil {
		t.Fatalf("admin backup of a live store: %v\n%s", err, out)
	}
	createCluster(t, s, "later", 0, 1, "PT30M")

	// A running control plane's store is not replaced.
	if out, err := run(t, s.dir, "admin", "restore", "--data-dir", dataDir, "--force", backup); err == nil {
		t.Fatalf("restore under a running control plane succeeded:\n%s", out)
	}
	if err := s.stop(); err != nil {
		t.Fatalf("stop: %v", err)
	}
	if out, err := run(t, s.dir, "admin", "restore", "--data-dir", dataDir, backup); err == nil || !strings.Contains(out, "--force") {
		t.Errorf("restore over a database without --force: %v\n%s", err, out)
	}
	if out, err := run(t, s.dir, "admin", "restore", "--data-dir", dataDir, "--force", backup); err != nil {
		t.Fatalf("admin restore: %v\n%s", err, out)
	}

	s2 := startServer(t, s.dir, "--addr", strings.TrimPrefix(s.base, "https://"))
	if got := getRaw(t, s2, workspacePath+"/computes/kept"); got != wantCompute {
		t.Errorf("compute after restore:\n got %s\nwant %s", got, wantCompute)
	}
	if status, raw := s2.request(context.Background(), "GET", workspacePath+"/computes/later", nil); status != 404 {
		t.Errorf("compute made after the backup: %d %s, want 404", status, raw)
	}
	if got := readyz(t, s2); got != 200 {
		t.Errorf("readyz after restore = %d, want 200", got)
	}
}

// envE2EPostgres, when set, makes startServer keep every control plane's
// state in PostgreSQL (a database per test directory on the server of
// KUMO_TEST_POSTGRES_URL) instead of SQLite, to run the end-to-end tests
// on that store: KUMO_E2E_POSTGRES=1 go test ./internal/e2e -run TestX.
const envE2EPostgres = "KUMO_E2E_POSTGRES"

var (
	pgMu    sync.Mutex
	pgByDir = map[string]string{} // test directory → its database's URL
)

// postgresFor returns the database of the control plane in dir, made on
// first use, so that a control plane restarted in dir finds its state.
func postgresFor(t testing.TB, dir string) string {
	t.Helper()
	pgMu.Lock()
	defer pgMu.Unlock()
	if u, ok := pgByDir[dir]; ok {
		return u
	}
	u := pgtest.NewDatabase(t)
	pgByDir[dir] = u
	t.Cleanup(func() {
		pgMu.Lock()
		defer pgMu.Unlock()
		delete(pgByDir, dir)
	})
	return u
}

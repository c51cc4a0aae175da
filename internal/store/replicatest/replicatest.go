// Package replicatest gives tests the stores of two control plane
// replicas that share one fresh database, on each backend kumo has.
package replicatest

import (
	"path/filepath"
	"testing"

	"kumo/internal/store"
	"kumo/internal/store/postgres"
	"kumo/internal/store/postgres/pgtest"
	"kumo/internal/store/sqlite"
)

// Backends names the backends Pair opens.
var Backends = []string{"sqlite", "postgres"}

// Pair returns two stores on one fresh database of backend, closed when
// the test ends. On SQLite, which one process serves, it is one Store
// twice; on PostgreSQL two Stores with connections of their own (the test
// skips without a test server; see pgtest).
func Pair(t *testing.T, backend string) (store.Store, store.Store) {
	t.Helper()
	if backend == "sqlite" {
		st, err := sqlite.Open(t.Context(), filepath.Join(t.TempDir(), "kumo.db"))
		if err != nil {
			t.Fatalf("sqlite.Open: %v", err)
		}
		t.Cleanup(func() { st.Close() })
		return st, st
	}
	url := pgtest.NewDatabase(t)
	var sts [2]store.Store
	for i := range sts {
		st, err := postgres.Open(t.Context(), url)
		if err != nil {
			t.Fatalf("postgres.Open: %v", err)
		}
		t.Cleanup(func() { st.Close() })
		sts[i] = st
	}
	return sts[0], sts[1]
}

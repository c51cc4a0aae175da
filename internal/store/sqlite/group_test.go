package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"kumo/internal/model"
	"kumo/internal/store"
)

// TestGroupCommit queues writes while a transaction is held open and
// checks that the next transaction takes them all, that a write that
// fails is rolled back alone, and that each write's result is what it
// would be alone.
func TestGroupCommit(t *testing.T) {
	s := openTest(t, filepath.Join(t.TempDir(), "kumo.db"))
	ctx := t.Context()
	const ws = "/subscriptions/s/resourceGroups/rg/providers/Microsoft.MachineLearningServices/workspaces/ws"
	job := func(name string) model.Job {
		return model.Job{ID: ws + "/jobs/" + name, WorkspaceID: ws, Name: name, RunID: "run-" + name,
			ComputeID: ws + "/computes/cpu", Command: "true", InstanceCount: 1, Status: model.JobQueued,
			CreatedAt: time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)}
	}
	if err := s.JobCreate(ctx, job("taken")); err != nil {
		t.Fatal(err)
	}

	// A write that holds the transaction until released.
	hold, held := make(chan struct{}), make(chan struct{})
	first := make(chan error, 1)
	go func() {
		first <- s.inTx(ctx, func(ctx context.Context, tx *sql.Tx) error {
			close(held)
			<-hold
			return nil
		})
	}()
	<-held
	before := s.group.txs.Load()

	errBoom := errors.New("boom")
	names := []string{"a", "b", "taken", "c", "d"} // "taken" conflicts
	var wg sync.WaitGroup
	errs := make([]error, len(names)+1)
	for i, name := range names {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = s.JobCreate(ctx, job(name))
		}()
	}
	wg.Add(1)
	go func() {
		// Writes a row, then fails: the row must not stay.
		defer wg.Done()
		errs[len(names)] = s.inTx(ctx, func(ctx context.Context, tx *sql.Tx) error {
			if _, err := tx.ExecContext(ctx, `INSERT INTO events (compute_id, compute_key, time, kind, message) VALUES ('x', 'x', 't', 'k', 'rolled back')`); err != nil {
				return err
			}
			return errBoom
		})
	}()
	// Release the held transaction once every write is queued.
	for deadline := time.Now().Add(30 * time.Second); ; {
		s.group.mu.Lock()
		n := len(s.group.queue)
		s.group.mu.Unlock()
		if n == len(names)+1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d writes queued after 30s, want %d", n, len(names)+1)
		}
		time.Sleep(time.Millisecond)
	}
	close(hold)
	if err := <-first; err != nil {
		t.Fatalf("held write: %v", err)
	}
	wg.Wait()

	if got := s.group.txs.Load() - before; got != 1 {
		t.Errorf("the queued writes took %d transactions, want 1", got)
	}
	for i, name := range names {
		want := error(nil)
		if name == "taken" {
			want = store.ErrConflict
		}
		if !errors.Is(errs[i], want) || (want == nil && errs[i] != nil) {
			t.Errorf("JobCreate(%s) = %v, want %v", name, errs[i], want)
		}
		if _, err := s.JobGet(ctx, ws+"/jobs/"+name); err != nil {
			t.Errorf("JobGet(%s) after its write returned: %v", name, err)
		}
	}
	if !errors.Is(errs[len(names)], errBoom) {
		t.Errorf("failing write = %v, want %v", errs[len(names)], errBoom)
	}
	var n int
	if err := s.r.QueryRowContext(ctx, `SELECT count(*) FROM events WHERE message = 'rolled back'`).Scan(&n); err != nil || n != 0 {
		t.Errorf("rows of the failed write: %d (%v), want none", n, err)
	}
	counts, err := s.JobCountByCompute(ctx, ws+"/computes/cpu", model.JobQueued)
	if err != nil || counts[model.JobQueued] != 5 {
		t.Errorf("queued jobs counted: %v (%v), want 5", counts, err)
	}
}

// BenchmarkConcurrentWrites measures job creates from 16 writers at once,
// which group commit puts in shared transactions.
func BenchmarkConcurrentWrites(b *testing.B) {
	s := openTest(b, filepath.Join(b.TempDir(), "kumo.db"))
	const ws = "/subscriptions/s/resourceGroups/rg/providers/Microsoft.MachineLearningServices/workspaces/ws"
	var mu sync.Mutex
	i := 0
	b.SetParallelism(8)
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			mu.Lock()
			i++
			name := fmt.Sprintf("j%d", i)
			mu.Unlock()
			j := model.Job{ID: ws + "/jobs/" + name, WorkspaceID: ws, Name: name, RunID: "run-" + name,
				ComputeID: ws + "/computes/cpu", Command: "true", InstanceCount: 1, Status: model.JobQueued,
				CreatedAt: time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)}
			if err := s.JobCreate(context.Background(), j); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/float64(s.group.txs.Load()), "writes/tx")
}

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
	if err := s.JobCreate(ctx, groupJob("taken")); err != nil {
		t.Fatal(err)
	}
	// A write that holds the transaction until released.
	h := holdWriter(t, s)

	errBoom := errors.New("boom")
	names := []string{"a", "b", "taken", "c", "d"} // "taken" conflicts
	var wg sync.WaitGroup
	errs := make([]error, len(names)+1)
	for i, name := range names {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = s.JobCreate(ctx, groupJob(name))
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
	h.release(t, len(names)+1)
	wg.Wait()

	if got := h.groups(); got != 1 {
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
		if _, err := s.JobGet(ctx, testWS+"/jobs/"+name); err != nil {
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
	counts, err := s.JobCountByCompute(ctx, testWS+"/computes/cpu", model.JobQueued)
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

// testWS is the workspace of groupJob's jobs.
const testWS = "/subscriptions/s/resourceGroups/rg/providers/Microsoft.MachineLearningServices/workspaces/ws"

// groupJob is a queued job named name, for the group commit tests.
func groupJob(name string) model.Job {
	return model.Job{ID: testWS + "/jobs/" + name, WorkspaceID: testWS, Name: name, RunID: "run-" + name,
		ComputeID: testWS + "/computes/cpu", Command: "true", InstanceCount: 1, Status: model.JobQueued,
		CreatedAt: time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)}
}

// heldWriter is a transaction that holds the writer, so that writes queue
// behind it for the next group.
type heldWriter struct {
	s      *Store
	hold   chan struct{}
	first  chan error
	before int64 // group transactions begun when it took the writer
}

// holdWriter begins a transaction that holds the writer until release.
func holdWriter(t *testing.T, s *Store) *heldWriter {
	t.Helper()
	h := &heldWriter{s: s, hold: make(chan struct{}), first: make(chan error, 1)}
	held := make(chan struct{})
	go func() {
		h.first <- s.inTx(t.Context(), func(ctx context.Context, tx *sql.Tx) error {
			close(held)
			<-h.hold
			return nil
		})
	}()
	<-held
	h.before = s.group.txs.Load()
	return h
}

// release waits until n writes queue behind the held transaction, then
// ends it.
func (h *heldWriter) release(t *testing.T, n int) {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(time.Millisecond) {
		h.s.group.mu.Lock()
		q := len(h.s.group.queue)
		h.s.group.mu.Unlock()
		if q == n {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d writes queued after 30s, want %d", q, n)
		}
	}
	close(h.hold)
	if err := <-h.first; err != nil {
		t.Fatalf("held write: %v", err)
	}
}

// groups returns how many group transactions began after the held one.
func (h *heldWriter) groups() int64 { return h.s.group.txs.Load() - h.before }

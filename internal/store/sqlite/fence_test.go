package sqlite

import (
	"context"
	"errors"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"kumo/internal/model"
	"kumo/internal/store"
)

// TestGroupCommitFence queues fenced and unfenced writes while a
// transaction is held open, so that the next transaction takes them all:
// the writes under a stale fence fail alone with ErrFenced and leave no
// row, and the others, fenced with the current term or not fenced, are
// kept.
func TestGroupCommitFence(t *testing.T) {
	s := openTest(t, filepath.Join(t.TempDir(), "kumo.db"))
	ctx := t.Context()
	old, err := s.LeaseAcquire(ctx, "controller", "a", "", time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	var cur model.Lease
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(time.Millisecond) {
		if cur, err = s.LeaseAcquire(ctx, "controller", "b", "", time.Hour); err == nil {
			break
		}
		if !errors.Is(err, store.ErrLeaseHeld) || time.Now().After(deadline) {
			t.Fatalf("take over: %v", err)
		}
	}
	stale := store.WithFence(ctx, "controller", old.Term)
	current := store.WithFence(ctx, "controller", cur.Term)

	// Prepare the statements now: preparing needs the write connection,
	// which the held transaction below keeps.
	if err := s.JobCreate(current, groupJob("warm")); err != nil {
		t.Fatal(err)
	}
	h := holdWriter(t, s)

	writes := []struct {
		name string
		ctx  context.Context
		want error
	}{
		{"plain-1", ctx, nil},
		{"stale-1", stale, store.ErrFenced},
		{"current-1", current, nil},
		{"stale-2", stale, store.ErrFenced},
		{"plain-2", ctx, nil},
		{"current-2", current, nil},
	}
	var wg sync.WaitGroup
	errs := make([]error, len(writes))
	for i, w := range writes {
		wg.Go(func() { errs[i] = s.JobCreate(w.ctx, groupJob(w.name)) })
	}
	h.release(t, len(writes))
	wg.Wait()

	if got := h.groups(); got != 1 {
		t.Errorf("the queued writes took %d transactions, want 1", got)
	}
	for i, w := range writes {
		if !errors.Is(errs[i], w.want) {
			t.Errorf("JobCreate(%s) = %v, want %v", w.name, errs[i], w.want)
		}
		_, err := s.JobGet(ctx, testWS+"/jobs/"+w.name)
		if stored := err == nil; stored != (w.want == nil) {
			t.Errorf("job %s stored = %v (%v), want %v", w.name, stored, err, w.want == nil)
		}
	}
}

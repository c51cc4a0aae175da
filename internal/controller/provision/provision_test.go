package provision

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"go.uber.org/goleak"

	"kumo/internal/model"
	"kumo/internal/store"
	"kumo/internal/store/sqlite"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

var (
	t0  = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	now = t0.Add(time.Hour) // the provisioner's clock
)

// openStore opens a SQLite store in a temporary directory, closed when the
// test ends.
func openStore(t *testing.T) *sqlite.Store {
	t.Helper()
	s, err := sqlite.Open(t.Context(), filepath.Join(t.TempDir(), "kumo.db"))
	if err != nil {
		t.Fatalf("sqlite.Open: %v", err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return s
}

// setup returns a store holding one workspace.
func setup(t *testing.T) (*sqlite.Store, model.Workspace) {
	t.Helper()
	s := openStore(t)
	ws := model.Workspace{
		ID:           "/subscriptions/sub/resourceGroups/rg/providers/Microsoft.MachineLearningServices/workspaces/ws",
		Subscription: "sub", ResourceGroup: "rg", Name: "ws", Location: "local", CreatedAt: t0, ModifiedAt: t0,
	}
	if err := s.WorkspaceCreate(t.Context(), ws); err != nil {
		t.Fatalf("WorkspaceCreate: %v", err)
	}
	return s, ws
}

func newProvisioner(s store.Store, f Finalizer) *Provisioner {
	return New(Config{
		Store: s, Finalizer: f, Resync: time.Hour,
		Now: func() time.Time { return now },
		Log: slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
}

func newOp(id string, c model.Compute, kind model.OperationKind) model.Operation {
	return model.Operation{ID: id, Location: c.Location, Kind: kind, ComputeID: c.ID, Status: model.OpInProgress, StartedAt: t0}
}

// createCompute stores a compute named name in state Creating with an
// in-progress create operation "op-create-<name>".
func createCompute(t *testing.T, s store.Store, ws model.Workspace, name string) (model.Compute, model.Operation) {
	t.Helper()
	c := model.Compute{
		ID: ws.ID + "/computes/" + name, WorkspaceID: ws.ID, Name: name, Location: ws.Location,
		VMSize: "Standard_DS3_v2", Priority: model.PriorityDedicated,
		Scale:       model.ScaleSettings{MaxNodes: 2, IdleTime: model.DefaultIdleTime},
		RemoteLogin: "Disabled", State: model.StateCreating, ETag: "etag-0",
		CreatedAt: t0, ModifiedAt: t0, CreatedBy: "alice", ModifiedBy: "alice",
	}
	op := newOp("op-create-"+name, c, model.OpCreate)
	c.OperationID = op.ID
	if err := s.ComputeCreate(t.Context(), c, op); err != nil {
		t.Fatalf("ComputeCreate(%s): %v", name, err)
	}
	return c, op
}

// transition moves c to state with a new in-progress operation of kind, as
// the API does for an overwrite or a delete.
func transition(t *testing.T, s store.Store, c model.Compute, state model.ProvisioningState, kind model.OperationKind, opID string) (model.Compute, model.Operation) {
	t.Helper()
	op := newOp(opID, c, kind)
	prev := c.ETag
	c.State, c.OperationID, c.ETag = state, op.ID, prev+"+"
	if err := s.ComputeUpdate(t.Context(), c, prev, &op); err != nil {
		t.Fatalf("ComputeUpdate(%s to %s): %v", c.Name, state, err)
	}
	return c, op
}

// settle marks op as ended successfully, as an earlier pass would have.
func settle(t *testing.T, s store.Store, op model.Operation) {
	t.Helper()
	op.Status, op.EndedAt = model.OpSucceeded, t0
	if err := s.OperationUpdate(t.Context(), op); err != nil {
		t.Fatalf("OperationUpdate(%s): %v", op.ID, err)
	}
}

func mustReconcile(t *testing.T, p *Provisioner) {
	t.Helper()
	if err := p.Reconcile(t.Context()); err != nil {
		t.Fatalf("Reconcile: %v", err)
	}
}

// wantState fails the test unless the compute with id is in state (or,
// for state "", absent).
func wantState(t *testing.T, s store.Store, id string, state model.ProvisioningState) model.Compute {
	t.Helper()
	c, err := s.ComputeGet(t.Context(), id)
	switch {
	case state == "" && errors.Is(err, store.ErrNotFound):
	case state == "" && err == nil:
		t.Errorf("ComputeGet(%s) = compute in state %s, want it removed", id, c.State)
	case err != nil:
		t.Errorf("ComputeGet(%s): %v", id, err)
	case c.State != state:
		t.Errorf("ComputeGet(%s) state = %s, want %s", id, c.State, state)
	}
	return c
}

// wantOp fails the test unless the stored operation op.ID ended (or not)
// as want says.
func wantOp(t *testing.T, s store.Store, op model.Operation, status model.OperationStatus, opErr *model.Error) {
	t.Helper()
	want := op
	want.Status, want.Error = status, opErr
	if status != model.OpInProgress {
		want.EndedAt = now
	}
	got, err := s.OperationGet(t.Context(), op.ID)
	if err != nil {
		t.Fatalf("OperationGet(%s): %v", op.ID, err)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("operation %s mismatch (-want +got):\n%s", op.ID, diff)
	}
}

var errComputeDeleted = &model.Error{Code: "ComputeDeleted", Message: "the compute was deleted before the operation finished"}

func TestReconcile(t *testing.T) {
	tests := []struct {
		name      string
		state     model.ProvisioningState // the compute's state before the pass
		wantState model.ProvisioningState // after; "" means removed
	}{
		{"creating", model.StateCreating, model.StateSucceeded},
		{"updating", model.StateUpdating, model.StateSucceeded},
		{"deleting", model.StateDeleting, ""},
		{"succeeded stays", model.StateSucceeded, model.StateSucceeded},
		{"failed stays", model.StateFailed, model.StateFailed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, ws := setup(t)
			c, op := createCompute(t, s, ws, "cpu")
			switch tt.state {
			case model.StateUpdating:
				settle(t, s, op)
				c, op = transition(t, s, c, model.StateUpdating, model.OpUpdate, "op-update")
			case model.StateDeleting:
				settle(t, s, op)
				c, op = transition(t, s, c, model.StateDeleting, model.OpDelete, "op-delete")
			case model.StateSucceeded, model.StateFailed:
				settle(t, s, op)
				c, _ = transition(t, s, c, tt.state, model.OpUpdate, "op-other")
				settle(t, s, model.Operation{ID: "op-other", Location: c.Location, Kind: model.OpUpdate, ComputeID: c.ID, StartedAt: t0})
			}

			p := newProvisioner(s, nil)
			var ready []string
			p.cfg.Ready = func(id string) { ready = append(ready, id) }
			mustReconcile(t, p)
			wantReady := []string(nil)
			if tt.state == model.StateCreating || tt.state == model.StateUpdating {
				wantReady = []string{c.ID} // scaling may start at once
			}
			if diff := cmp.Diff(wantReady, ready); diff != "" {
				t.Errorf("Ready calls (-want +got):\n%s", diff)
			}

			got := wantState(t, s, c.ID, tt.wantState)
			switch tt.state {
			case model.StateCreating, model.StateUpdating:
				if got.ETag == c.ETag {
					t.Errorf("ETag after the pass = %q, unchanged; want a new one", got.ETag)
				}
				want := c
				want.State, want.ETag = model.StateSucceeded, got.ETag
				if diff := cmp.Diff(want, got); diff != "" {
					t.Errorf("compute after the pass mismatch (-want +got):\n%s", diff)
				}
				wantOp(t, s, op, model.OpSucceeded, nil)
			case model.StateDeleting:
				wantOp(t, s, op, model.OpSucceeded, nil)
			default:
				if diff := cmp.Diff(c, got); diff != "" {
					t.Errorf("settled compute changed (-before +after):\n%s", diff)
				}
			}
		})
	}
}

func TestReconcileFailedCompute(t *testing.T) {
	s, ws := setup(t)
	c, op := createCompute(t, s, ws, "cpu")
	prev := c.ETag
	c.State, c.Errors, c.ETag = model.StateFailed, []model.Error{{Code: "AllocationFailed", Message: "no capacity"}}, "etag-1"
	if err := s.ComputeUpdate(t.Context(), c, prev, nil); err != nil {
		t.Fatal(err)
	}
	mustReconcile(t, newProvisioner(s, nil))
	wantState(t, s, c.ID, model.StateFailed)
	wantOp(t, s, op, model.OpFailed, &model.Error{Code: "AllocationFailed", Message: "no capacity"})
}

// finalizer is a Finalizer whose answer the test sets.
type finalizer struct {
	mu    sync.Mutex
	done  bool
	err   error
	calls []string // compute IDs, in call order
}

func (f *finalizer) Release(_ context.Context, c model.Compute) (bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, c.ID)
	return f.done, f.err
}

func (f *finalizer) set(done bool, err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.done, f.err = done, err
}

func (f *finalizer) callCount() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.calls)
}

func TestReconcileFinalizer(t *testing.T) {
	s, ws := setup(t)
	c, op := createCompute(t, s, ws, "cpu")
	settle(t, s, op)
	c, del := transition(t, s, c, model.StateDeleting, model.OpDelete, "op-delete")
	other, otherOp := createCompute(t, s, ws, "other") // not being deleted: never released

	f := &finalizer{}
	p := newProvisioner(s, f)

	// Not done yet: the compute and its delete stay, pass after pass.
	for range 2 {
		mustReconcile(t, p)
		wantState(t, s, c.ID, model.StateDeleting)
		wantOp(t, s, del, model.OpInProgress, nil)
	}

	// Release fails: the compute stays and the pass reports the error.
	boom := errors.New("boom")
	f.set(false, boom)
	if err := p.Reconcile(t.Context()); !errors.Is(err, boom) {
		t.Errorf("Reconcile with a failing finalizer error = %v, want it to wrap %v", err, boom)
	}
	wantState(t, s, c.ID, model.StateDeleting)
	wantOp(t, s, del, model.OpInProgress, nil)

	// Done: the compute goes and its delete succeeds.
	f.set(true, nil)
	mustReconcile(t, p)
	wantState(t, s, c.ID, "")
	wantOp(t, s, del, model.OpSucceeded, nil)

	if diff := cmp.Diff([]string{c.ID, c.ID, c.ID, c.ID}, f.calls); diff != "" {
		t.Errorf("Release calls mismatch (-want +got):\n%s", diff)
	}
	wantState(t, s, other.ID, model.StateSucceeded)
	wantOp(t, s, otherOp, model.OpSucceeded, nil)
}

func TestReconcileSupersededOperation(t *testing.T) {
	s, ws := setup(t)

	// A create overtaken by an overwrite: both end with the compute's
	// outcome.
	c, create := createCompute(t, s, ws, "cpu")
	c, update := transition(t, s, c, model.StateUpdating, model.OpUpdate, "op-update")
	mustReconcile(t, newProvisioner(s, nil))
	wantState(t, s, c.ID, model.StateSucceeded)
	wantOp(t, s, create, model.OpSucceeded, nil)
	wantOp(t, s, update, model.OpSucceeded, nil)

	// A create overtaken by a delete fails at once; the delete waits for
	// the finalizer, then succeeds.
	d, create2 := createCompute(t, s, ws, "gpu")
	d, del := transition(t, s, d, model.StateDeleting, model.OpDelete, "op-delete")
	f := &finalizer{}
	p := newProvisioner(s, f)
	mustReconcile(t, p)
	wantState(t, s, d.ID, model.StateDeleting)
	wantOp(t, s, create2, model.OpFailed, &model.Error{Code: "ComputeDeleted", Message: "the compute is being deleted"})
	wantOp(t, s, del, model.OpInProgress, nil)
	f.set(true, nil)
	mustReconcile(t, p)
	wantState(t, s, d.ID, "")
	wantOp(t, s, del, model.OpSucceeded, nil)
}

func TestReconcileVanishedCompute(t *testing.T) {
	s, ws := setup(t)
	gone := model.Compute{ID: ws.ID + "/computes/gone", Location: ws.Location}
	tests := []struct {
		op         model.Operation
		wantStatus model.OperationStatus
		wantErr    *model.Error
	}{
		{newOp("op-create", gone, model.OpCreate), model.OpFailed, errComputeDeleted},
		{newOp("op-update", gone, model.OpUpdate), model.OpFailed, errComputeDeleted},
		{newOp("op-delete", gone, model.OpDelete), model.OpSucceeded, nil},
	}
	for _, tt := range tests {
		if err := s.OperationCreate(t.Context(), tt.op); err != nil {
			t.Fatalf("OperationCreate(%s): %v", tt.op.ID, err)
		}
	}
	mustReconcile(t, newProvisioner(s, nil))
	for _, tt := range tests {
		wantOp(t, s, tt.op, tt.wantStatus, tt.wantErr)
	}
}

func TestReconcileTwice(t *testing.T) {
	s, ws := setup(t)
	a, _ := createCompute(t, s, ws, "a")
	b, opB := createCompute(t, s, ws, "b")
	settle(t, s, opB)
	transition(t, s, b, model.StateDeleting, model.OpDelete, "op-delete-b")
	if err := s.OperationCreate(t.Context(), newOp("op-orphan", model.Compute{ID: ws.ID + "/computes/gone"}, model.OpCreate)); err != nil {
		t.Fatal(err)
	}

	p := newProvisioner(s, nil)
	mustReconcile(t, p)
	before := snapshot(t, s, ws, "op-create-a", "op-delete-b", "op-orphan")

	// A second pass, even with a later clock, changes nothing.
	p.cfg.Now = func() time.Time { return now.Add(time.Hour) }
	mustReconcile(t, p)
	after := snapshot(t, s, ws, "op-create-a", "op-delete-b", "op-orphan")
	if diff := cmp.Diff(before, after); diff != "" {
		t.Errorf("second pass changed the store (-before +after):\n%s", diff)
	}
	wantState(t, s, a.ID, model.StateSucceeded)
	wantState(t, s, b.ID, "")
}

// storeState is what a pass may change.
type storeState struct {
	Computes []model.Compute
	Ops      []model.Operation
}

func snapshot(t *testing.T, s store.Store, ws model.Workspace, opIDs ...string) storeState {
	t.Helper()
	var st storeState
	var err error
	if st.Computes, err = s.ComputeList(t.Context(), ws.ID, store.Page{}); err != nil {
		t.Fatalf("ComputeList: %v", err)
	}
	for _, id := range opIDs {
		op, err := s.OperationGet(t.Context(), id)
		if err != nil {
			t.Fatalf("OperationGet(%s): %v", id, err)
		}
		st.Ops = append(st.Ops, op)
	}
	return st
}

// waitFor polls cond until it holds, failing the test after a deadline.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.After(10 * time.Second)
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		select {
		case <-deadline:
			t.Fatalf("timed out waiting for %s", what)
		case <-tick.C:
		}
	}
}

func stateIs(t *testing.T, s store.Store, id string, state model.ProvisioningState) func() bool {
	return func() bool {
		c, err := s.ComputeGet(t.Context(), id)
		if err != nil {
			t.Fatalf("ComputeGet(%s): %v", id, err)
		}
		return c.State == state
	}
}

func TestStartNotifyStop(t *testing.T) {
	s, ws := setup(t)
	first, firstOp := createCompute(t, s, ws, "first")
	f := &finalizer{}
	p := newProvisioner(s, f) // Resync is an hour: only Start and Notify cause passes
	p.Start(t.Context())
	stopped := false
	defer func() {
		if !stopped {
			p.Stop()
		}
	}()

	// Start runs a pass at once.
	waitFor(t, "the first pass", stateIs(t, s, first.ID, model.StateSucceeded))

	// Each Notify causes another pass.
	second, _ := createCompute(t, s, ws, "second")
	p.Notify()
	waitFor(t, "a pass after Notify", stateIs(t, s, second.ID, model.StateSucceeded))

	f.set(true, nil)
	calls := f.callCount()
	second = wantState(t, s, second.ID, model.StateSucceeded) // with the pass's ETag
	transition(t, s, second, model.StateDeleting, model.OpDelete, "op-delete")
	for range 5 {
		p.Notify() // never blocks, however often it is called
	}
	waitFor(t, "the compute's removal", func() bool {
		_, err := s.ComputeGet(t.Context(), second.ID)
		return errors.Is(err, store.ErrNotFound)
	})
	if f.callCount() != calls+1 {
		t.Errorf("Release called %d times after the delete, want 1", f.callCount()-calls)
	}

	p.Stop()
	stopped = true
	wantOp(t, s, firstOp, model.OpSucceeded, nil)

	// Stop is idempotent, and Notify after Stop does not block.
	p.Stop()
	p.Notify()
	p.Notify()
}

func TestStopWithoutStart(t *testing.T) {
	p := New(Config{})
	p.Notify()
	p.Notify()
	p.Stop()
}

func TestStopCancelsBlockedPass(t *testing.T) {
	s, ws := setup(t)
	c, _ := createCompute(t, s, ws, "cpu")
	transition(t, s, c, model.StateDeleting, model.OpDelete, "op-delete")
	f := &blockingFinalizer{entered: make(chan struct{})}
	p := newProvisioner(s, f)
	p.Start(t.Context())
	<-f.entered // the pass is inside Release, waiting on its context
	p.Stop()    // returns only once the pass has ended
	wantState(t, s, c.ID, model.StateDeleting)
}

// blockingFinalizer blocks in Release until its context ends.
type blockingFinalizer struct {
	once    sync.Once
	entered chan struct{}
}

func (f *blockingFinalizer) Release(ctx context.Context, _ model.Compute) (bool, error) {
	f.once.Do(func() { close(f.entered) })
	<-ctx.Done()
	return false, ctx.Err()
}

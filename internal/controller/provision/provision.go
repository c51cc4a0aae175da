// Package provision holds the provisioner: the reconcile loop that finishes
// what the API accepted. It moves computes from Creating or Updating to
// Succeeded, removes computes marked Deleting, and settles every
// long-running operation from the state of its compute. It is
// level-triggered: it reads all pending state on each pass, so a pass after
// a crash or restart finishes whatever the crash interrupted.
package provision

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"kumo/internal/controller"
	"kumo/internal/model"
	"kumo/internal/secret"
	"kumo/internal/store"
)

// Finalizer releases what a compute holds (its nodes) before the compute's
// record is removed. Release returns done=false while release is still in
// progress; the provisioner then tries again on a later pass.
type Finalizer interface {
	Release(ctx context.Context, c model.Compute) (done bool, err error)
}

// Config configures a Provisioner.
type Config struct {
	Store store.Store
	// Finalizer releases a compute's nodes before deletion; nil means
	// computes hold nothing.
	Finalizer Finalizer
	// Ready, if not nil, is told the ID of every compute a pass brings to
	// Succeeded, so that scaling starts at once (a minimum node count).
	Ready func(computeID string)
	// Resync is how often a pass runs without being notified; zero means
	// one second.
	Resync time.Duration
	// Now returns the current time; nil means time.Now.
	Now func() time.Time
	// Log receives errors; nil means slog.Default().
	Log *slog.Logger
}

// Provisioner is the reconcile loop. Start it once; Notify it after any
// change; Stop it before closing the store.
type Provisioner struct {
	cfg   Config
	loop  *controller.Controller
	group *controller.Group
}

// passKey is the one key of the provisioner's queue: every pass covers
// every compute and operation under way.
const passKey = "computes"

// New returns a Provisioner for cfg.
func New(cfg Config) *Provisioner {
	if cfg.Resync <= 0 {
		cfg.Resync = time.Second
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	p := &Provisioner{cfg: cfg}
	p.loop = controller.New(controller.Config{Name: "provisioner", Log: cfg.Log, Resync: cfg.Resync,
		ResyncKeys: func(context.Context) ([]string, error) { return []string{passKey}, nil },
		Reconciler: controller.ReconcilerFunc(func(ctx context.Context, _ string) (controller.Result, error) {
			return controller.Result{}, p.Reconcile(ctx)
		})})
	return p
}

// Notify asks for a pass soon. It never blocks.
func (p *Provisioner) Notify() { p.loop.Enqueue(passKey) }

// Start runs passes until Stop: one at once, then one per Notify and per
// resync tick; a failed pass is retried with backoff.
func (p *Provisioner) Start(ctx context.Context) { p.group = controller.Start(ctx, p.loop) }

// Stop ends the loop and waits for the current pass to finish.
func (p *Provisioner) Stop() {
	if p.group != nil {
		p.group.Stop()
	}
}

// Reconcile runs one pass. It is idempotent and safe to run concurrently
// with the API: every write is conditional on the ETag it read.
func (p *Provisioner) Reconcile(ctx context.Context) error {
	st := p.cfg.Store
	pending, err := st.ComputeListByState(ctx, model.StateCreating, model.StateUpdating, model.StateDeleting)
	if err != nil {
		return fmt.Errorf("list pending computes: %w", err)
	}
	var errs []error
	for _, c := range pending {
		if err := p.reconcileCompute(ctx, c); err != nil {
			errs = append(errs, fmt.Errorf("compute %s: %w", c.ID, err))
		}
	}
	ops, err := st.OperationListInProgress(ctx)
	if err != nil {
		return errors.Join(append(errs, fmt.Errorf("list operations: %w", err))...)
	}
	for _, op := range ops {
		if err := p.settleOperation(ctx, op); err != nil {
			errs = append(errs, fmt.Errorf("operation %s: %w", op.ID, err))
		}
	}
	return errors.Join(errs...)
}

func (p *Provisioner) reconcileCompute(ctx context.Context, c model.Compute) error {
	st := p.cfg.Store
	switch c.State {
	case model.StateCreating, model.StateUpdating:
		prev := c.ETag
		c.State, c.Errors, c.ETag = model.StateSucceeded, nil, secret.RandomID(8)
		err := st.ComputeUpdate(ctx, c, prev, nil)
		if errors.Is(err, store.ErrPreconditionFailed) || errors.Is(err, store.ErrNotFound) {
			return nil // changed meanwhile; the next pass sees the new state
		}
		if err == nil && p.cfg.Ready != nil {
			p.cfg.Ready(c.ID)
		}
		return err
	case model.StateDeleting:
		if p.cfg.Finalizer != nil {
			done, err := p.cfg.Finalizer.Release(ctx, c)
			if err != nil || !done {
				return err
			}
		}
		err := st.ComputeDelete(ctx, c.ID, c.ETag)
		if errors.Is(err, store.ErrPreconditionFailed) || errors.Is(err, store.ErrNotFound) {
			return nil
		}
		return err
	}
	return nil
}

// settleOperation ends an operation once its compute has left the pending
// states; an operation superseded by a later one ends with the compute's
// outcome too.
func (p *Provisioner) settleOperation(ctx context.Context, op model.Operation) error {
	st := p.cfg.Store
	c, err := st.ComputeGet(ctx, op.ComputeID)
	switch {
	case errors.Is(err, store.ErrNotFound):
		if op.Kind == model.OpDelete {
			op.Status = model.OpSucceeded
		} else {
			op.Status = model.OpFailed
			op.Error = &model.Error{Code: "ComputeDeleted", Message: "the compute was deleted before the operation finished"}
		}
	case err != nil:
		return err
	case c.State == model.StateCreating || c.State == model.StateUpdating || c.State == model.StateDeleting:
		if op.Kind == model.OpDelete || c.State != model.StateDeleting {
			return nil // still under way
		}
		// A create or update overtaken by a delete.
		op.Status = model.OpFailed
		op.Error = &model.Error{Code: "ComputeDeleted", Message: "the compute is being deleted"}
	case c.State == model.StateFailed:
		op.Status = model.OpFailed
		op.Error = &model.Error{Code: "ProvisioningFailed", Message: "the compute could not be provisioned"}
		if len(c.Errors) > 0 {
			e := c.Errors[0]
			op.Error = &e
		}
	default:
		op.Status = model.OpSucceeded
	}
	op.EndedAt = p.cfg.Now().UTC()
	return st.OperationUpdate(ctx, op)
}

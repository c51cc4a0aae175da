package autoscale

import (
	"context"
	"errors"
	"fmt"

	"kumo/internal/model"
	"kumo/internal/store"
)

// Release implements [provision.Finalizer] for a compute being deleted: it
// marks its nodes leaving (so no job is dispatched to them), fails its
// started jobs and cancels its waiting ones ("compute deleted"), deletes the
// nodes from the provider and the store, and reports done once none is
// left. Anything that changed under it is retried on the provisioner's next
// pass.
func (a *Autoscaler) Release(ctx context.Context, comp model.Compute) (done bool, err error) {
	a.pass.Lock()
	defer a.pass.Unlock()
	delete(a.states, comp.ID)
	st := a.cfg.Store
	now := a.now()
	retry := false

	nodes, err := st.NodeListByCompute(ctx, comp.ID)
	if err != nil {
		return false, fmt.Errorf("list nodes: %w", err)
	}
	for i, n := range nodes {
		if n.State == model.NodeLeaving {
			continue
		}
		u := n
		u.State, u.Reason, u.StateSince = model.NodeLeaving, "compute deleted", now
		switch err := st.NodeUpdate(ctx, u, n.State); {
		case errors.Is(err, store.ErrPreconditionFailed):
			retry = true
		case errors.Is(err, store.ErrNotFound):
		case err != nil:
			return false, fmt.Errorf("mark node %s leaving: %w", n.ID, err)
		default:
			nodes[i] = u
		}
	}

	jobs, err := st.JobListByCompute(ctx, comp.ID, model.JobNotStarted, model.JobQueued, model.JobPreparing, model.JobRunning, model.JobFinalizing)
	if err != nil {
		return false, fmt.Errorf("list jobs: %w", err)
	}
	for _, j := range jobs {
		from := j.Status
		if from == model.JobNotStarted || from == model.JobQueued {
			j.Status = model.JobCanceled
		} else {
			j.Status = model.JobFailed
		}
		j.EndedAt = now
		j.Error = &model.Error{Code: "ComputeDeleted", Message: "compute deleted"}
		switch err := st.JobUpdate(ctx, j, from, nil, ""); {
		case errors.Is(err, store.ErrPreconditionFailed):
			retry = true
		case errors.Is(err, store.ErrNotFound):
		case err != nil:
			return false, fmt.Errorf("end job %s: %w", j.ID, err)
		}
	}

	if len(nodes) > 0 {
		_, prov, err := a.lookup(comp.Location)
		if err != nil {
			return false, err
		}
		ids := make([]string, len(nodes))
		for i, n := range nodes {
			ids[i] = n.ID
		}
		if err := prov.Delete(ctx, ids); err != nil {
			return false, fmt.Errorf("delete instances: %w", err)
		}
		for _, n := range nodes {
			if n.State != model.NodeLeaving {
				continue // changed under us; the next pass marks it
			}
			if err := st.NodeDelete(ctx, n.ID); err != nil && !errors.Is(err, store.ErrNotFound) {
				return false, fmt.Errorf("delete node %s: %w", n.ID, err)
			}
		}
	}
	left, err := st.NodeListByCompute(ctx, comp.ID)
	if err != nil {
		return false, fmt.Errorf("list nodes: %w", err)
	}
	return !retry && len(left) == 0, nil
}

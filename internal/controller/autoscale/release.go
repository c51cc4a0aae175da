package autoscale

import (
	"context"
	"errors"
	"fmt"
	"time"

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
		j.End(model.ReasonComputeDeleted, "compute deleted", now)
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
			a.releaseSSHPort(n.SSHPort)
		}
	}
	left, err := st.NodeListByCompute(ctx, comp.ID)
	if err != nil {
		return false, fmt.Errorf("list nodes: %w", err)
	}
	return !retry && len(left) == 0, nil
}

// releaseJob ends the attempt of the job a dead node still holds (the node
// is being removed; it was marked unusable or preempted by someone who did
// not end the job in the same store call), requeueing or failing the job
// through [model.Job.Lose], without touching the node.
func (a *Autoscaler) releaseJob(ctx context.Context, n model.Node, reason string, now time.Time) error {
	j, ok, err := store.NodeJob(ctx, a.cfg.Store, n)
	if err != nil || !ok {
		return err
	}
	from := j.Status
	why, kind := model.ReasonNodeLost, EventNodeUnusable
	if n.State == model.NodePreempted {
		why, kind = model.ReasonPreempted, EventNodePreempted
	}
	what := j.LoseNode(n.ID, why, "node "+n.ID+": "+reason, now)
	err = a.cfg.Store.JobUpdate(ctx, j, from, nil, "")
	if errors.Is(err, store.ErrPreconditionFailed) || errors.Is(err, store.ErrNotFound) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("release job %s: %w", j.ID, err)
	}
	a.changed(n.ComputeID)
	a.event(ctx, n.ComputeID, now, kind, "node "+n.ID+" "+string(n.State)+": "+reason+"; job "+j.ID+" "+what)
	return nil
}

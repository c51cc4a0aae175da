package autoscale

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"kumo/internal/model"
	"kumo/internal/provider"
	"kumo/internal/store"
)

// CheckHealth runs one health pass over every provider: it deletes
// instances no node record claims (agents whose records are gone), and
// makes unusable every preparing, idle or running node whose instance is
// Failed, Stopped or missing, whose agent did not register within
// BootTimeout, or whose agent has not been heard from for HeartbeatTimeout.
// A job running on such a node is requeued once (Attempts < 2) and failed
// after that. The clusters of those nodes are notified so that they are
// replaced.
func (a *Autoscaler) CheckHealth(ctx context.Context) error {
	orphans, err := a.checkNodes(ctx)
	errs := []error{err}
	// Deleting orphans may take a while (a provider may wait for a process
	// to stop) and no pass can create an instance of the same ID, so it
	// runs without holding up scaling.
	for _, key := range slices.Sorted(maps.Keys(orphans)) {
		ids := orphans[key]
		a.cfg.Log.Info("deleting orphan instances", "provider", key, "ids", ids)
		if err := a.cfg.Providers[key].Delete(ctx, ids); err != nil {
			errs = append(errs, fmt.Errorf("delete orphan instances of %s: %w", key, err))
		}
	}
	return errors.Join(errs...)
}

// checkNodes makes unhealthy nodes unusable and returns, by provider key,
// the instances no node record claims.
func (a *Autoscaler) checkNodes(ctx context.Context) (map[string][]string, error) {
	a.pass.Lock()
	defer a.pass.Unlock()
	st := a.cfg.Store
	orphans := map[string][]string{}
	var errs []error
	touched := map[string]bool{}
	computes := map[string]*model.Compute{} // by ID; nil when gone
	for _, key := range slices.Sorted(maps.Keys(a.cfg.Providers)) {
		prov := a.cfg.Providers[key]
		// List the provider before the store: an instance listed now was
		// created after its node record, so a node record missing now
		// really is gone.
		insts, err := prov.List(ctx)
		if err != nil {
			errs = append(errs, fmt.Errorf("list instances of %s: %w", key, err))
			continue
		}
		nodes, err := st.NodeList(ctx)
		if err != nil {
			return orphans, errors.Join(append(errs, fmt.Errorf("list nodes: %w", err))...)
		}
		now := a.now()
		known := map[string]bool{}
		for _, n := range nodes {
			known[n.ID] = true
		}
		byID := map[string]provider.InstanceStatus{}
		for _, in := range insts {
			byID[in.ID] = in
			if !known[in.ID] {
				orphans[key] = append(orphans[key], in.ID)
			}
		}
		for _, n := range nodes {
			if n.State != model.NodePreparing && n.State != model.NodeIdle && n.State != model.NodeRunning {
				continue
			}
			comp, ok := computes[n.ComputeID]
			if !ok {
				got, err := st.ComputeGet(ctx, n.ComputeID)
				switch {
				case errors.Is(err, store.ErrNotFound):
				case err != nil:
					errs = append(errs, fmt.Errorf("get compute: %w", err))
					continue
				default:
					comp = &got
				}
				computes[n.ComputeID] = comp
			}
			if comp == nil {
				continue // released with its compute
			}
			if k, err := a.providerKey(comp.Location); err != nil || k != key {
				continue
			}
			in, listed := byID[n.ID]
			reason := a.diagnose(n, in, listed, now)
			if reason == "" {
				continue
			}
			if err := a.markUnusable(ctx, n, reason, now); err != nil {
				errs = append(errs, err)
				continue
			}
			touched[n.ComputeID] = true
		}
	}
	for _, id := range slices.Sorted(maps.Keys(touched)) {
		a.Notify(id)
	}
	return orphans, errors.Join(errs...)
}

// diagnose says why a node can no longer be used, or "" if it can.
func (a *Autoscaler) diagnose(n model.Node, in provider.InstanceStatus, listed bool, now time.Time) string {
	switch {
	case !listed:
		if now.Sub(n.CreatedAt) < createGrace {
			return ""
		}
		return "instance missing from the provider"
	case in.State == provider.StateFailed:
		return "instance failed: " + or(in.Reason, "no reason given")
	case in.State == provider.StateStopped:
		return "instance stopped: " + or(in.Reason, "no reason given")
	}
	if n.State == model.NodePreparing {
		since := latest(n.CreatedAt, a.started)
		if now.Sub(since) >= a.cfg.BootTimeout {
			return fmt.Sprintf("agent did not register within %s", a.cfg.BootTimeout)
		}
		return ""
	}
	if a.cfg.Liveness == nil {
		return ""
	}
	seen, ok := a.cfg.Liveness.LastSeen(n.ID)
	if !ok {
		if age := now.Sub(a.started); age >= a.cfg.HeartbeatTimeout {
			return fmt.Sprintf("agent not heard from since the control plane started %s ago", age.Truncate(time.Second))
		}
		return ""
	}
	if age := now.Sub(seen); age >= a.cfg.HeartbeatTimeout {
		return fmt.Sprintf("agent stopped heartbeating %s ago", age.Truncate(time.Second))
	}
	return ""
}

// markUnusable moves n to unusable with reason, releasing its job in the
// same store call, and records a NodeUnusable event. A node that changed
// meanwhile is left for the next pass.
func (a *Autoscaler) markUnusable(ctx context.Context, n model.Node, reason string, now time.Time) error {
	st := a.cfg.Store
	u := n
	u.State, u.Reason, u.StateSince, u.JobID = model.NodeUnusable, reason, now, ""
	msg := "node " + n.ID + " unusable: " + reason
	var err error
	j, ok, gerr := a.boundJob(ctx, n)
	switch {
	case gerr != nil:
		return gerr
	case ok:
		lost, what := lostJob(j, n.ID, reason, now)
		err = st.JobUpdate(ctx, lost, j.Status, &u, n.State)
		msg += "; job " + j.ID + " " + what
	default:
		err = st.NodeUpdate(ctx, u, n.State)
	}
	if errors.Is(err, store.ErrPreconditionFailed) || errors.Is(err, store.ErrNotFound) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("mark node %s unusable: %w", n.ID, err)
	}
	a.changed(n.ComputeID)
	a.cfg.Log.Warn("node unusable", "compute", n.ComputeID, "node", n.ID, "reason", reason)
	a.event(ctx, n.ComputeID, now, EventNodeUnusable, msg)
	return nil
}

// releaseJob requeues or fails the job a dead node still holds, without
// touching the node (it is being removed).
func (a *Autoscaler) releaseJob(ctx context.Context, n model.Node, reason string, now time.Time) error {
	j, ok, err := a.boundJob(ctx, n)
	if err != nil || !ok {
		return err
	}
	lost, what := lostJob(j, n.ID, reason, now)
	err = a.cfg.Store.JobUpdate(ctx, lost, j.Status, nil, "")
	if errors.Is(err, store.ErrPreconditionFailed) || errors.Is(err, store.ErrNotFound) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("release job %s: %w", j.ID, err)
	}
	a.changed(n.ComputeID)
	kind := EventNodeUnusable
	if n.State == model.NodePreempted {
		kind = EventNodePreempted
	}
	a.event(ctx, n.ComputeID, now, kind, "node "+n.ID+" "+string(n.State)+": "+reason+"; job "+j.ID+" "+what)
	return nil
}

// boundJob returns the unfinished job n runs, if any.
func (a *Autoscaler) boundJob(ctx context.Context, n model.Node) (model.Job, bool, error) {
	if n.JobID == "" {
		return model.Job{}, false, nil
	}
	j, err := a.cfg.Store.JobGet(ctx, n.JobID)
	if errors.Is(err, store.ErrNotFound) {
		return model.Job{}, false, nil
	}
	if err != nil {
		return model.Job{}, false, fmt.Errorf("get job %s: %w", n.JobID, err)
	}
	if j.Status.Terminal() || j.NodeID != n.ID {
		return model.Job{}, false, nil
	}
	return j, true, nil
}

// lostJob returns j after losing its node, through [model.Job.Requeue]:
// requeued if it was started only once, failed after that, canceled if a
// cancel was asked for. The string says which.
func lostJob(j model.Job, nodeID, reason string, now time.Time) (model.Job, string) {
	j.Requeue("node " + nodeID + ": " + reason)
	if j.Status == model.JobQueued {
		j.StartedAt, j.ExitCode = time.Time{}, nil
		return j, "requeued"
	}
	j.EndedAt = now
	return j, strings.ToLower(string(j.Status))
}

func or(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

func latest(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

package server

import (
	"context"
	"errors"
	"fmt"
	"time"

	"kumo/api"
	"kumo/internal/model"
	"kumo/internal/store"
)

// computeView is what a cluster's availability answer is made of: its
// settings, live status, node counts and active jobs, read together.
type computeView struct {
	compute model.Compute
	status  model.ComputeStatus
	nodes   map[model.NodeState]int // counts by state
	// list is every node, which only a start estimate needs; nil unless
	// the view was made by loadComputeView.
	list   []model.Node
	queued []model.Job             // the head of the queue, in FIFO order, at most maxQueuedShown
	jobs   map[model.JobStatus]int // counts by status
}

// activeJobs are the statuses of jobs that hold or wait for a node.
var activeJobs = []model.JobStatus{model.JobQueued, model.JobPreparing, model.JobRunning, model.JobFinalizing}

// maxQueuedShown bounds how many queued jobs a compute's answer lists.
const maxQueuedShown = 50

// loadComputeView is viewOf with every node listed, for a queued job's
// pending reason and start estimate.
func (s *Server) loadComputeView(ctx context.Context, computeID string) (*computeView, error) {
	c, err := s.store.ComputeGet(ctx, computeID)
	if err != nil {
		return nil, err
	}
	v, err := s.viewOf(ctx, c)
	if err != nil {
		return nil, err
	}
	if v.list, err = s.store.NodeListByCompute(ctx, c.ID); err != nil {
		return nil, err
	}
	return v, nil
}

// viewOf reads a compute's live status and node counts; its cost follows
// the number of node states, not of nodes.
func (s *Server) viewOf(ctx context.Context, c model.Compute) (*computeView, error) {
	v := &computeView{compute: c}
	st, err := s.store.ComputeStatusGet(ctx, c.ID)
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return nil, err
	}
	v.status = st
	if v.nodes, err = s.store.NodeCountByCompute(ctx, c.ID); err != nil {
		return nil, err
	}
	return v, nil
}

// loadJobs adds the job counts and the head of the queue, which the
// compute's own answer shows and a job's pending reason does not need.
func (v *computeView) loadJobs(ctx context.Context, s *Server) error {
	var err error
	if v.jobs, err = s.store.JobCountByCompute(ctx, v.compute.ID, activeJobs...); err != nil {
		return err
	}
	v.queued, err = s.store.JobHead(ctx, v.compute.ID, model.JobQueued, maxQueuedShown)
	return err
}

func (v *computeView) counts() api.NodeStateCounts {
	return api.NodeStateCounts{
		IdleNodeCount:      int32(v.nodes[model.NodeIdle]),
		RunningNodeCount:   int32(v.nodes[model.NodeRunning]),
		PreparingNodeCount: int32(v.nodes[model.NodePreparing]),
		UnusableNodeCount:  int32(v.nodes[model.NodeUnusable]),
		LeavingNodeCount:   int32(v.nodes[model.NodeLeaving]),
		PreemptedNodeCount: int32(v.nodes[model.NodePreempted]),
	}
}

func (v *computeView) running() int {
	return v.jobs[model.JobPreparing] + v.jobs[model.JobRunning] + v.jobs[model.JobFinalizing]
}

// pendingReason says why a queued job waits; pos is its place in the
// queue, from 0.
func (v *computeView) pendingReason(pos int) *api.PendingReason {
	c := v.counts()
	booting := int(c.PreparingNodeCount)
	switch {
	case v.compute.State == model.StateFailed:
		return &api.PendingReason{Code: api.PendingComputeFailed, Message: fmt.Sprintf("compute %q is in a failed state and cannot run jobs", v.compute.Name)}
	case pos < booting:
		return &api.PendingReason{Code: api.PendingWaitingForNodes, Message: fmt.Sprintf("waiting for %d node(s) that are booting", booting),
			Details: map[string]any{"booting": booting}}
	case v.status.Blocked != "":
		return &api.PendingReason{Code: v.status.Blocked, Message: v.status.BlockedDetail,
			Details: map[string]any{"booting": booting, "position": pos + 1}}
	case int(c.RunningNodeCount+c.IdleNodeCount+c.PreparingNodeCount) >= v.compute.Scale.MaxNodes:
		return &api.PendingReason{Code: api.PendingMaxNodesReached,
			Message: fmt.Sprintf("all %d nodes the cluster may have (maxNodeCount) are busy; the job waits for one to finish", v.compute.Scale.MaxNodes),
			Details: map[string]any{"maxNodeCount": v.compute.Scale.MaxNodes, "position": pos + 1}}
	}
	return &api.PendingReason{Code: api.PendingWaitingForNodes, Message: "waiting for the cluster to add or free a node",
		Details: map[string]any{"booting": booting, "position": pos + 1}}
}

// gangReason says, for a queued gang job, how many of the nodes it needs
// are ready (held from its last attempt, or idle), wrapping why the rest
// are not (details: ready, needed, waitingFor); other jobs keep r.
func (v *computeView) gangReason(j model.Job, r *api.PendingReason) *api.PendingReason {
	if !j.Gang() || r == nil || r.Code == api.PendingComputeFailed {
		return r
	}
	held := len(j.Held())
	ready := min(held+int(v.counts().IdleNodeCount), j.InstanceCount)
	return &api.PendingReason{Code: api.PendingWaitingForGang,
		Message: fmt.Sprintf("%d of %d nodes ready; a multi-node job starts when all are (%s)", ready, j.InstanceCount, r.Message),
		Details: map[string]any{"ready": ready, "needed": j.InstanceCount, "held": held, "waitingFor": r.Code}}
}

// allocation renders a cluster's allocation state and its transition
// time (see model.AllocationOf).
func (s *Server) allocation(c model.Compute, st model.ComputeStatus) (api.AllocationState, string) {
	state, since := model.AllocationOf(c, st)
	if state == model.AllocationResizing {
		return api.AllocationResizing, s.timestamp(since)
	}
	return api.AllocationSteady, s.timestamp(since)
}

// apply writes the view's live fields into a rendered compute.
func (v *computeView) apply(s *Server, p *api.AmlComputeProperties) {
	counts := v.counts()
	p.NodeStateCounts = &counts
	active := counts.IdleNodeCount + counts.RunningNodeCount + counts.PreparingNodeCount
	p.CurrentNodeCount = active + counts.UnusableNodeCount + counts.LeavingNodeCount
	p.TargetNodeCount = int32(v.status.TargetNodes)
	p.AllocationState, p.AllocationStateTransitionTime = s.allocation(v.compute, v.status)
	for _, e := range v.status.Errors {
		p.Errors = append(p.Errors, api.ErrorResponse{Error: &api.ErrorDetail{Code: e.Code, Message: e.Message}})
	}
	p.QueuedJobCount, p.RunningJobCount = int32(v.jobs[model.JobQueued]), int32(v.running())
	for i, j := range v.queued {
		p.QueuedJobs = append(p.QueuedJobs, api.QueuedJob{Name: j.Name, PendingReason: v.pendingReason(i)})
	}
}

// estimateStart estimates when the job at place pos (from 0) of the queue
// starts; see model.EstimateStart.
func (v *computeView) estimateStart(now time.Time, pos int) (time.Time, bool) {
	if v.compute.State == model.StateFailed {
		return time.Time{}, false
	}
	blocked := v.status.Blocked == api.PendingQuotaExceeded || v.status.Blocked == api.PendingCapacityExhausted
	return model.EstimateStart(now, pos, v.list, v.compute.Scale.MaxNodes, blocked)
}

// evictedReason makes a queued job's pending reason EvictedWaitingToRetry
// when its last attempt was evicted, keeping what the retry waits for.
func evictedReason(j model.Job, waits *api.PendingReason, s *Server) *api.PendingReason {
	n := len(j.History)
	if n == 0 || j.History[n-1].Class != model.ClassPreemption || waits == nil {
		return waits
	}
	last := j.History[n-1]
	return &api.PendingReason{Code: api.PendingEvictedWaitingToRetry,
		Message: fmt.Sprintf("attempt %d was evicted from node %s at %s; the retry waits: %s",
			last.Number, last.NodeID, s.timestamp(last.EndedAt), waits.Message),
		Details: map[string]any{"node": last.NodeID, "attempt": last.Number, "preemptions": j.Retries(model.ClassPreemption),
			"waitingFor": waits.Code}}
}

package hub

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"slices"
	"strings"
	"time"

	"kumo/internal/agentproto"
	"kumo/internal/jobfiles"
	"kumo/internal/model"
	"kumo/internal/store"
)

// maxRetries bounds retries of a conditional update that lost a race.
const maxRetries = 10

// hello registers a (re)connecting agent: it reconciles the jobs the agent
// reports with those the store assigns to the node, marks the node idle or
// running, and answers Welcome with the log offsets to resend from.
func (h *Hub) hello(ctx context.Context, c *conn, m agentproto.Message) error {
	st := h.cfg.Store
	var resend []agentproto.Message
	offsets := map[string]agentproto.Offsets{}
	reported := map[string]bool{}
	exited := map[string]bool{} // reported ended: acked below, never reported again
	for _, r := range m.Jobs {
		reported[r.RunID] = true
		exited[r.RunID] = r.State == agentproto.JobExited
		j, err := st.JobGetByRunID(ctx, r.RunID)
		if err != nil || !j.RunsOn(c.nodeID) {
			if err != nil && !errors.Is(err, store.ErrNotFound) {
				return err
			}
			kind := agentproto.TypeCancel
			if r.State == agentproto.JobExited {
				kind = agentproto.TypeAck
			}
			resend = append(resend, agentproto.Message{Type: kind, RunID: r.RunID})
			continue
		}
		out, errOut, err := h.cfg.Files.Offsets(r.RunID)
		if err != nil {
			return err
		}
		offsets[r.RunID] = agentproto.Offsets{Stdout: out, Stderr: errOut}
		if r.State != agentproto.JobStarting && j.Status == model.JobPreparing {
			if err := h.markRunning(ctx, j.RunID, c.nodeID, h.cfg.Now()); err != nil {
				return err
			}
		}
	}

	for range maxRetries {
		n, err := st.NodeGet(ctx, c.nodeID)
		if err != nil {
			return err
		}
		from := n.State
		held := false // idle but kept for a gang job's retry
		n.Address, n.Note, n.HostKey = m.Address, m.Note, m.HostKey
		if n.JobID != "" {
			j, err := st.JobGet(ctx, n.JobID)
			if err != nil && !errors.Is(err, store.ErrNotFound) {
				return err
			}
			switch {
			case err == nil && j.Holds(n.ID):
				// Kept for the job's retry: running while the agent
				// still stops its old attempt.
				held = !reported[j.RunID] || exited[j.RunID]
			case err != nil || !j.RunsOn(n.ID):
				// Done, or stale: the job moved on without this node
				// (its process, if any, was told to stop above).
				n.JobID = ""
			case !reported[j.RunID] && j.Status == model.JobPreparing:
				resend = append(resend, h.RunMessage(j))
			case !reported[j.RunID]:
				// The agent lost a job it had started (it was restarted
				// without its journal): requeue it once.
				if err := h.lost(ctx, j, n, "node "+n.ID+": the node's agent restarted and lost the job"); err != nil {
					return err
				}
				continue
			}
		}
		switch {
		case held:
			n.State = model.NodeIdle
		case n.JobID != "":
			n.State = model.NodeRunning
		case from == model.NodePreparing || from == model.NodeRunning:
			n.State = model.NodeIdle
		}
		if n.State != from {
			n.StateSince = h.cfg.Now()
		}
		if from == model.NodePreparing && n.ReadyAt.IsZero() {
			n.ReadyAt = h.cfg.Now().UTC()
		}
		err = st.NodeUpdate(ctx, n, from)
		if errors.Is(err, store.ErrPreconditionFailed) {
			continue
		}
		if err != nil {
			return err
		}
		break
	}
	welcome := agentproto.Message{Type: agentproto.TypeWelcome, Protocol: agentproto.Version,
		HeartbeatInterval: h.cfg.HeartbeatInterval, LogOffsets: offsets}
	if n, err := st.NodeGet(ctx, c.nodeID); err == nil {
		if comp, err := st.ComputeGet(ctx, c.computeID); err == nil {
			welcome.SSH = sshSettings(comp, n)
		}
	}
	if err := c.enc.Send(welcome); err != nil {
		return err
	}
	for _, msg := range resend {
		if err := c.enc.Send(msg); err != nil {
			return err
		}
	}
	h.cfg.Changed(c.computeID)
	return nil
}

// RunMessage is the Run message that starts j on a node, with the job
// files' log limit; a multi-node or multi-process job's carries its
// layout (agentproto.GangSpec).
func (h *Hub) RunMessage(j model.Job) agentproto.Message {
	spec := &agentproto.JobSpec{
		RunID: j.RunID, Attempt: j.Attempts, Name: j.Name, Command: j.Command, Env: j.Env, SnapshotID: j.SnapshotID, Timeout: j.Timeout,
		LogLimit: max(h.cfg.Files.LogLimit(), 0),
	}
	if j.Gang() || j.Distribution != nil {
		spec.Gang = h.gangSpec(j)
	}
	return agentproto.Message{Type: agentproto.TypeRun, Job: spec}
}

// MasterPort is AML's MASTER_PORT, used when a job's nodes are on
// different hosts.
const MasterPort = 6105

// gangSpec lays out j's processes. MASTER_PORT is AML's 6105 when the
// job's nodes are on different hosts; when some share a host (the local
// provider runs every node on one), two jobs there would clash on 6105,
// so the port is derived from the run ID instead, in 20000-29999: the
// same for every node and every resend of the message.
func (h *Hub) gangSpec(j model.Job) *agentproto.GangSpec {
	ids := j.NodeIDs
	if len(ids) == 0 {
		ids = []string{j.NodeID}
	}
	g := &agentproto.GangSpec{NodeIDs: ids, Addresses: make([]string, len(ids)), MasterPort: MasterPort,
		ProcessesPerNode: j.Distribution.ProcessesPerNode(len(ids))}
	if d := j.Distribution; d != nil {
		g.Distribution = string(d.Type)
		g.Workers = d.WorkerCount
		if d.Type == model.DistributionTensorFlow && d.WorkerCount == 0 {
			g.Workers = len(ids)
		}
	}
	seen := map[string]bool{}
	shared := false
	for r, id := range ids {
		addr := "127.0.0.1"
		if n, err := h.cfg.Store.NodeGet(context.Background(), id); err == nil && n.Address != "" {
			addr = n.Address
		}
		g.Addresses[r] = addr
		shared = shared || seen[addr]
		seen[addr] = true
	}
	if shared {
		f := fnv.New32a()
		f.Write([]byte(j.RunID))
		g.MasterPort = 20000 + int(f.Sum32()%10000)
	}
	return g
}

// logCut records on a job that its log was cut at the log limit.
func (h *Hub) logCut(ctx context.Context, runID string) error {
	return store.JobWarn(ctx, h.cfg.Store, runID, jobfiles.CutWarning(h.cfg.Files.LogLimit()))
}

// lost requeues a job whose node's agent lost it (within the
// infrastructure retry cap), or fails it, and frees the node.
func (h *Hub) lost(ctx context.Context, j model.Job, n model.Node, reason string) error {
	from, nodeFrom := j.Status, n.State
	now := h.cfg.Now().UTC()
	j.Lose(model.ReasonAgentLostJob, reason, now)
	n.JobID, n.State, n.StateSince = "", model.NodeIdle, now
	err := h.cfg.Store.JobUpdate(ctx, j, from, &n, nodeFrom)
	if errors.Is(err, store.ErrPreconditionFailed) {
		return nil // the caller re-reads
	}
	return err
}

// handle records one message after Hello. Job reports count only from the
// node the job's current attempt is assigned to, over that node's current
// connection; others are dropped.
func (h *Hub) handle(ctx context.Context, c *conn, m agentproto.Message) error {
	if m.Type != agentproto.TypeHeartbeat && !h.current(c) {
		return nil
	}
	switch m.Type {
	case agentproto.TypeHeartbeat:
		if m.Sessions != nil && h.current(c) {
			h.setSessions(ctx, c, *m.Sessions)
		}
		return nil
	case agentproto.TypeAuthFailed:
		return h.loginRefused(ctx, c, m)
	case agentproto.TypeLog:
		mine, err := h.owns(ctx, c, m.RunID)
		if err != nil || !mine {
			return err
		}
		err = h.cfg.Files.Append(m.RunID, m.Stream, m.Offset, m.Data)
		if errors.Is(err, jobfiles.ErrLogCut) {
			return h.logCut(ctx, m.RunID)
		}
		return err
	case agentproto.TypeStarted:
		t := m.Time
		if t.IsZero() {
			t = h.cfg.Now()
		}
		return h.markRunning(ctx, m.RunID, c.nodeID, t)
	case agentproto.TypeExited:
		return store.JobChange(ctx, h.cfg.Store, m.RunID, func(j *model.Job) bool {
			// A gang is finalizing only once all its nodes are done.
			return !j.Gang() && j.Finalize(c.nodeID)
		})
	case agentproto.TypeDone:
		if err := h.finish(ctx, c, m); err != nil {
			return err
		}
		return c.enc.Send(agentproto.Message{Type: agentproto.TypeAck, RunID: m.RunID})
	}
	return fmt.Errorf("unexpected message %q", m.Type)
}

// owns reports whether a job runs on the connected node now (assigned to
// it, not queued again or ended); another job's output is dropped. It is
// looked up for every message, so that a job requeued to another node
// takes no more output from its old one.
func (h *Hub) owns(ctx context.Context, c *conn, runID string) (bool, error) {
	j, err := h.cfg.Store.JobGetByRunID(ctx, runID)
	if errors.Is(err, store.ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	return j.NodeID == c.nodeID && active(j.Status), nil
}

// markRunning records that a job of nodeID started; a job of another node
// is left alone.
func (h *Hub) markRunning(ctx context.Context, runID, nodeID string, at time.Time) error {
	return store.JobChange(ctx, h.cfg.Store, runID, func(j *model.Job) bool {
		return j.Start(nodeID, at.UTC())
	})
}

// endTime is when a job ended: the time its agent recorded, which stays
// true when Done arrives late (the control plane was down, the node was
// cut off), or now when the agent sent none or one outside
// [started, now] (a skewed clock).
func endTime(agent, started, now time.Time) time.Time {
	if agent.IsZero() || agent.After(now) || agent.Before(started) {
		return now
	}
	return agent.UTC()
}

// finish records a job's end, at the time its agent recorded, and frees
// its node.
func (h *Hub) finish(ctx context.Context, c *conn, m agentproto.Message) error {
	for range maxRetries {
		j, err := h.cfg.Store.JobGetByRunID(ctx, m.RunID)
		if errors.Is(err, store.ErrNotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		if j.Gang() || !j.RunsOn(c.nodeID) {
			return h.finishGang(ctx, c, m, j)
		}
		err = h.end(ctx, c, m, j, j.Status)
		if errors.Is(err, store.ErrPreconditionFailed) {
			continue
		}
		return err
	}
	return fmt.Errorf("job %s: too many concurrent changes", m.RunID)
}

// end records the end that m reports of j, a one-node job that runs on
// c's node, stored in status from (j may have changed since, in memory):
// the job and its node, freed, are written together. It returns
// store.ErrPreconditionFailed when the job or the node changed meanwhile.
func (h *Hub) end(ctx context.Context, c *conn, m agentproto.Message, j model.Job, from model.JobStatus) error {
	st := h.cfg.Store
	now := h.cfg.Now().UTC()
	ended := endTime(m.Time, j.StartedAt, now)
	preempted := m.Reason == agentproto.ReasonPreempted
	if preempted {
		j.Lose(model.ReasonPreempted, "node "+c.nodeID+": "+m.Message, ended)
	} else {
		j.Finish(m.ExitCode, m.Reason, m.Message, ended)
	}
	n, err := st.NodeGet(ctx, c.nodeID)
	if err != nil {
		return err
	}
	var np *model.Node
	nodeFrom := n.State
	switch {
	case preempted && n.JobID == j.ID:
		// The node is taken away: it leaves, and the autoscaler
		// replaces it.
		if err := n.Remove(model.NodePreempted, "evicted by the provider", now); err != nil {
			return err
		}
		np = &n
	case n.Free(j.ID, now):
		np = &n
	}
	if err := st.JobUpdate(ctx, j, from, np, nodeFrom); err != nil {
		return err
	}
	if j.Status.Terminal() {
		h.cfg.Files.Close(j.RunID)
	}
	h.cfg.Changed(c.computeID)
	return nil
}

// finishGang records the end of one node's part of j: a gang job's rank,
// or a node that held a job which no longer runs on it (stale: the job was
// requeued or ended when another of its nodes was lost, and the
// dispatcher told this node to stop). A stale node is freed, or, when the
// requeued job keeps it for its retry, made idle and left the job's. A
// rank that failed ends the attempt for the whole gang: the job is
// requeued (holding none of its nodes) or failed, and its other nodes
// become stale, so the dispatcher cancels them. A preempted rank leaves,
// and a requeued job keeps its other nodes (model.Job.LoseNode). A rank
// that exited 0 frees its node, and the last one completes the job.
func (h *Hub) finishGang(ctx context.Context, c *conn, m agentproto.Message, j model.Job) error {
	h.gangMu.Lock()
	defer h.gangMu.Unlock()
	st := h.cfg.Store
	now := h.cfg.Now().UTC()
	for range maxRetries {
		j, err := st.JobGet(ctx, j.ID)
		if errors.Is(err, store.ErrNotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		n, err := st.NodeGet(ctx, c.nodeID)
		if errors.Is(err, store.ErrNotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		if n.JobID != j.ID {
			return nil
		}
		nodeFrom := n.State
		if !j.RunsOn(c.nodeID) {
			if nodeFrom != model.NodeRunning {
				return nil
			}
			n.JobID, n.State, n.StateSince = "", model.NodeIdle, now
			if j.Holds(c.nodeID) {
				n.JobID = j.ID // idle, kept for the job's retry
			}
			err := st.NodeUpdate(ctx, n, nodeFrom)
			if errors.Is(err, store.ErrPreconditionFailed) {
				continue
			}
			if err == nil {
				h.cfg.Changed(c.computeID)
			}
			return err
		}
		from := j.Status
		ended := endTime(m.Time, j.StartedAt, now)
		ok := m.Reason == "exited" || m.Reason == ""
		ok = ok && m.ExitCode != nil && *m.ExitCode == 0
		switch {
		case m.Reason == agentproto.ReasonPreempted:
			j.LoseNode(c.nodeID, model.ReasonPreempted, "node "+c.nodeID+": "+m.Message, ended)
			if err := n.Remove(model.NodePreempted, "evicted by the provider", now); err != nil {
				return err
			}
		case !ok:
			msg := m.Message
			if r := slices.Index(j.NodeIDs, c.nodeID); r >= 0 {
				msg = strings.TrimSuffix(fmt.Sprintf("node rank %d (%s): %s", r, c.nodeID, msg), ": ")
			}
			j.Finish(m.ExitCode, m.Reason, msg, ended)
			n.Free(j.ID, now)
		default:
			n.Free(j.ID, now)
			others, err := st.NodeListByCompute(ctx, j.ComputeID)
			if err != nil {
				return err
			}
			if !slices.ContainsFunc(others, func(o model.Node) bool { return o.ID != n.ID && o.JobID == j.ID && j.RunsOn(o.ID) }) {
				j.Finish(m.ExitCode, m.Reason, m.Message, ended)
			}
		}
		err = st.JobUpdateNodes(ctx, j, from, []store.NodeChange{{Node: n, From: nodeFrom}})
		if errors.Is(err, store.ErrPreconditionFailed) {
			continue
		}
		if err != nil {
			return err
		}
		if j.Status.Terminal() {
			h.cfg.Files.Close(j.RunID)
		}
		h.cfg.Changed(c.computeID)
		return nil
	}
	return fmt.Errorf("job %s: too many concurrent changes", m.RunID)
}

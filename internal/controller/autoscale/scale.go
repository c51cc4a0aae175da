package autoscale

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"kumo/internal/model"
	"kumo/internal/provider"
	"kumo/internal/secret"
	"kumo/internal/store"
)

// Pending reasons written to ComputeStatus.Blocked.
const (
	BlockedMaxNodes = "MaxNodesReached"   // demand exceeds the cluster's maxNodeCount
	BlockedQuota    = "QuotaExceeded"     // the workspace's vCPU quota is used up
	BlockedCapacity = "CapacityExhausted" // the provider has no room for more nodes
)

// Event kinds the autoscaler records. A new blocking reason is recorded
// too, with its Blocked code (MaxNodesReached, QuotaExceeded,
// CapacityExhausted) as the kind.
const (
	EventScaleUp          = "ScaleUp"          // nodes requested: "0 → 2 nodes: 2 jobs waiting"
	EventScaleDown        = "ScaleDown"        // an idle node removed: "node X idle for 2m0s ≥ PT2M"
	EventNodeUnusable     = "NodeUnusable"     // a node failed; says why and what became of its job
	EventNodePreempted    = "NodePreempted"    // a preempted node's job was requeued or failed
	EventAllocationFailed = "AllocationFailed" // the provider could not create a node
	EventNodeInUse        = "NodeInUse"        // an idle node kept: someone is logged in over SSH
)

// ErrorNodeUnusable is the code of ComputeStatus.Errors entries for nodes
// that failed and were removed.
const ErrorNodeUnusable = "NodeUnusable"

// computeState is a cluster's scaling state during a pass. The failure
// backoff and the errors of removed nodes are facts in the store: each
// pass reads them from the cluster's stored status, where the pass before
// left them (on this control plane or another sharing the database), and
// writes them back with the status. Only what is this process's own view
// is kept between passes: the capacity detail of its last Create and the
// NodeInUse events it recorded (a new leader may record one again).
type computeState struct {
	failures    int             // consecutive node failures; ComputeStatus.Failures
	lastFailure time.Time       // when the last failed node was removed; ComputeStatus.LastFailure, zero if none
	retryAt     time.Time       // no new node before this while failures > 0; ComputeStatus.RetryAt
	errors      []model.Error   // NodeUnusable errors since a node made after them came up, oldest first
	capacity    string          // why the last Create ran out of capacity; "" if it did not
	inUse       map[string]bool // nodes kept for open SSH sessions, whose NodeInUse event is recorded
}

// state returns the compute's state for a pass: its backoff and the
// NodeUnusable errors from its stored status prev, with what the
// autoscaler keeps in memory.
func (a *Autoscaler) state(id string, prev model.ComputeStatus) *computeState {
	s, ok := a.states[id]
	if !ok {
		s = &computeState{}
		a.states[id] = s
	}
	s.failures, s.lastFailure, s.retryAt = prev.Failures, prev.LastFailure, prev.RetryAt
	s.errors = nil
	for _, e := range prev.Errors {
		if e.Code == ErrorNodeUnusable {
			s.errors = append(s.errors, e)
		}
	}
	return s
}

// since returns when the failures and errors s holds began to count: the
// last failure, or, when none is recorded, when the autoscaler started
// (errors kept from before are not cleared by nodes made before it).
func (s *computeState) since(started time.Time) time.Time {
	if s.lastFailure.IsZero() {
		return started
	}
	return s.lastFailure
}

func (s *computeState) fail(now time.Time) {
	s.failures++
	s.lastFailure = now
	s.retryAt = now.Add(backoff(s.failures))
}

// backoff returns the wait after n consecutive failures: 1s, 2s, 4s … 1m.
func backoff(n int) time.Duration {
	d := backoffBase
	for i := 1; i < n && d < backoffMax; i++ {
		d *= 2
	}
	return min(d, backoffMax)
}

// Reconcile runs one scaling pass of the compute with the given ID. It is
// idempotent; a missing compute, or one that is not Succeeded or Updating,
// is left alone (Release handles Deleting ones).
func (a *Autoscaler) Reconcile(ctx context.Context, computeID string) (Result, error) {
	a.pass.Lock()
	defer a.pass.Unlock()
	st := a.cfg.Store
	comp, err := st.ComputeGet(ctx, computeID)
	if errors.Is(err, store.ErrNotFound) {
		delete(a.states, computeID)
		return Result{}, nil
	}
	if err != nil {
		return Result{}, fmt.Errorf("get compute: %w", err)
	}
	if comp.State != model.StateSucceeded && comp.State != model.StateUpdating {
		return Result{}, nil
	}
	region, prov, err := a.lookup(comp.Location)
	if err != nil {
		return Result{}, err
	}
	size, ok := region.Size(comp.VMSize)
	if !ok {
		return Result{}, fmt.Errorf("region %s does not offer size %s", region.Name, comp.VMSize)
	}
	prev, err := st.ComputeStatusGet(ctx, comp.ID)
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return Result{}, fmt.Errorf("get status: %w", err)
	}
	s := a.state(comp.ID, prev)
	now := a.now()

	nodes, err := st.NodeListByCompute(ctx, comp.ID)
	if err != nil {
		return Result{}, fmt.Errorf("list nodes: %w", err)
	}
	before := len(nodes)
	if nodes, err = a.removeDead(ctx, comp, prov, nodes, s, now); err != nil {
		return Result{}, err
	}
	acted := len(nodes) != before // whether nodes changed, so that the status must read them again
	if s.failures != prev.Failures {
		// The failure is recorded at once, so that the backoff holds even
		// if the rest of the pass fails.
		if prev, err = a.writeBackoff(ctx, comp.ID, prev, s); err != nil {
			return Result{}, err
		}
	}
	if (s.failures > 0 || len(s.errors) > 0) && slices.ContainsFunc(nodes, func(n model.Node) bool {
		return (n.State == model.NodeIdle || n.State == model.NodeRunning) && !n.CreatedAt.Before(s.since(a.started))
	}) {
		*s = computeState{lastFailure: s.lastFailure} // a node made after the last failure came up
	}

	// Demand counts nodes, not jobs: a gang job of N nodes needs N. The
	// sum stays cheap with thousands queued.
	counts, err := st.JobNodeCountByCompute(ctx, comp.ID, model.JobQueued, model.JobPreparing, model.JobRunning, model.JobFinalizing)
	if err != nil {
		return Result{}, fmt.Errorf("count jobs: %w", err)
	}
	queued := counts[model.JobQueued]
	running := counts[model.JobPreparing] + counts[model.JobRunning] + counts[model.JobFinalizing]
	demand := queued + running
	minN, maxN := comp.Scale.MinNodes, comp.Scale.MaxNodes
	target := min(max(demand, minN), maxN)
	active := countStates(nodes, model.NodePreparing, model.NodeIdle, model.NodeRunning)

	var blocked, detail string
	if demand > maxN {
		blocked, detail = BlockedMaxNodes, fmt.Sprintf("jobs need %d nodes; maxNodeCount is %d", demand, maxN)
	}
	var res Result
	switch {
	case active < target:
		want := target - active
		psize := provider.Size{Name: size.Name, VCPUs: size.VCPUs, MemoryMB: int64(size.MemoryGB * 1024), GPUs: size.GPUs}
		fit, why, err := a.quotaFit(ctx, comp, size, nodes)
		if err != nil {
			return Result{}, err
		}
		if fit < want {
			want, blocked, detail = fit, BlockedQuota, why
		}
		if cr, ok := prov.(provider.CapacityReporter); ok && want > 0 {
			n, err := cr.Capacity(ctx, psize)
			if err != nil {
				return Result{}, fmt.Errorf("provider capacity: %w", err)
			}
			if n < want {
				blocked = BlockedCapacity
				detail = fmt.Sprintf("provider %s has room for %d more %s nodes; %d more needed", region.Provider, n, size.Name, want)
				want = max(n, 0)
			}
		}
		if want > 0 && s.failures > 0 && now.Before(s.retryAt) {
			res.RequeueAfter = s.retryAt.Sub(now)
			want = 0
		}
		if want > 0 {
			why := scaleUpReason(queued, running, demand, minN)
			failed, err := a.scaleUp(ctx, comp, prov, psize, want, s, now, fmt.Sprintf("%d → %d nodes: %s", active, active+want, why))
			acted = true
			if err != nil {
				return Result{}, err
			}
			if failed > 0 {
				res.RequeueAfter = requeueSoon // remove them and back off
			}
		}
		if blocked == "" && s.capacity != "" {
			blocked, detail = BlockedCapacity, s.capacity
		}
	case active > target:
		d, tried, err := a.scaleDown(ctx, comp, prov, nodes, active-target, active-maxN, now)
		if err != nil {
			return Result{}, err
		}
		res.RequeueAfter, acted = d, acted || tried
	}
	res.short = active < target

	if acted {
		if nodes, err = st.NodeListByCompute(ctx, comp.ID); err != nil {
			return Result{}, fmt.Errorf("list nodes: %w", err)
		}
	}
	return res, a.writeStatus(ctx, comp, prev, s, nodes, target, blocked, detail, now)
}

// writeStatus records a cluster's status after a pass, when it changed, and
// an event when a new reason blocks demand. A cluster's first status keeps
// the allocation state the API showed before it (Steady since the compute
// was written), so a quiet cluster's transition time does not move.
func (a *Autoscaler) writeStatus(ctx context.Context, comp model.Compute, prev model.ComputeStatus, s *computeState, nodes []model.Node, target int, blocked, detail string, now time.Time) error {
	active := countStates(nodes, model.NodePreparing, model.NodeIdle, model.NodeRunning)
	if active > target && countStates(nodes, model.NodeLeaving) == 0 {
		// Nodes kept until their idle time runs out are the cluster's
		// present target, not a resize in progress (as AML reports it).
		target = active
	}
	computeID := comp.ID
	status := model.ComputeStatus{
		ComputeID:       computeID,
		TargetNodes:     target,
		Allocation:      model.AllocationSteady,
		AllocationSince: prev.AllocationSince,
		Errors:          slices.Clone(s.errors),
		Blocked:         blocked,
		BlockedDetail:   detail,
		Failures:        s.failures,
		LastFailure:     s.lastFailure,
		RetryAt:         s.retryAt,
	}
	if active != target || countStates(nodes, model.NodePreparing, model.NodeLeaving, model.NodeUnusable) > 0 {
		status.Allocation = model.AllocationResizing
	}
	if was, since := model.AllocationOf(comp, prev); status.Allocation == was {
		status.AllocationSince = since
	} else {
		status.AllocationSince = now
	}
	if blocked == BlockedQuota || blocked == BlockedCapacity {
		status.Errors = append(status.Errors, model.Error{Code: blocked, Message: detail})
	}
	if blocked != "" && blocked != prev.Blocked {
		a.event(ctx, computeID, now, blocked, detail)
	}
	if sameStatus(status, prev) {
		return nil
	}
	if err := a.cfg.Store.ComputeStatusSet(ctx, status); err != nil {
		return fmt.Errorf("set status: %w", err)
	}
	return nil
}

// writeBackoff stores the backoff and node errors of s in the compute's
// status prev, and returns the status stored.
func (a *Autoscaler) writeBackoff(ctx context.Context, computeID string, prev model.ComputeStatus, s *computeState) (model.ComputeStatus, error) {
	cs := prev
	cs.ComputeID = computeID
	cs.Failures, cs.LastFailure, cs.RetryAt = s.failures, s.lastFailure, s.retryAt
	cs.Errors = slices.DeleteFunc(slices.Clone(cs.Errors), func(e model.Error) bool { return e.Code == ErrorNodeUnusable })
	cs.Errors = append(slices.Clone(s.errors), cs.Errors...)
	if err := a.cfg.Store.ComputeStatusSet(ctx, cs); err != nil {
		return prev, fmt.Errorf("set status: %w", err)
	}
	return cs, nil
}

// removeDead deletes, from the provider and then the store, the nodes that
// will never run a job again: unusable ones (counted as failures for the
// backoff, their reasons kept as errors), preempted ones, and leaving ones
// a previous pass did not finish removing. It returns the nodes left.
func (a *Autoscaler) removeDead(ctx context.Context, comp model.Compute, prov provider.Provider, nodes []model.Node, s *computeState, now time.Time) ([]model.Node, error) {
	var dead []model.Node
	var live []model.Node
	for _, n := range nodes {
		switch n.State {
		case model.NodeUnusable, model.NodePreempted, model.NodeLeaving:
			dead = append(dead, n)
		default:
			live = append(live, n)
		}
	}
	if len(dead) == 0 {
		return nodes, nil
	}
	ids := make([]string, len(dead))
	for i, n := range dead {
		if n.JobID != "" {
			// Health releases a lost node's job as it marks the node; this
			// covers nodes marked unusable or preempted by others.
			if err := a.releaseJob(ctx, n, nodeGone(n), now); err != nil {
				return nil, err
			}
		}
		ids[i] = n.ID
	}
	if err := prov.Delete(ctx, ids); err != nil {
		return nil, fmt.Errorf("delete instances: %w", err)
	}
	failed := false
	for _, n := range dead {
		if err := a.cfg.Store.NodeDelete(ctx, n.ID); err != nil && !errors.Is(err, store.ErrNotFound) {
			return nil, fmt.Errorf("delete node %s: %w", n.ID, err)
		}
		a.releaseSSHPort(n.SSHPort)
		a.cfg.Log.Info("node removed", "compute", comp.ID, "node", n.ID, "state", n.State, "reason", n.Reason)
		if n.State == model.NodeUnusable {
			failed = true
			s.errors = append(s.errors, model.Error{Code: ErrorNodeUnusable, Message: "node " + n.ID + ": " + n.Reason})
		}
	}
	if failed {
		s.fail(now)
		if len(s.errors) > maxNodeErrors {
			s.errors = slices.Clone(s.errors[len(s.errors)-maxNodeErrors:])
		}
	}
	return live, nil
}

func nodeGone(n model.Node) string {
	if n.Reason != "" {
		return n.Reason
	}
	return "node " + string(n.State)
}

// quotaFit returns how many more nodes of size fit the workspace's vCPU
// quota for the compute's family (or the low-priority quota), and if that
// is short of a node, a detail saying so. nodes are the compute's own
// live nodes.
func (a *Autoscaler) quotaFit(ctx context.Context, comp model.Compute, size model.VMSize, nodes []model.Node) (int, string, error) {
	st := a.cfg.Store
	quotas, err := st.QuotaList(ctx, comp.WorkspaceID)
	if err != nil {
		return 0, "", fmt.Errorf("list quotas: %w", err)
	}
	family, limit := model.QuotaLimit(quotas, size, comp.Priority)
	var used int64
	for _, n := range nodes {
		if n.State.HoldsQuota() {
			used += int64(size.VCPUs)
		}
	}
	others, err := st.ComputeList(ctx, comp.WorkspaceID, store.Page{})
	if err != nil {
		return 0, "", fmt.Errorf("list computes: %w", err)
	}
	// One read of every node, counted per compute, rather than one read
	// per compute: a workspace may hold many clusters.
	all, err := st.NodeList(ctx)
	if err != nil {
		return 0, "", fmt.Errorf("list nodes: %w", err)
	}
	held := map[string]int64{}
	for _, n := range all {
		if n.State.HoldsQuota() {
			held[strings.ToLower(n.ComputeID)]++
		}
	}
	for _, o := range others {
		if strings.EqualFold(o.ID, comp.ID) {
			continue
		}
		osize, ok := a.sizeOf(o)
		if !ok {
			continue
		}
		if f, _ := model.QuotaLimit(nil, osize, o.Priority); f != family {
			continue
		}
		used += held[strings.ToLower(o.ID)] * int64(osize.VCPUs)
	}
	fit := int((limit - used) / int64(max(size.VCPUs, 1)))
	if limit < used {
		fit = 0
	}
	return fit, fmt.Sprintf("family %s: limit %d vCPUs, in use %d, one node needs %d", family, limit, used, size.VCPUs), nil
}

// scaleUp records n new preparing nodes and asks the provider for them in
// one call. Nodes the provider could not create become unusable at once
// (the next pass removes them and backs off); it returns how many.
func (a *Autoscaler) scaleUp(ctx context.Context, comp model.Compute, prov provider.Provider, size provider.Size, n int, s *computeState, now time.Time, why string) (int, error) {
	st := a.cfg.Store
	var insts []provider.Instance
	nodes := map[string]model.Node{}
	var createErr error
	for range n {
		node, cred, err := a.newNode(ctx, comp, s, now)
		if err != nil {
			createErr = err
			break
		}
		nodes[node.ID] = node
		insts = append(insts, provider.Instance{
			ID: node.ID, Compute: comp.ID, Size: size,
			Agent:       provider.AgentConfig{URL: a.cfg.AgentURL, CAFile: a.cfg.AgentCAFile, Credential: cred},
			Preemptible: comp.Priority == model.PriorityLowPriority,
		})
	}
	if len(insts) == 0 {
		return 0, createErr
	}
	perr := prov.Create(ctx, insts)
	failures := instanceErrors(perr)
	if perr != nil && len(failures) == 0 {
		for _, in := range insts {
			failures[in.ID] = perr
		}
	}
	s.capacity = ""
	a.event(ctx, comp.ID, now, EventScaleUp, why)
	for _, in := range insts {
		ferr, ok := failures[in.ID]
		if !ok {
			continue
		}
		var capErr *provider.CapacityError
		if errors.As(ferr, &capErr) {
			s.capacity = capErr.Error()
		}
		node := nodes[in.ID]
		u := node
		u.State, u.Reason, u.StateSince = model.NodeUnusable, "create failed: "+errorText(ferr, in.ID), now
		if err := st.NodeUpdate(ctx, u, node.State); err != nil && !errors.Is(err, store.ErrPreconditionFailed) && !errors.Is(err, store.ErrNotFound) {
			createErr = errors.Join(createErr, fmt.Errorf("mark node %s unusable: %w", node.ID, err))
		}
		a.event(ctx, comp.ID, now, EventAllocationFailed, "node "+in.ID+": "+u.Reason)
	}
	return len(failures), createErr
}

// maxCreateTries bounds how often newNode tries another ID and SSH port
// after the store refused one as taken.
const maxCreateTries = 8

// newNode records a new preparing node with a fresh agent credential and
// returns it with the credential.
//
// Its ID is random and its SSH port the lowest one free by the
// autoscaler's hint; the store's constraints are what make both unique,
// also against other control planes sharing the database. When the store
// refuses the node as a conflict (its ID or its port is taken), the hint
// is read again from the store and the node tried again with a new ID
// and the next free port.
func (a *Autoscaler) newNode(ctx context.Context, comp model.Compute, s *computeState, now time.Time) (model.Node, string, error) {
	cred, _, hash, err := secret.NewToken()
	if err != nil {
		return model.Node{}, "", err
	}
	for try := 1; ; try++ {
		port, err := a.freeSSHPort(ctx)
		if err != nil {
			return model.Node{}, "", err
		}
		node := model.Node{
			ID:             strings.ToLower(comp.Name) + "-" + secret.RandomID(4),
			ComputeID:      comp.ID,
			State:          model.NodePreparing,
			CredentialHash: hash,
			CreatedAt:      now,
			StateSince:     now,
			Attempts:       s.failures + 1,
			SSHPort:        port,
		}
		if !provider.ValidID(node.ID) {
			a.releaseSSHPort(port)
			return model.Node{}, "", fmt.Errorf("compute name %q makes an invalid instance ID", comp.Name)
		}
		err = a.cfg.Store.NodeCreateUsage(ctx, node, a.usageOf(comp, node))
		if errors.Is(err, store.ErrConflict) && try < maxCreateTries {
			a.ports.used = nil // another control plane may hold ports this one does not know of
			continue
		}
		if err != nil {
			a.releaseSSHPort(port)
			return model.Node{}, "", fmt.Errorf("create node: %w", err)
		}
		return node, cred, nil
	}
}

// FirstSSHPort is the first port reserved for nodes' SSH servers, as AML
// numbers them (50000, 50001, ...). Ports are unique across all nodes so
// that nodes sharing a host do not collide; the store refuses a node whose
// port another node holds.
const FirstSSHPort = 50000

// sshPorts is the autoscaler's hint of which SSH ports nodes hold, so that
// a new node gets the lowest free one without reading every node. It is
// seeded from the store on first use and after the store refused a port,
// and kept by the autoscaler as it makes and removes nodes; it is guarded
// by Autoscaler.pass. It is only a hint: the store's unique constraint on
// nodes' ports decides.
type sshPorts struct {
	used   map[int]bool // nil until seeded
	lowest int          // no port below it is free
}

// freeSSHPort returns the lowest SSH port no node holds, by the hint, and
// marks it held. Scaling passes are serialized, so two new nodes of this
// autoscaler never get the same port; the store's constraint keeps those
// of two autoscalers apart.
func (a *Autoscaler) freeSSHPort(ctx context.Context) (int, error) {
	p := &a.ports
	if p.used == nil {
		nodes, err := a.cfg.Store.NodeList(ctx)
		if err != nil {
			return 0, fmt.Errorf("list nodes: %w", err)
		}
		p.used, p.lowest = make(map[int]bool, len(nodes)), FirstSSHPort
		for _, n := range nodes {
			p.used[n.SSHPort] = true
		}
	}
	for p.used[p.lowest] {
		p.lowest++
	}
	port := p.lowest
	p.used[port] = true
	return port, nil
}

// releaseSSHPort forgets a removed node's port, for the next new node.
func (a *Autoscaler) releaseSSHPort(port int) {
	p := &a.ports
	if p.used == nil || port < FirstSSHPort {
		return
	}
	delete(p.used, port)
	p.lowest = min(p.lowest, port)
}

// instanceErrors maps instance IDs to their errors in a provider's joined
// error.
func instanceErrors(err error) map[string]error {
	out := map[string]error{}
	var walk func(error)
	walk = func(err error) {
		var ie *provider.InstanceError
		switch e := err.(type) {
		case nil:
		case interface{ Unwrap() []error }:
			for _, x := range e.Unwrap() {
				walk(x)
			}
		default:
			if errors.As(err, &ie) {
				out[ie.ID] = ie.Err
			}
		}
	}
	walk(err)
	return out
}

func errorText(err error, id string) string {
	return strings.TrimPrefix(err.Error(), "instance "+id+": ")
}

// scaleDown removes up to excess idle nodes, newest first: at once while
// the cluster holds more than maxNodeCount (overMax > 0), otherwise once a
// node has been idle for the idle time. It returns how long until the next
// candidate reaches the idle time (0 if none waits), and whether it tried
// to remove any node.
func (a *Autoscaler) scaleDown(ctx context.Context, comp model.Compute, prov provider.Provider, nodes []model.Node, excess, overMax int, now time.Time) (next time.Duration, tried bool, err error) {
	st := a.cfg.Store
	var idle []model.Node
	for _, n := range nodes {
		if n.State == model.NodeIdle && n.JobID == "" { // not kept for a gang job's retry
			idle = append(idle, n)
		}
	}
	slices.SortStableFunc(idle, func(a, b model.Node) int {
		if c := b.CreatedAt.Compare(a.CreatedAt); c != 0 {
			return c
		}
		return strings.Compare(b.ID, a.ID)
	})
	idleTime := comp.Scale.IdleTime
	var leaving []model.Node
	var reasons []string
	inUse := map[string]bool{}
	if cs := a.states[comp.ID]; cs != nil {
		if cs.inUse == nil {
			cs.inUse = map[string]bool{}
		}
		inUse = cs.inUse
	}
	for _, n := range idle {
		if excess <= 0 {
			break
		}
		since := n.StateSince
		if a.cfg.Sessions != nil {
			open, closed := a.cfg.Sessions.Sessions(n.ID)
			if open > 0 {
				// Idle means idle: a logged-in user keeps the node. The
				// hub tells the loop when the last session closes.
				if !inUse[n.ID] {
					inUse[n.ID] = true
					a.event(ctx, comp.ID, now, EventNodeInUse, fmt.Sprintf("node %s kept although idle: %s open", n.ID, plural(open, "SSH session")))
				}
				continue
			}
			delete(inUse, n.ID)
			if closed.After(since) {
				since = closed // the idle clock starts when the last session closed
			}
		}
		idleFor := max(now.Sub(since), 0)
		var why string
		switch {
		case overMax > 0:
			why = fmt.Sprintf("node %s removed at once: %d nodes exceed maxNodeCount %d", n.ID, overMax+comp.Scale.MaxNodes, comp.Scale.MaxNodes)
		case idleFor >= idleTime:
			why = fmt.Sprintf("node %s idle for %s ≥ %s", n.ID, idleFor.Truncate(time.Second), model.FormatDuration(idleTime))
		default:
			if wait := idleTime - idleFor; next == 0 || wait < next {
				next = wait
			}
			continue
		}
		u := n
		u.State, u.Reason, u.StateSince = model.NodeLeaving, why, now
		tried = true
		err := st.NodeUpdate(ctx, u, model.NodeIdle)
		if errors.Is(err, store.ErrPreconditionFailed) || errors.Is(err, store.ErrNotFound) {
			continue // the hub just gave it a job, or it is gone
		}
		if err != nil {
			return 0, tried, fmt.Errorf("mark node %s leaving: %w", n.ID, err)
		}
		leaving = append(leaving, u)
		reasons = append(reasons, why)
		excess--
		overMax--
	}
	if len(leaving) == 0 {
		return next, tried, nil
	}
	for _, why := range reasons {
		a.event(ctx, comp.ID, now, EventScaleDown, why)
	}
	ids := make([]string, len(leaving))
	for i, n := range leaving {
		ids[i] = n.ID
	}
	if err := prov.Delete(ctx, ids); err != nil {
		return 0, tried, fmt.Errorf("delete instances: %w", err) // they stay leaving; the next pass retries
	}
	for _, n := range leaving {
		if err := st.NodeDelete(ctx, n.ID); err != nil && !errors.Is(err, store.ErrNotFound) {
			return 0, tried, fmt.Errorf("delete node %s: %w", n.ID, err)
		}
		a.releaseSSHPort(n.SSHPort)
	}
	return next, tried, nil
}

func scaleUpReason(queued, running, demand, minN int) string {
	var parts []string
	if queued > 0 {
		parts = append(parts, plural(queued, "node")+" for waiting jobs")
	}
	if running > 0 {
		parts = append(parts, plural(running, "node")+" for running jobs")
	}
	if demand < minN {
		parts = append(parts, fmt.Sprintf("minNodeCount is %d", minN))
	}
	return strings.Join(parts, ", ")
}

func plural(n int, word string) string {
	if n == 1 {
		return "1 " + word
	}
	return fmt.Sprintf("%d %ss", n, word)
}

func countStates(nodes []model.Node, states ...model.NodeState) int {
	n := 0
	for _, node := range nodes {
		if slices.Contains(states, node.State) {
			n++
		}
	}
	return n
}

func sameStatus(a, b model.ComputeStatus) bool {
	return a.ComputeID == b.ComputeID && a.TargetNodes == b.TargetNodes && a.Allocation == b.Allocation &&
		a.AllocationSince.Equal(b.AllocationSince) && slices.Equal(a.Errors, b.Errors) &&
		a.Blocked == b.Blocked && a.BlockedDetail == b.BlockedDetail &&
		a.Failures == b.Failures && a.LastFailure.Equal(b.LastFailure) && a.RetryAt.Equal(b.RetryAt)
}

// event records an event; a failure to record one is logged, not returned:
// the decision it describes has already been acted on.
func (a *Autoscaler) event(ctx context.Context, computeID string, at time.Time, kind, msg string) {
	if err := a.cfg.Store.EventAppend(ctx, model.Event{ComputeID: computeID, Time: at, Kind: kind, Message: msg}); err != nil {
		a.cfg.Log.Error("record event", "compute", computeID, "kind", kind, "err", err)
	}
}

// regionKey folds a location the way ARM compares them.
func regionKey(loc string) string { return strings.ToLower(strings.ReplaceAll(loc, " ", "")) }

// lookup returns the region and provider serving a location.
func (a *Autoscaler) lookup(location string) (model.Region, provider.Provider, error) {
	key, err := a.providerKey(location)
	if err != nil {
		return model.Region{}, nil, err
	}
	return a.cfg.Regions[regionKey(location)], a.cfg.Providers[key], nil
}

// providerKey returns the key in Config.Providers of the provider serving
// a location.
func (a *Autoscaler) providerKey(location string) (string, error) {
	rk := regionKey(location)
	r, ok := a.cfg.Regions[rk]
	if !ok {
		return "", fmt.Errorf("region %q is not configured", location)
	}
	if _, ok := a.cfg.Providers[rk]; ok {
		return rk, nil
	}
	if _, ok := a.cfg.Providers[r.Provider]; ok {
		return r.Provider, nil
	}
	return "", fmt.Errorf("no node provider for region %q", location)
}

// usageOf is node n's usage record: it accrues its size's price for the
// compute's priority from when it is created.
func (a *Autoscaler) usageOf(comp model.Compute, n model.Node) model.NodeUsage {
	u := model.NodeUsage{NodeID: n.ID, ComputeID: comp.ID, WorkspaceID: comp.WorkspaceID, VMSize: comp.VMSize,
		Priority: comp.Priority, StartedAt: n.CreatedAt}
	if size, ok := a.sizeOf(comp); ok {
		u.VMSize, u.PricePerHour = size.Name, size.Price(comp.Priority)
	}
	return u
}

// sizeOf returns a compute's VM size from its region, or the catalog.
func (a *Autoscaler) sizeOf(comp model.Compute) (model.VMSize, bool) {
	if r, ok := a.cfg.Regions[regionKey(comp.Location)]; ok {
		if s, ok := r.Size(comp.VMSize); ok {
			return s, true
		}
	}
	return model.Region{Sizes: model.Catalog}.Size(comp.VMSize)
}

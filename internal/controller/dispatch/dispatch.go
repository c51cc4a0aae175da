// Package dispatch holds the dispatcher: the reconcile loop that gives
// queued jobs to idle nodes, first come first served per compute, and runs
// the jobs of the built-in compute target "local" on the control plane's
// own host. It reacts at once to Notify (a job queued, a node freed).
//
// A pass that Notify asks for costs what it places, not the cluster's
// size: it reads the first job of the compute's queue (stopping there
// when there is none), its idle nodes and as many jobs from the head of
// its queue, and places as many as fit, all in one store transaction. The
// check of a compute's started jobs (cancels to repeat, nodes holding a
// job that no longer runs on them) reads every busy node and started job,
// so it runs beside the loop, on its own goroutine, never delaying a
// placement; at most once per Resync for a compute that was notified
// since, and, when it is costly, ten times its own duration apart (at
// most 3 s). A check that frees a node notifies the loop.
// Every FullResync, every compute that has had active jobs since the last
// one gets both a placement and a check, so a change
// nobody notified about only delays. Which computes have active jobs is
// read from the store once, at Start; after that Notify tells. An idle
// control plane thus reads nothing between full resyncs, whatever its
// queues hold.
package dispatch

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sort"
	"sync"
	"time"

	"kumo/internal/agentproto"
	"kumo/internal/controller"
	"kumo/internal/jobfiles"
	"kumo/internal/jobuser"
	"kumo/internal/model"
	"kumo/internal/store"
)

// Sender delivers messages to node agents.
type Sender interface {
	// Send delivers m to the node's agent; an error when it is not
	// connected or the write failed.
	Send(nodeID string, m agentproto.Message) error
	// Connected reports whether the node's agent holds a connection.
	Connected(nodeID string) bool
}

// Config configures a Dispatcher.
type Config struct {
	Store  store.Store
	Sender Sender
	// Run builds the Run message of a job.
	Run func(model.Job) agentproto.Message
	// Files stores jobs' output: a new attempt's starts afresh
	// (jobfiles.Files.StartAttempt); nil only in tests without retries.
	Files *jobfiles.Files
	// LocalDir is where local jobs get their working directories
	// (LocalDir/<runID>, mode 0700); it is made mode 0711. It must not be
	// inside the data directory: jobs cannot reach that.
	LocalDir string
	// LocalUIDs, if set, are the uids local jobs run as, one per running
	// job (kumo runs as root); a queued job waits while every uid is in
	// use. Nil means local jobs run as the control plane's user.
	LocalUIDs *jobuser.Range
	// LocalDisabled turns compute "local" off: its queued jobs stay queued.
	LocalDisabled bool
	// Resync is the least time between two checks of a compute's started
	// jobs (see the package doc), and how often a postponed check runs;
	// zero means 1s.
	Resync time.Duration
	// FullResync is how often every compute with active jobs is passed
	// over and checked though nobody notified it; zero means
	// DefaultFullResync.
	FullResync time.Duration
	// Changed is told after the dispatcher changed a compute's jobs.
	Changed func(computeID string)
	// Now returns the current time; nil means time.Now.
	Now func() time.Time
	// Log receives errors; nil means slog.Default().
	Log *slog.Logger
}

// DefaultFullResync is the zero value of Config.FullResync.
const DefaultFullResync = 10 * time.Minute

// Dispatcher is the loop. Start it once; Notify it; Stop it.
type Dispatcher struct {
	cfg   Config
	local *localRunner

	loop  *controller.Controller
	group *controller.Group

	mu     sync.Mutex
	cost   map[string]time.Duration // how long each compute's last check took
	failed map[string]bool          // computes whose last check failed
	// unreached are computes with queued jobs whose last placement found
	// idle nodes not connected: passed over again after Resync.
	unreached map[string]bool
	checks    map[string]bool // computes waiting for the checker
	// checkKick wakes the checker goroutine when checks has work.
	checkKick chan struct{}
	// resynced is whether the loop listed every compute with active jobs
	// (its first resync); later resyncs take the computes in active.
	resynced bool
	active   map[string]bool // computes passed over since the last full resync

	// Owned by the loop's one worker.
	checked  map[string]time.Time // when each compute's last check began
	postpone map[string]bool      // computes notified since their last check, or whose last pass failed

	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// New returns a Dispatcher.
func New(cfg Config) *Dispatcher {
	if cfg.Resync <= 0 {
		cfg.Resync = time.Second
	}
	if cfg.FullResync <= 0 {
		cfg.FullResync = DefaultFullResync
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	if cfg.Changed == nil {
		cfg.Changed = func(string) {}
	}
	d := &Dispatcher{cfg: cfg, cost: map[string]time.Duration{}, failed: map[string]bool{}, checks: map[string]bool{}, checkKick: make(chan struct{}, 1),
		checked: map[string]time.Time{}, postpone: map[string]bool{}, active: map[string]bool{}, unreached: map[string]bool{}}
	d.local = &localRunner{d: d, running: map[string]*localJob{}, uids: map[int]bool{}}
	d.loop = controller.New(controller.Config{Name: "dispatcher", Reconciler: controller.ReconcilerFunc(d.reconcileKey),
		Resync: cfg.FullResync, ResyncKeys: d.resyncKeys, BaseDelay: cfg.Resync, MaxDelay: max(cfg.Resync, 30*time.Second), Log: cfg.Log})
	return d
}

// Notify asks for a pass over one compute soon. It never blocks.
func (d *Dispatcher) Notify(computeID string) { d.loop.Enqueue(computeID) }

// Start recovers local jobs interrupted by a restart, then runs the loop
// until Stop: a pass over every compute with active jobs at once, then
// one per Notify, a postponed one after Resync, and every compute passed
// over since the last full resync, with a check, each FullResync.
func (d *Dispatcher) Start(ctx context.Context) {
	ctx, d.cancel = context.WithCancel(ctx)
	if err := d.local.recover(ctx); err != nil {
		d.cfg.Log.Error("recover local jobs", "err", err)
	}
	d.wg.Add(1)
	go func() {
		defer d.wg.Done()
		d.checker(ctx)
	}()
	d.group = controller.Start(ctx, d.loop)
}

// resyncKeys lists the computes for a full resync: at first every compute
// with active jobs (it reads every active job's compute, so only then),
// later those passed over since the last one, each to be checked.
func (d *Dispatcher) resyncKeys(ctx context.Context) ([]string, error) {
	d.mu.Lock()
	first := !d.resynced
	d.resynced = true
	active := d.active
	d.active = map[string]bool{}
	d.mu.Unlock()
	if first {
		ids, err := d.cfg.Store.JobComputeIDs(ctx, model.JobQueued, model.JobPreparing, model.JobRunning, model.JobFinalizing)
		if err != nil {
			return nil, fmt.Errorf("dispatch resync: %w", err)
		}
		return ids, nil
	}
	ids := make([]string, 0, len(active))
	d.mu.Lock()
	for id := range active {
		ids = append(ids, id)
		d.failed[id] = true // checked again, as after a failed check
	}
	d.mu.Unlock()
	return ids, nil
}

// reconcileKey runs one pass over a compute for the loop, and asks for
// the next after Resync when one is owed: a check postponed, a check that
// failed, or idle nodes that were not reachable.
func (d *Dispatcher) reconcileKey(ctx context.Context, computeID string) (controller.Result, error) {
	d.mu.Lock()
	if d.failed[computeID] {
		delete(d.failed, computeID)
		delete(d.checked, computeID)
	}
	d.mu.Unlock()
	err := d.pass(ctx, computeID)
	d.mu.Lock()
	again := d.postpone[computeID] || d.unreached[computeID]
	delete(d.unreached, computeID)
	d.mu.Unlock()
	if err != nil {
		return controller.Result{}, err
	}
	if again {
		return controller.Result{RequeueAfter: d.cfg.Resync}, nil
	}
	return controller.Result{}, nil
}

// checkShare bounds the time spent checking a compute's started jobs:
// after a check that took t, the next one waits at least checkShare·t,
// but never more than maxCheckWait (or Resync, if longer), so that a lost
// cancel is repeated within seconds however large the compute.
const (
	checkShare   = 10
	maxCheckWait = 3 * time.Second
)

// pass runs one loop pass over a compute: a placement, then it hands the
// compute to the checker unless a check began within Resync, or within
// checkShare times the last check's cost, up to maxCheckWait (then the
// check is postponed to the next tick).
func (d *Dispatcher) pass(ctx context.Context, computeID string) error {
	d.mu.Lock()
	d.active[computeID] = true
	cost := d.cost[computeID]
	d.mu.Unlock()
	if IsLocal(computeID) {
		return d.local.reconcile(ctx, computeID)
	}
	if err := d.place(ctx, computeID); err != nil {
		d.postpone[computeID] = true // try again on the next tick
		return err
	}
	if time.Since(d.checked[computeID]) < max(d.cfg.Resync, min(checkShare*cost, maxCheckWait)) {
		d.postpone[computeID] = true
		return nil
	}
	d.checked[computeID] = time.Now()
	delete(d.postpone, computeID)
	d.mu.Lock()
	d.checks[computeID] = true
	d.mu.Unlock()
	select {
	case d.checkKick <- struct{}{}:
	default:
	}
	return nil
}

// checker runs the checks that pass hands it, one at a time, until ctx
// ends. A check that failed is retried on the loop's next tick; one that
// freed a node asks for a pass.
func (d *Dispatcher) checker(ctx context.Context) {
	for {
		computeID := ""
		d.mu.Lock()
		for id := range d.checks {
			computeID = id
			delete(d.checks, id)
			break
		}
		d.mu.Unlock()
		if computeID == "" {
			select {
			case <-ctx.Done():
				return
			case <-d.checkKick:
			}
			continue
		}
		if ctx.Err() != nil {
			return
		}
		start := time.Now()
		freed, err := d.check(ctx, computeID)
		d.mu.Lock()
		d.cost[computeID] = time.Since(start)
		if err != nil {
			d.failed[computeID] = true
		}
		d.mu.Unlock()
		if err != nil && ctx.Err() == nil {
			d.cfg.Log.Error("dispatch check", "compute", computeID, "err", err)
			d.loop.EnqueueAfter(computeID, d.cfg.Resync) // checked again then
		}
		if freed {
			d.Notify(computeID)
		}
	}
}

// Stop ends the loop and cancels and waits for running local jobs.
func (d *Dispatcher) Stop() {
	if d.cancel != nil {
		d.cancel()
	}
	if d.group != nil {
		d.group.Stop()
	}
	d.wg.Wait()
	d.local.stopAll()
}

// IsLocal reports whether a compute ID names the built-in local target.
func IsLocal(computeID string) bool {
	return len(computeID) > len(localSuffix) && computeID[len(computeID)-len(localSuffix):] == localSuffix
}

const localSuffix = "/computes/" + model.LocalCompute

// Reconcile runs one full pass over a compute: it tells nodes about
// cancels and stale jobs ([Dispatcher.check]), then assigns its queued
// jobs, in order, to its idle connected nodes ([Dispatcher.place]). Safe
// to run twice: every assignment is conditional on the job still being
// queued and the node still idle.
func (d *Dispatcher) Reconcile(ctx context.Context, computeID string) error {
	if IsLocal(computeID) {
		return d.local.reconcile(ctx, computeID)
	}
	if _, err := d.check(ctx, computeID); err != nil {
		return err
	}
	return d.place(ctx, computeID)
}

// check tells the nodes of a compute's started jobs about cancels (again:
// the first message may have been lost with a connection), and stops jobs
// that no longer run on the nodes holding them. It reads every busy node
// and started job of the compute. It reports whether it freed a node.
func (d *Dispatcher) check(ctx context.Context, computeID string) (bool, error) {
	st := d.cfg.Store
	nodes, err := st.NodeListByCompute(ctx, computeID)
	if err != nil {
		return false, fmt.Errorf("list nodes: %w", err)
	}
	if !slices.ContainsFunc(nodes, func(n model.Node) bool { return n.JobID != "" }) {
		return false, nil
	}
	started, err := st.JobListByCompute(ctx, computeID, model.JobPreparing, model.JobRunning)
	if err != nil {
		return false, fmt.Errorf("list started jobs: %w", err)
	}
	byJob := map[string]model.Job{}
	for _, j := range started {
		byJob[j.ID] = j
		if !j.CancelRequested {
			continue
		}
		for _, id := range append([]string{j.NodeID}, j.NodeIDs...) {
			if id != "" {
				_ = d.cfg.Sender.Send(id, agentproto.Message{Type: agentproto.TypeCancel, RunID: j.RunID})
			}
		}
	}
	return d.cancelStale(ctx, nodes, byJob)
}

// place assigns a compute's queued jobs, in order, to its idle connected
// nodes, as many as fit. Only the head of the queue matters, since every
// job takes at least one new node: it reads store.PlacementCandidates,
// never the whole cluster or queue. Most passes of a busy cluster follow
// a submission while every node runs a job, and read one count.
func (d *Dispatcher) place(ctx context.Context, computeID string) error {
	st := d.cfg.Store
	free, queued, err := st.PlacementCandidates(ctx, computeID)
	if err != nil {
		return err
	}
	if len(queued) == 0 {
		return nil
	}
	var idle []model.Node
	unreached := false
	for _, n := range free {
		switch {
		case n.JobID != "":
		case d.cfg.Sender.Connected(n.ID):
			idle = append(idle, n)
		default:
			unreached = true
		}
	}
	if unreached {
		// An idle node whose agent is not connected now (reconnecting, or
		// its replica paused) may be soon, with nothing else changing:
		// look again on the next tick.
		d.mu.Lock()
		d.unreached[computeID] = true
		d.mu.Unlock()
	}
	if len(idle) == 0 || len(queued) == 0 {
		return nil
	}
	// The compute's size is read only when a gang does not fit.
	maxNodes, sized := -1, false // -1: unknown, no gang is skipped as never fitting
	// Longest idle first, so that recently busy nodes reach their idle
	// timeout and scale down.
	sort.SliceStable(idle, func(a, b int) bool { return idle[a].StateSince.Before(idle[b].StateSince) })
	var updates []store.JobNodesUpdate
	for _, j := range queued {
		if len(idle) == 0 {
			break
		}
		held, ready, err := d.heldRanks(ctx, j)
		if err != nil {
			return err
		}
		if !ready {
			// A node it kept is still stopping its last attempt.
			break
		}
		need := max(j.InstanceCount, 1) - len(held)
		if need > len(idle) {
			if !sized {
				sized = true
				if c, err := st.ComputeGet(ctx, computeID); err == nil {
					maxNodes = c.Scale.MaxNodes
				}
			}
			if maxNodes >= 0 && max(j.InstanceCount, 1) > maxNodes {
				// The cluster was shrunk below what the job needs: it
				// can never start, and must not hold up the jobs behind
				// it.
				continue
			}
			// A gang waits, holding nothing new, for enough idle nodes
			// at once; jobs behind it wait too (first come, first
			// served), so it is not starved by smaller jobs. Nodes free
			// up as running jobs end, so the queue always moves.
			break
		}
		var taken []model.Node
		taken, idle = idle[:need], idle[need:]
		u, err := d.assignment(j, taken, held)
		if err != nil {
			return err
		}
		updates = append(updates, u)
	}
	if len(updates) == 0 {
		return nil
	}
	// The pass's placements are one transaction.
	errs, err := st.JobUpdateBatch(ctx, updates)
	if err != nil {
		return fmt.Errorf("assign jobs: %w", err)
	}
	changed := false
	for i, u := range updates {
		if errs[i] != nil {
			// The job was canceled or a node taken meanwhile: the next
			// pass reads the queue afresh.
			d.Notify(computeID)
			continue
		}
		changed = true
		d.started(u)
	}
	if changed {
		d.cfg.Changed(computeID)
	}
	return nil
}

// assignment returns the change that gives j the idle nodes taken (and,
// for a gang retrying, the nodes it held on to, by rank): the job's
// record and its nodes', each conditional on the state it was read in.
func (d *Dispatcher) assignment(j model.Job, taken []model.Node, held map[int]model.Node) (store.JobNodesUpdate, error) {
	now := d.cfg.Now().UTC()
	u := store.JobNodesUpdate{From: model.JobQueued}
	if !j.Gang() {
		n := taken[0]
		if err := j.Assign(&n, now); err != nil {
			return u, err
		}
		u.Job, u.Nodes = j, []store.NodeChange{{Node: n, From: model.NodeIdle}}
		return u, nil
	}
	ranks := make([]*model.Node, max(j.InstanceCount, 1))
	from := make([]model.NodeState, len(ranks))
	next := 0
	for r := range ranks {
		if n, ok := held[r]; ok {
			ranks[r], from[r] = &n, n.State
			continue
		}
		n := taken[next]
		next++
		ranks[r], from[r] = &n, model.NodeIdle
	}
	if err := j.AssignGang(ranks, now); err != nil {
		return u, err
	}
	u.Job = j
	for r, n := range ranks {
		u.Nodes = append(u.Nodes, store.NodeChange{Node: *n, From: from[r]})
	}
	return u, nil
}

// started tells each node of a stored assignment to run its rank of the
// job, after starting the job's new attempt's output.
func (d *Dispatcher) started(u store.JobNodesUpdate) {
	j := u.Job
	if d.cfg.Files != nil {
		if err := d.cfg.Files.StartAttempt(j.RunID, j.Attempts); err != nil {
			d.cfg.Log.Error("keep the logs of the job's earlier attempt", "job", j.Name, "err", err)
		}
	}
	for _, c := range u.Nodes {
		if err := d.cfg.Sender.Send(c.Node.ID, d.cfg.Run(j)); err != nil {
			// The agent resumes the job from its Preparing state when it
			// reconnects; a node that never does is replaced by the
			// autoscaler, which requeues the job.
			d.cfg.Log.Warn("send job to node", "job", j.Name, "node", c.Node.ID, "err", err)
		}
	}
}

// cancelStale tells each node that holds a job which no longer runs on it
// to stop it: a gang job that was requeued or ended when one of its nodes
// failed or was lost leaves its other nodes holding it. When its agent
// reports the old attempt done, the hub frees the node, or, when the
// requeued job keeps it for its retry, makes it idle but still the job's
// (model.Job.Holds). An idle node kept for a job that no longer holds it
// is freed here. started are the compute's started jobs by ID. It reports
// whether it freed a node.
func (d *Dispatcher) cancelStale(ctx context.Context, nodes []model.Node, started map[string]model.Job) (bool, error) {
	freed := false
	for _, n := range nodes {
		if n.JobID == "" || (n.State != model.NodeRunning && n.State != model.NodeIdle) {
			continue
		}
		j, ok := started[n.JobID]
		if ok && j.RunsOn(n.ID) {
			continue
		}
		if !ok {
			var err error
			if j, err = d.cfg.Store.JobGet(ctx, n.JobID); errors.Is(err, store.ErrNotFound) {
				continue
			} else if err != nil {
				return freed, fmt.Errorf("get job %s: %w", n.JobID, err)
			}
			if j.RunsOn(n.ID) {
				continue // started meanwhile
			}
		}
		switch {
		case j.Holds(n.ID) && n.State == model.NodeIdle:
			// Kept for the job's retry, its old attempt ended.
		case n.State == model.NodeIdle:
			// Kept for a retry that will not come (the job was canceled
			// or failed while it waited): free it.
			u := n
			u.JobID, u.StateSince = "", d.cfg.Now().UTC()
			err := d.cfg.Store.NodeUpdate(ctx, u, model.NodeIdle)
			switch {
			case err == nil:
				freed = true
			case !errors.Is(err, store.ErrPreconditionFailed) && !errors.Is(err, store.ErrNotFound):
				return freed, fmt.Errorf("free node %s: %w", n.ID, err)
			}
		case d.cfg.Sender.Connected(n.ID):
			_ = d.cfg.Sender.Send(n.ID, agentproto.Message{Type: agentproto.TypeCancel, RunID: j.RunID})
		}
	}
	return freed, nil
}

// heldRanks returns the nodes a queued gang job kept from its last
// attempt, by rank, and whether they are all ready (their old attempt
// has ended, so they are idle). A kept node that is gone or no longer
// the job's leaves its rank open, for a new node.
func (d *Dispatcher) heldRanks(ctx context.Context, j model.Job) (map[int]model.Node, bool, error) {
	held := map[int]model.Node{}
	ready := true
	for r, id := range j.NodeIDs {
		if id == "" {
			continue
		}
		n, err := d.cfg.Store.NodeGet(ctx, id)
		if errors.Is(err, store.ErrNotFound) {
			continue
		}
		if err != nil {
			return nil, false, fmt.Errorf("get node %s: %w", id, err)
		}
		if n.JobID != j.ID || (n.State != model.NodeIdle && n.State != model.NodeRunning) {
			continue
		}
		held[r] = n
		ready = ready && n.State == model.NodeIdle
	}
	return held, ready, nil
}

// Package nodehealth holds the node health reconciler: the loop that
// decides which nodes can no longer be used and gives their jobs back to
// the queue.
//
// On each pass ([Checker.Check]) it reads every provider's instances, the
// preemption notices of providers that give them
// ([provider.PreemptionNotifier]), and every node record, and:
//
//   - a node of a LowPriority cluster whose instance is to be taken away
//     gets notice: while it runs a job, its agent is sent Evict with the
//     deadline (notice file, SIGTERM, SIGKILL at the deadline; the agent
//     then reports the job preempted, and the hub requeues it and marks the
//     node preempted). An idle node, or one whose agent has not reported
//     ReportGrace after the deadline, becomes preempted here, its job's
//     attempt ending with class preemption; the job is requeued within
//     [model.MaxPreemptionRetries]. A Dedicated cluster's nodes are never
//     preempted, whatever a provider says: they are judged as below.
//   - a node whose agent stopped heartbeating, never registered, or whose
//     instance failed, stopped or vanished becomes unusable; its job's
//     attempt ends with class infrastructure and the job is requeued within
//     [model.MaxInfrastructureRetries].
//   - instances no node record claims (agents whose records are gone) are
//     deleted.
//
// The node's change and its job's are one store call, conditional on the
// states read, so the agent hub, the dispatcher and the autoscaler can race
// it safely and a pass can run twice. It removes nothing itself: the
// autoscaler deletes preempted and unusable nodes and makes replacements,
// once it is told ([Config.Changed]).
package nodehealth

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"kumo/internal/agentproto"
	"kumo/internal/controller"
	"kumo/internal/model"
	"kumo/internal/provider"
	"kumo/internal/store"
)

// Defaults for the zero values of [Config].
const (
	DefaultHeartbeatTimeout = 30 * time.Second
	DefaultBootTimeout      = 2 * time.Minute
	DefaultResync           = time.Second
	MaxDefaultResync        = 10 * time.Second
)

// createGrace is how long a node record may exist without its instance
// appearing in the provider's list before the node counts as lost: the
// record is written just before the provider's Create call.
const createGrace = 10 * time.Second

// DefaultReportGrace is the zero value of Config.ReportGrace.
const DefaultReportGrace = 15 * time.Second

// Sender sends a message to a node's agent; the agent hub implements it.
// Send must not block for long; an error means the agent is not connected
// (the next pass sends again).
type Sender interface {
	Send(nodeID string, m agentproto.Message) error
}

// Event kinds the checker records on a node's compute.
const (
	EventNodeUnusable   = "NodeUnusable"   // a node failed; says why and what became of its job
	EventNodePreempted  = "NodePreempted"  // a low-priority node was taken away; says what became of its job
	EventEvictionNotice = "EvictionNotice" // a low-priority node running a job is to be taken; its job has notice
)

// Liveness reports when a node's agent was last heard from. The server's
// agent hub implements it. LastSeen must be safe for concurrent use and must
// not block; ok is false when the agent has not been seen since the control
// plane started.
type Liveness interface {
	LastSeen(nodeID string) (t time.Time, ok bool)
}

// Config configures a [Checker].
type Config struct {
	Store store.Store
	// Providers are the node providers, keyed by lower-case region name; a
	// region without an entry uses the entry named by its Provider field.
	Providers map[string]provider.Provider
	// Regions are the regions computes live in, keyed by lower-case name.
	Regions map[string]model.Region
	// HeartbeatTimeout is how long a registered node's agent may stay
	// silent before the node is unusable (counted from the control plane's
	// start for agents not seen since); zero means DefaultHeartbeatTimeout.
	HeartbeatTimeout time.Duration
	// BootTimeout is how long a preparing node's agent has to register;
	// zero means DefaultBootTimeout.
	BootTimeout time.Duration
	// Resync is how often the loop runs a pass; zero means a third of
	// HeartbeatTimeout, at least DefaultResync and at most
	// MaxDefaultResync (10s with the default timeout): a pass reads every
	// node and instance, so on a large cluster it is most of what an idle
	// control plane spends.
	Resync time.Duration
	// Liveness reports agents' heartbeats; nil means heartbeats are not
	// checked.
	Liveness Liveness
	// Sender reaches nodes' agents with eviction notices; nil means
	// evicted nodes are taken without notice to their jobs.
	Sender Sender
	// ReportGrace is how long after an eviction's deadline the agent has
	// to report its job (and upload its outputs) before the node is
	// declared preempted without it; zero means DefaultReportGrace.
	ReportGrace time.Duration
	// Changed is called (it must not block for long) for each compute
	// whose node the pass removed from service or whose job it requeued or
	// ended, so that the autoscaler replaces the node and the dispatcher
	// looks again; nil means nobody is told.
	Changed func(computeID string)
	// Now returns the current time; nil means time.Now. The loop's own
	// ticker always runs on the real clock.
	Now func() time.Time
	// Log receives errors and decisions; nil means slog.Default().
	Log *slog.Logger
}

// Checker runs health passes. Create it with [New], call Start once and
// Stop before closing the store; Check may also be called directly, from
// any goroutine (passes are serialized).
type Checker struct {
	cfg     Config
	started time.Time // when New ran: heartbeats and boots are counted from here at the latest

	pass    sync.Mutex      // serializes passes
	noticed map[string]bool // nodes whose eviction notice was recorded as an event; guarded by pass
	loop    *controller.Controller
	group   *controller.Group
}

// passKey is the one key of the checker's queue: a pass covers every node.
const passKey = "nodes"

// New returns a Checker for cfg.
func New(cfg Config) *Checker {
	if cfg.HeartbeatTimeout <= 0 {
		cfg.HeartbeatTimeout = DefaultHeartbeatTimeout
	}
	if cfg.BootTimeout <= 0 {
		cfg.BootTimeout = DefaultBootTimeout
	}
	if cfg.Resync <= 0 {
		cfg.Resync = min(max(cfg.HeartbeatTimeout/3, DefaultResync), MaxDefaultResync)
	}
	if cfg.ReportGrace <= 0 {
		cfg.ReportGrace = DefaultReportGrace
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	c := &Checker{cfg: cfg, started: cfg.Now().UTC(), noticed: map[string]bool{}}
	c.loop = controller.New(controller.Config{Name: "node health", Log: cfg.Log, MaxDelay: cfg.HeartbeatTimeout,
		Reconciler: controller.ReconcilerFunc(c.reconcile)})
	return c
}

// passCostFactor bounds the loop's own cost: a pass waits at least this
// many times the last pass's time after it (but never longer than
// HeartbeatTimeout), so that passes over a very large cluster take at
// most about 0.5% of a core.
const passCostFactor = 200

// Start runs a pass at once and then each Resync (or, when a pass took
// longer than 1/passCostFactor of Resync, passCostFactor times that
// pass's time, at most HeartbeatTimeout), or at once when kicked, until
// Stop.
func (c *Checker) Start(ctx context.Context) {
	c.loop.Enqueue(passKey)
	c.group = controller.Start(ctx, c.loop)
}

// reconcile runs one pass and asks for the next.
func (c *Checker) reconcile(ctx context.Context, _ string) (controller.Result, error) {
	start := time.Now()
	err := c.Check(ctx)
	return controller.Result{RequeueAfter: max(c.cfg.Resync, min(passCostFactor*time.Since(start), c.cfg.HeartbeatTimeout))}, err
}

// Kick asks the loop for a pass soon (an eviction was just asked for). It
// never blocks; kicks while one waits are merged.
func (c *Checker) Kick() { c.loop.Enqueue(passKey) }

// Stop ends the loop and waits for a pass under way to finish.
func (c *Checker) Stop() {
	if c.group != nil {
		c.group.Stop()
	}
}

func (c *Checker) now() time.Time { return c.cfg.Now().UTC() }

// Check runs one health pass over every provider (see the package doc).
func (c *Checker) Check(ctx context.Context) error {
	orphans, err := c.checkNodes(ctx)
	errs := []error{err}
	// Deleting orphans may take a while (a provider may wait for a process
	// to stop) and no pass can create an instance of the same ID.
	for _, key := range slices.Sorted(maps.Keys(orphans)) {
		ids := orphans[key]
		c.cfg.Log.Info("deleting orphan instances", "provider", key, "ids", ids)
		if err := c.cfg.Providers[key].Delete(ctx, ids); err != nil {
			errs = append(errs, fmt.Errorf("delete orphan instances of %s: %w", key, err))
		}
	}
	return errors.Join(errs...)
}

// checkNodes takes unhealthy and preempted nodes out of service and
// returns, by provider key, the instances no node record claims.
func (c *Checker) checkNodes(ctx context.Context) (map[string][]string, error) {
	c.pass.Lock()
	defer c.pass.Unlock()
	st := c.cfg.Store
	orphans := map[string][]string{}
	var errs []error
	touched := map[string]bool{}
	computes := map[string]*model.Compute{} // by ID; nil when gone
	for _, key := range slices.Sorted(maps.Keys(c.cfg.Providers)) {
		prov := c.cfg.Providers[key]
		// List the provider before the store: an instance listed now was
		// created after its node record, so a node record missing now
		// really is gone.
		insts, err := prov.List(ctx)
		if err != nil {
			errs = append(errs, fmt.Errorf("list instances of %s: %w", key, err))
			continue
		}
		preempted := map[string]provider.Preemption{}
		if pn, ok := prov.(provider.PreemptionNotifier); ok {
			ps, err := pn.Preempted(ctx)
			if err != nil {
				errs = append(errs, fmt.Errorf("list preemptions of %s: %w", key, err))
			}
			for _, p := range ps {
				preempted[p.ID] = p
			}
		}
		nodes, err := st.NodeList(ctx)
		if err != nil {
			return orphans, errors.Join(append(errs, fmt.Errorf("list nodes: %w", err))...)
		}
		now := c.now()
		known := map[string]bool{}
		for _, n := range nodes {
			known[n.ID] = true
		}
		for id := range c.noticed {
			if !known[id] {
				delete(c.noticed, id)
			}
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
			if k, err := c.providerKey(comp.Location); err != nil || k != key {
				continue
			}
			to, reason := model.NodeUnusable, ""
			if p, ok := preempted[n.ID]; ok && comp.Priority == model.PriorityLowPriority {
				if c.notice(ctx, n, p, now) {
					continue // its agent has the job's notice; it reports the job preempted
				}
				to, reason = model.NodePreempted, preemptionReason(p, now)
			} else {
				in, listed := byID[n.ID]
				reason = c.diagnose(n, in, listed, now)
			}
			if reason == "" {
				continue
			}
			if err := c.remove(ctx, n, to, reason, now); err != nil {
				errs = append(errs, err)
				continue
			}
			touched[n.ComputeID] = true
		}
	}
	for _, id := range slices.Sorted(maps.Keys(touched)) {
		c.changed(id)
	}
	return orphans, errors.Join(errs...)
}

// notice handles a LowPriority node whose instance is to be taken at p.At.
// While the node runs a job and the deadline (plus ReportGrace) has not
// passed, its agent is sent Evict (again on each pass: the agent ignores
// repeats) and notice reports true: the node stays as it is. Otherwise it
// reports false and the node is to be preempted now.
func (c *Checker) notice(ctx context.Context, n model.Node, p provider.Preemption, now time.Time) bool {
	if n.State != model.NodeRunning || n.JobID == "" || c.cfg.Sender == nil {
		return false
	}
	deadline := p.At
	if deadline.IsZero() {
		deadline = now
	}
	if !now.Before(deadline.Add(c.cfg.ReportGrace)) {
		return false
	}
	j, ok, err := store.NodeJob(ctx, c.cfg.Store, n)
	if err != nil || !ok {
		return false
	}
	if err := c.cfg.Sender.Send(n.ID, agentproto.Message{Type: agentproto.TypeEvict, RunID: j.RunID, Deadline: deadline}); err != nil {
		c.cfg.Log.Warn("send eviction notice", "node", n.ID, "err", err)
	}
	if !c.noticed[n.ID] {
		c.noticed[n.ID] = true
		msg := fmt.Sprintf("node %s is evicted at %s; job %s has notice", n.ID, deadline.UTC().Format(time.RFC3339), j.ID)
		if err := c.cfg.Store.EventAppend(ctx, model.Event{ComputeID: n.ComputeID, Time: now, Kind: EventEvictionNotice, Message: msg}); err != nil {
			c.cfg.Log.Error("record event", "compute", n.ComputeID, "kind", EventEvictionNotice, "err", err)
		}
	}
	return true
}

func preemptionReason(p provider.Preemption, now time.Time) string {
	switch {
	case p.At.IsZero():
		return "preempted by the provider"
	case p.At.After(now):
		return "preempted by the provider; the instance stops at " + p.At.UTC().Format(time.RFC3339)
	}
	return "preempted by the provider at " + p.At.UTC().Format(time.RFC3339)
}

// diagnose says why a node can no longer be used, or "" if it can.
func (c *Checker) diagnose(n model.Node, in provider.InstanceStatus, listed bool, now time.Time) string {
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
		since := latest(n.CreatedAt, c.started)
		if now.Sub(since) >= c.cfg.BootTimeout {
			return fmt.Sprintf("agent did not register within %s", c.cfg.BootTimeout)
		}
		return ""
	}
	if c.cfg.Liveness == nil {
		return ""
	}
	seen, ok := c.cfg.Liveness.LastSeen(n.ID)
	if !ok {
		if age := now.Sub(c.started); age >= c.cfg.HeartbeatTimeout {
			return fmt.Sprintf("agent not heard from since the control plane started %s ago", age.Truncate(time.Second))
		}
		return ""
	}
	if age := now.Sub(seen); age >= c.cfg.HeartbeatTimeout {
		return fmt.Sprintf("agent stopped heartbeating %s ago", age.Truncate(time.Second))
	}
	return ""
}

// remove moves n to state to (unusable or preempted) with reason, ending
// its job's attempt in the same store call, and records an event. A node
// or job that changed meanwhile is left for the next pass.
func (c *Checker) remove(ctx context.Context, n model.Node, to model.NodeState, reason string, now time.Time) error {
	st := c.cfg.Store
	u := n
	if err := u.Remove(to, reason, now); err != nil {
		return err
	}
	kind, msg := EventNodeUnusable, "node "+n.ID+" unusable: "+reason
	if to == model.NodePreempted {
		kind, msg = EventNodePreempted, "node "+n.ID+" preempted: "+reason
	}
	var err error
	j, ok, gerr := store.NodeJob(ctx, st, n)
	switch {
	case gerr != nil:
		return gerr
	case ok:
		from := j.Status
		why := model.ReasonNodeLost
		if to == model.NodePreempted {
			why = model.ReasonPreempted
		}
		what := j.LoseNode(n.ID, why, "node "+n.ID+": "+reason, now)
		err = st.JobUpdate(ctx, j, from, &u, n.State)
		msg += "; job " + j.ID + " " + what
	default:
		err = st.NodeUpdate(ctx, u, n.State)
	}
	if errors.Is(err, store.ErrPreconditionFailed) || errors.Is(err, store.ErrNotFound) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("mark node %s %s: %w", n.ID, to, err)
	}
	c.cfg.Log.Warn("node out of service", "compute", n.ComputeID, "node", n.ID, "state", to, "reason", reason)
	if err := st.EventAppend(ctx, model.Event{ComputeID: n.ComputeID, Time: now, Kind: kind, Message: msg}); err != nil {
		c.cfg.Log.Error("record event", "compute", n.ComputeID, "kind", kind, "err", err)
	}
	return nil
}

func (c *Checker) changed(computeID string) {
	if c.cfg.Changed != nil {
		c.cfg.Changed(computeID)
	}
}

// providerKey returns the key in Config.Providers of the provider serving
// a location, as the autoscaler picks it.
func (c *Checker) providerKey(location string) (string, error) {
	rk := strings.ToLower(strings.ReplaceAll(location, " ", ""))
	r, ok := c.cfg.Regions[rk]
	if !ok {
		return "", fmt.Errorf("region %q is not configured", location)
	}
	if _, ok := c.cfg.Providers[rk]; ok {
		return rk, nil
	}
	if _, ok := c.cfg.Providers[r.Provider]; ok {
		return r.Provider, nil
	}
	return "", fmt.Errorf("no node provider for region %q", location)
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

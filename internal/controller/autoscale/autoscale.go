// Package autoscale holds the autoscaler: the reconcile loop that gives
// each AmlCompute cluster the nodes its jobs need.
//
// Scaling ([Autoscaler.Reconcile]) runs per cluster whenever something
// relevant changes (a job queued or finished, a node's state, a PATCH of
// the scale settings: callers [Autoscaler.Notify]), when a pass asked to be
// requeued (a cluster short of its target asks every second), and on a
// resync tick, a safety net that runs every minute by default. Under a stream
// of changes a cluster's passes are spaced by ten times their cost. It removes nodes that are gone for good
// (unusable, preempted, half-removed), computes the target clamp(min, max,
// nodes needed by queued and running jobs), creates nodes up to it within
// the workspace's vCPU quota and the provider's capacity, removes idle
// nodes above it once they have been idle for the cluster's idle time, and
// writes the cluster's [model.ComputeStatus].
//
// Which nodes are unhealthy or preempted is decided by another loop,
// package nodehealth; the autoscaler removes and replaces the nodes it
// took out of service.
//
// The loop is level-triggered: they read all current state from the store and
// the providers on each pass, so a pass after a crash finishes whatever the
// crash interrupted, and running a pass twice is harmless. Every write is
// conditional on the state that was read, so the agent hub, which moves
// nodes between preparing, idle and running, can race them safely.
//
// The Autoscaler is also the provisioner's [provision.Finalizer]: Release
// ends a deleted cluster's jobs and removes its nodes.
package autoscale

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"kumo/internal/controller"
	"kumo/internal/controller/provision"
	"kumo/internal/model"
	"kumo/internal/provider"
	"kumo/internal/store"
)

// DefaultResync is the zero value of Config.Resync. Every change the
// autoscaler acts on is notified, and time-bound work (an idle node's
// timeout, a backoff, a cluster short of its target) asks for its own
// pass, so the resync is only a safety net: at its default it costs an
// idle control plane next to nothing, however large its clusters.
const DefaultResync = time.Minute

const (
	// backoffBase and backoffMax bound the wait before a cluster whose
	// nodes keep failing gets new ones: 1s, 2s, 4s … 1m.
	backoffBase = time.Second
	backoffMax  = time.Minute
	// maxNodeErrors is how many NodeUnusable errors a status keeps.
	maxNodeErrors = 5
	// requeueSoon asks for another pass at once, e.g. to remove nodes
	// whose creation just failed.
	requeueSoon = 10 * time.Millisecond
	// shortRecheck is how soon a cluster short of its target is looked
	// at again (quota or provider capacity may have been freed).
	shortRecheck = time.Second
)

var _ provision.Finalizer = (*Autoscaler)(nil)

// Sessions reports the SSH logins open on a node and when the last one
// closed (zero if none has). The agent hub implements it; it must be safe
// for concurrent use and must not block.
type Sessions interface {
	Sessions(nodeID string) (open int, lastClosed time.Time)
}

// Result is what a scaling pass asks of the loop.
type Result struct {
	// RequeueAfter asks for another pass of the same cluster after this
	// long (an idle node reaching the idle time, a backoff ending); zero
	// means only when notified or on the resync tick.
	RequeueAfter time.Duration
	// short is whether the cluster was short of its target: quota or
	// provider capacity may be freed without anyone notifying, so the
	// loop looks again within shortRecheck.
	short bool
}

// Config configures an [Autoscaler].
type Config struct {
	Store store.Store
	// Providers are the node providers, keyed by lower-case region name; a
	// region without an entry uses the entry named by its Provider field.
	Providers map[string]provider.Provider
	// Regions are the regions computes live in, keyed by lower-case name
	// (a compute's Location picks its region).
	Regions map[string]model.Region
	// AgentURL is the control-plane URL node agents connect to.
	AgentURL string
	// AgentCAFile is the CA bundle agents verify AgentURL with; "" means
	// the system roots.
	AgentCAFile string
	// Resync is how often every cluster is reconciled without being
	// notified; zero means DefaultResync.
	Resync time.Duration
	// Changed is called (it must not block for long) after the autoscaler
	// requeued or ended a job, so that the dispatcher looks again; nil
	// means nobody is told.
	Changed func(computeID string)
	// Sessions reports SSH logins open on nodes; an idle node with one is
	// not removed. Nil means none are counted.
	Sessions Sessions
	// Now returns the current time; nil means time.Now. Timers of the loop
	// itself always run on the real clock.
	Now func() time.Time
	// Log receives errors and removals; nil means slog.Default().
	Log *slog.Logger
}

// Autoscaler runs the scaling loop. Create it with [New], call Start once
// and Stop before closing the store; Reconcile and Release may also be
// called directly (tests, the provisioner), from any goroutine.
type Autoscaler struct {
	cfg     Config
	started time.Time // when New ran: node errors stored without a failure time are cleared only by nodes made since

	// pass serializes scaling passes and releases, so that
	// quota accounting and provider calls never interleave.
	pass   sync.Mutex
	states map[string]*computeState // by compute ID; guarded by pass
	ports  sshPorts                 // guarded by pass

	loop  *controller.Controller
	group *controller.Group
	// lastRun and lastCost pace each compute's passes; the loop's one
	// worker alone uses them.
	lastRun  map[string]time.Time
	lastCost map[string]time.Duration
}

// New returns an Autoscaler for cfg.
func New(cfg Config) *Autoscaler {
	if cfg.Resync <= 0 {
		cfg.Resync = DefaultResync
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	a := &Autoscaler{
		cfg:      cfg,
		started:  cfg.Now().UTC(),
		states:   map[string]*computeState{},
		lastRun:  map[string]time.Time{},
		lastCost: map[string]time.Duration{},
	}
	a.loop = controller.New(controller.Config{Name: "autoscaler", Reconciler: controller.ReconcilerFunc(a.reconcileKey),
		Resync: cfg.Resync, ResyncKeys: a.scalable, BaseDelay: shortRecheck, MaxDelay: maxRetryDelay, Log: cfg.Log})
	return a
}

func (a *Autoscaler) changed(computeID string) {
	if a.cfg.Changed != nil {
		a.cfg.Changed(computeID)
	}
}

func (a *Autoscaler) now() time.Time { return a.cfg.Now().UTC() }

// Notify asks for a scaling pass of the compute soon. It never blocks;
// notifications of a compute already waiting are merged.
func (a *Autoscaler) Notify(computeID string) { a.loop.Enqueue(computeID) }

// Start runs the scaling loop until Stop: it reconciles every notified
// cluster promptly, requeued ones when due and all clusters each Resync.
func (a *Autoscaler) Start(ctx context.Context) { a.group = controller.Start(ctx, a.loop) }

// Stop ends the loop and waits for the passes under way to finish.
func (a *Autoscaler) Stop() {
	if a.group != nil {
		a.group.Stop()
	}
}

// maxRetryDelay bounds the backoff after failed passes of a compute.
const maxRetryDelay = 30 * time.Second

// minPassGap is the least time between two scaling passes of one compute.
const minPassGap = 20 * time.Millisecond

// passCostFactor scales a compute's last pass time into the least time
// before its next one, so that under a stream of job changes the passes
// of a large cluster (which read its every node) take at most about
// 1/passCostFactor of a core. A first pass, or one after a quiet spell,
// runs at once. The wait is at most maxPassGap, however long a pass took
// (one that created thousands of nodes).
const passCostFactor = 10

// maxPassGap bounds the wait that passCostFactor sets.
const maxPassGap = time.Second

// reconcileKey runs one scaling pass of a compute for the loop. Under a
// stream of job changes a compute is looked at most once per minPassGap,
// or passCostFactor times its last pass's time, which bounds the cost of
// autoscaling at hundreds of jobs a second on clusters of any size.
func (a *Autoscaler) reconcileKey(ctx context.Context, id string) (controller.Result, error) {
	gap := min(max(minPassGap, passCostFactor*a.lastCost[id]), maxPassGap)
	if since := time.Since(a.lastRun[id]); since < gap {
		return controller.Result{RequeueAfter: gap - since}, nil
	}
	a.lastRun[id] = time.Now()
	res, err := a.Reconcile(ctx, id)
	a.lastCost[id] = time.Since(a.lastRun[id])
	switch {
	case err != nil:
		return controller.Result{}, err
	case res.RequeueAfter > 0 && (!res.short || res.RequeueAfter < shortRecheck):
		return controller.Result{RequeueAfter: res.RequeueAfter}, nil
	case res.short:
		return controller.Result{RequeueAfter: shortRecheck}, nil
	}
	return controller.Result{}, nil
}

// scalable lists every cluster that can be scaled, for the resync.
func (a *Autoscaler) scalable(ctx context.Context) ([]string, error) {
	cs, err := a.cfg.Store.ComputeListByState(ctx, model.StateSucceeded, model.StateUpdating)
	if err != nil {
		return nil, fmt.Errorf("autoscale resync: %w", err)
	}
	ids := make([]string, len(cs))
	for i, c := range cs {
		ids[i] = c.ID
	}
	return ids, nil
}

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
	"log/slog"
	"slices"
	"sync"
	"time"

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

	mu    sync.Mutex
	queue []string             // computes to reconcile, in notification order
	dirty map[string]bool      // members of queue
	due   map[string]time.Time // requeue times (real clock)
	kick  chan struct{}

	cancel context.CancelFunc
	wg     sync.WaitGroup
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
	return &Autoscaler{
		cfg:     cfg,
		started: cfg.Now().UTC(),
		states:  map[string]*computeState{},
		dirty:   map[string]bool{},
		due:     map[string]time.Time{},
		kick:    make(chan struct{}, 1),
	}
}

func (a *Autoscaler) changed(computeID string) {
	if a.cfg.Changed != nil {
		a.cfg.Changed(computeID)
	}
}

func (a *Autoscaler) now() time.Time { return a.cfg.Now().UTC() }

// Notify asks for a scaling pass of the compute soon. It never blocks;
// notifications of a compute already waiting are merged.
func (a *Autoscaler) Notify(computeID string) {
	a.mu.Lock()
	if !a.dirty[computeID] {
		a.dirty[computeID] = true
		a.queue = append(a.queue, computeID)
	}
	a.mu.Unlock()
	select {
	case a.kick <- struct{}{}:
	default:
	}
}

// Start runs the scaling worker in a goroutine until Stop: it reconciles
// every notified cluster promptly, requeued ones when due and all clusters
// each Resync.
func (a *Autoscaler) Start(ctx context.Context) {
	ctx, a.cancel = context.WithCancel(ctx)
	a.wg.Add(1)
	go func() {
		defer a.wg.Done()
		a.runScaling(ctx)
	}()
}

// Stop ends the loop and waits for the passes under way to finish.
func (a *Autoscaler) Stop() {
	if a.cancel != nil {
		a.cancel()
	}
	a.wg.Wait()
}

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

func (a *Autoscaler) runScaling(ctx context.Context) {
	resync := time.NewTicker(a.cfg.Resync)
	defer resync.Stop()
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	a.enqueueAll(ctx)
	lastRun := map[string]time.Time{}
	lastCost := map[string]time.Duration{}
	for {
		for {
			id, ok := a.pop()
			if !ok || ctx.Err() != nil {
				break
			}
			// Coalesce bursts: under a stream of job changes a compute is
			// looked at most once per minPassGap, or passCostFactor times
			// its last pass's time, which bounds the cost of autoscaling
			// at hundreds of jobs a second on clusters of any size.
			gap := min(max(minPassGap, passCostFactor*lastCost[id]), maxPassGap)
			if since := time.Since(lastRun[id]); since < gap {
				a.after(id, gap-since)
				continue
			}
			lastRun[id] = time.Now()
			res, err := a.Reconcile(ctx, id)
			lastCost[id] = time.Since(lastRun[id])
			switch {
			case err != nil && ctx.Err() == nil:
				a.cfg.Log.Error("autoscale pass", "compute", id, "err", err)
				a.after(id, shortRecheck)
			case res.RequeueAfter > 0 && (!res.short || res.RequeueAfter < shortRecheck):
				a.after(id, res.RequeueAfter)
			case res.short:
				a.after(id, shortRecheck)
			}
		}
		if d, ok := a.nextDue(); ok {
			timer.Reset(d)
		} else {
			timer.Stop()
		}
		select {
		case <-ctx.Done():
			return
		case <-a.kick:
		case <-resync.C:
			a.enqueueAll(ctx)
		case <-timer.C:
		}
		a.promoteDue()
	}
}

// enqueueAll marks every cluster that can be scaled for a pass.
func (a *Autoscaler) enqueueAll(ctx context.Context) {
	cs, err := a.cfg.Store.ComputeListByState(ctx, model.StateSucceeded, model.StateUpdating)
	if err != nil {
		if ctx.Err() == nil {
			a.cfg.Log.Error("autoscale resync", "err", err)
		}
		return
	}
	for _, comp := range cs {
		a.Notify(comp.ID)
	}
}

// pop takes the next compute to reconcile and forgets any requeue time it
// had: the pass sets a new one.
func (a *Autoscaler) pop() (string, bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if len(a.queue) == 0 {
		return "", false
	}
	id := a.queue[0]
	a.queue = slices.Delete(a.queue, 0, 1)
	delete(a.dirty, id)
	delete(a.due, id)
	return id, true
}

func (a *Autoscaler) after(id string, d time.Duration) {
	at := time.Now().Add(d)
	a.mu.Lock()
	defer a.mu.Unlock()
	if old, ok := a.due[id]; !ok || at.Before(old) {
		a.due[id] = at
	}
}

// nextDue returns how long until the earliest requeue.
func (a *Autoscaler) nextDue() (time.Duration, bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	var first time.Time
	for _, at := range a.due {
		if first.IsZero() || at.Before(first) {
			first = at
		}
	}
	if first.IsZero() {
		return 0, false
	}
	return max(time.Until(first), 0), true
}

// promoteDue queues the computes whose requeue time has come.
func (a *Autoscaler) promoteDue() {
	now := time.Now()
	a.mu.Lock()
	var ready []string
	for id, at := range a.due {
		if !at.After(now) {
			ready = append(ready, id)
			delete(a.due, id)
		}
	}
	a.mu.Unlock()
	slices.Sort(ready)
	for _, id := range ready {
		a.Notify(id)
	}
}

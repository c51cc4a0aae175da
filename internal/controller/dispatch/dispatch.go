// Package dispatch holds the dispatcher: the reconcile loop that gives
// queued jobs to idle nodes, first come first served per compute, and runs
// the jobs of the built-in compute target "local" on the control plane's
// own host. It reacts at once to Notify (a job queued, a node freed) and
// also resyncs every compute on a tick, so a lost notification only delays.
package dispatch

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"sync"
	"time"

	"kumo/internal/agentproto"
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
	// Resync is how often every compute is looked at; zero means 1s.
	Resync time.Duration
	// Changed is told after the dispatcher changed a compute's jobs.
	Changed func(computeID string)
	// Now returns the current time; nil means time.Now.
	Now func() time.Time
	// Log receives errors; nil means slog.Default().
	Log *slog.Logger
}

// Dispatcher is the loop. Start it once; Notify it; Stop it.
type Dispatcher struct {
	cfg   Config
	local *localRunner

	mu    sync.Mutex
	dirty map[string]bool
	kick  chan struct{}

	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// New returns a Dispatcher.
func New(cfg Config) *Dispatcher {
	if cfg.Resync <= 0 {
		cfg.Resync = time.Second
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
	d := &Dispatcher{cfg: cfg, dirty: map[string]bool{}, kick: make(chan struct{}, 1)}
	d.local = &localRunner{d: d, running: map[string]*localJob{}, uids: map[int]bool{}}
	return d
}

// Notify asks for a pass over one compute soon. It never blocks.
func (d *Dispatcher) Notify(computeID string) {
	d.mu.Lock()
	d.dirty[computeID] = true
	d.mu.Unlock()
	select {
	case d.kick <- struct{}{}:
	default:
	}
}

// Start recovers local jobs interrupted by a restart, then runs the loop
// until Stop.
func (d *Dispatcher) Start(ctx context.Context) {
	ctx, d.cancel = context.WithCancel(ctx)
	if err := d.local.recover(ctx); err != nil {
		d.cfg.Log.Error("recover local jobs", "err", err)
	}
	d.wg.Add(1)
	go func() {
		defer d.wg.Done()
		t := time.NewTicker(d.cfg.Resync)
		defer t.Stop()
		// The first pass runs at once, over every compute with active
		// jobs, rather than waiting for the first tick or Notify.
		d.resyncAll(ctx)
		for {
			d.mu.Lock()
			dirty := d.dirty
			d.dirty = map[string]bool{}
			d.mu.Unlock()
			for id := range dirty {
				if err := d.Reconcile(ctx, id); err != nil && ctx.Err() == nil {
					d.cfg.Log.Error("dispatch", "compute", id, "err", err)
				}
			}
			select {
			case <-ctx.Done():
				return
			case <-d.kick:
			case <-t.C:
				d.resyncAll(ctx)
			}
		}
	}()
}

// Stop ends the loop and cancels and waits for running local jobs.
func (d *Dispatcher) Stop() {
	if d.cancel != nil {
		d.cancel()
	}
	d.wg.Wait()
	d.local.stopAll()
}

// resyncAll marks every compute with active jobs dirty.
func (d *Dispatcher) resyncAll(ctx context.Context) {
	ids, err := d.cfg.Store.JobComputeIDs(ctx, model.JobQueued, model.JobPreparing, model.JobRunning, model.JobFinalizing)
	if err != nil {
		d.cfg.Log.Error("dispatch resync", "err", err)
		return
	}
	d.mu.Lock()
	for _, id := range ids {
		d.dirty[id] = true
	}
	d.mu.Unlock()
}

// IsLocal reports whether a compute ID names the built-in local target.
func IsLocal(computeID string) bool {
	return len(computeID) > len(localSuffix) && computeID[len(computeID)-len(localSuffix):] == localSuffix
}

const localSuffix = "/computes/" + model.LocalCompute

// Reconcile runs one pass over a compute: it assigns its queued jobs, in
// order, to its idle connected nodes, and tells nodes about cancels. Safe
// to run twice: every assignment is conditional on the job still being
// queued and the node still idle.
func (d *Dispatcher) Reconcile(ctx context.Context, computeID string) error {
	if IsLocal(computeID) {
		return d.local.reconcile(ctx, computeID)
	}
	st := d.cfg.Store
	nodes, err := st.NodeListByCompute(ctx, computeID)
	if err != nil {
		return fmt.Errorf("list nodes: %w", err)
	}
	var idle []model.Node
	busy := 0
	for _, n := range nodes {
		switch {
		case n.State == model.NodeIdle && n.JobID == "" && d.cfg.Sender.Connected(n.ID):
			idle = append(idle, n)
		case n.JobID != "":
			busy++
		}
	}
	if busy > 0 {
		// Tell nodes about cancels (again: the first message may have been
		// lost with a connection).
		started, err := st.JobListByCompute(ctx, computeID, model.JobPreparing, model.JobRunning)
		if err != nil {
			return fmt.Errorf("list started jobs: %w", err)
		}
		for _, j := range started {
			if j.CancelRequested && j.NodeID != "" {
				_ = d.cfg.Sender.Send(j.NodeID, agentproto.Message{Type: agentproto.TypeCancel, RunID: j.RunID})
			}
		}
	}
	if len(idle) == 0 {
		return nil
	}
	// Only the head of the queue matters: one job per idle node.
	queued, err := st.JobHead(ctx, computeID, model.JobQueued, len(idle))
	if err != nil {
		return fmt.Errorf("list queued jobs: %w", err)
	}
	// Longest idle first, so that recently busy nodes reach their idle
	// timeout and scale down.
	sort.SliceStable(idle, func(a, b int) bool { return idle[a].StateSince.Before(idle[b].StateSince) })
	changed := false
	for len(queued) > 0 && len(idle) > 0 {
		j, n := queued[0], idle[0]
		queued, idle = queued[1:], idle[1:]
		now := d.cfg.Now().UTC()
		if err := j.Assign(&n, now); err != nil {
			return err
		}
		err := st.JobUpdate(ctx, j, model.JobQueued, &n, model.NodeIdle)
		if errors.Is(err, store.ErrPreconditionFailed) {
			// The job was canceled or the node taken meanwhile. Stop here
			// rather than give a later job this pass's next node: the next
			// pass reads the queue afresh, keeping it first come, first
			// served.
			d.Notify(computeID)
			break
		}
		if err != nil {
			return fmt.Errorf("assign %s to %s: %w", j.Name, n.ID, err)
		}
		changed = true
		if d.cfg.Files != nil {
			if err := d.cfg.Files.StartAttempt(j.RunID, j.Attempts); err != nil {
				d.cfg.Log.Error("keep the logs of the job's earlier attempt", "job", j.Name, "err", err)
			}
		}
		if err := d.cfg.Sender.Send(n.ID, d.cfg.Run(j)); err != nil {
			// The agent resumes the job from its Preparing state when it
			// reconnects; a node that never does is replaced by the
			// autoscaler, which requeues the job.
			d.cfg.Log.Warn("send job to node", "job", j.Name, "node", n.ID, "err", err)
		}
	}
	if changed {
		d.cfg.Changed(computeID)
	}
	return nil
}

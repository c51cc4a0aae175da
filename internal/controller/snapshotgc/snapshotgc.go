// Package snapshotgc holds the snapshot collector: the loop that removes
// uploaded code snapshots no job needs any more, so that the data
// directory does not grow with every submission.
//
// A snapshot is removed when no job that has not ended references it and
// it was stored longer ago than the grace period. The grace period covers
// the time between an upload and the job that uses it (the CLI uploads the
// code, then creates the job); a snapshot uploaded and never used goes once
// the grace period has passed, and one whose last job ended goes at the next
// pass after that. Each pass reads the snapshots and the jobs afresh, so a
// pass after a restart collects whatever was left.
package snapshotgc

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"kumo/internal/controller"
	"kumo/internal/jobfiles"
	"kumo/internal/model"
	"kumo/internal/store"
)

// Snapshots is where snapshots are stored. *jobfiles.Files satisfies it.
// Its methods are called from the collector's goroutine only.
type Snapshots interface {
	// SnapshotList returns the stored snapshots.
	SnapshotList() ([]jobfiles.Snapshot, error)
	// SnapshotRemove removes one; one already gone is not an error.
	SnapshotRemove(id string) error
}

// DefaultGrace is how long an unreferenced snapshot is kept after its
// upload when Config.Grace is zero.
const DefaultGrace = time.Hour

// active are the job statuses that may still need a job's code.
var active = []model.JobStatus{model.JobNotStarted, model.JobQueued, model.JobPreparing, model.JobRunning, model.JobFinalizing}

// Config configures a Collector.
type Config struct {
	Store     store.Store
	Snapshots Snapshots
	// Grace is how long after its upload an unreferenced snapshot is kept;
	// zero means DefaultGrace.
	Grace time.Duration
	// Resync is the time between passes; zero means half the grace period,
	// at most a minute.
	Resync time.Duration
	// Now returns the current time; nil means time.Now.
	Now func() time.Time
	// Log receives removals and errors; nil means slog.Default().
	Log *slog.Logger
}

// Collector is the snapshot collection loop. Start it once and Stop it
// before closing the store.
type Collector struct {
	cfg   Config
	loop  *controller.Controller
	group *controller.Group
}

// New returns a Collector for cfg.
func New(cfg Config) *Collector {
	if cfg.Grace <= 0 {
		cfg.Grace = DefaultGrace
	}
	if cfg.Resync <= 0 {
		cfg.Resync = min(cfg.Grace/2, time.Minute)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	c := &Collector{cfg: cfg}
	c.loop = controller.New(controller.Config{Name: "snapshot collector", Log: cfg.Log, Resync: cfg.Resync,
		ResyncKeys: func(context.Context) ([]string, error) { return []string{"snapshots"}, nil },
		Reconciler: controller.ReconcilerFunc(func(ctx context.Context, _ string) (controller.Result, error) {
			_, err := c.Reconcile(ctx)
			return controller.Result{}, err
		})})
	return c
}

// Start runs passes until Stop: one at once, then one per resync tick.
func (c *Collector) Start(ctx context.Context) { c.group = controller.Start(ctx, c.loop) }

// Stop ends the loop and waits for the current pass to finish.
func (c *Collector) Stop() {
	if c.group != nil {
		c.group.Stop()
	}
}

// Reconcile runs one pass and returns the IDs of the snapshots it removed.
// It lists the snapshots before it reads which jobs reference them, so a
// job created during the pass keeps a snapshot younger than the grace
// period.
func (c *Collector) Reconcile(ctx context.Context) ([]string, error) {
	snaps, err := c.cfg.Snapshots.SnapshotList()
	if err != nil {
		return nil, err
	}
	cutoff := c.cfg.Now().Add(-c.cfg.Grace)
	var old []jobfiles.Snapshot
	for _, s := range snaps {
		if s.Stored.Before(cutoff) {
			old = append(old, s)
		}
	}
	if len(old) == 0 {
		return nil, nil
	}
	ids, err := c.cfg.Store.JobSnapshotIDs(ctx, active...)
	if err != nil {
		return nil, fmt.Errorf("list snapshots in use: %w", err)
	}
	used := make(map[string]bool, len(ids))
	for _, id := range ids {
		used[id] = true
	}
	var removed []string
	var errs []error
	for _, s := range old {
		if used[s.ID] {
			continue
		}
		if err := c.cfg.Snapshots.SnapshotRemove(s.ID); err != nil {
			errs = append(errs, err)
			continue
		}
		c.cfg.Log.Info("removed unused code snapshot", "snapshot", s.ID, "bytes", s.Size, "stored", s.Stored)
		removed = append(removed, s.ID)
	}
	return removed, errors.Join(errs...)
}

// Package feed carries "a compute changed" between control plane replicas
// that share one store. The dispatcher and the autoscaler look at a
// compute again when told it changed; in one process a callback tells
// them, but with several replicas the change may happen on one (an API
// request, an agent's report) while the loops run on another (the
// leader). [Changes] does both: Publish calls the local callback at once
// and announces the compute on the store's change feed (channel
// ComputeChannel), and every replica's Changes calls its own callback for
// the computes the others announce.
//
// Announcements are hints, not data: a replica that missed some (its
// listening connection failed) is told to resync, and its loops then look
// at every compute. Equal announcements still waiting are sent once.
package feed

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"time"

	"kumo/internal/store"
)

// ComputeChannel is the store feed channel compute changes travel on.
// Each payload is the announcing replica's ID, a space, and the
// compute's ID.
const ComputeChannel = "kumo_compute"

// publishTimeout bounds one announcement's write.
const publishTimeout = 10 * time.Second

// Config configures [Changes].
type Config struct {
	// Store carries the announcements; required.
	Store store.Store
	// Replica is this replica's ID: no spaces; required. Announcements
	// with it are this replica's own, already handled by Changed.
	Replica string
	// Changed is told (it must not block for long) that a compute
	// changed, here or on another replica; required.
	Changed func(computeID string)
	// Resync is called when announcements may have been missed: every
	// compute may have changed. Nil means nothing is done.
	Resync func()
	// Log receives operational logs; nil means slog.Default().
	Log *slog.Logger
}

// Changes announces compute changes to the other replicas and hears
// theirs. Its methods are safe for concurrent use.
type Changes struct {
	cfg Config

	mu      sync.Mutex
	pending map[string]struct{} // compute IDs to announce
	wake    chan struct{}       // 1-buffered: pending is not empty
	cancel  context.CancelFunc  // ends what Start started; nil before
	done    chan struct{}
}

// New returns a Changes; Start makes it announce and listen.
func New(cfg Config) (*Changes, error) {
	switch {
	case cfg.Store == nil:
		return nil, errors.New("feed: no store")
	case cfg.Replica == "" || strings.ContainsRune(cfg.Replica, ' '):
		return nil, errors.New("feed: a replica ID is required, without spaces")
	case cfg.Changed == nil:
		return nil, errors.New("feed: no Changed callback")
	}
	if cfg.Resync == nil {
		cfg.Resync = func() {}
	}
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	return &Changes{cfg: cfg, pending: map[string]struct{}{}, wake: make(chan struct{}, 1)}, nil
}

// Publish tells this replica's Changed at once, and the other replicas
// soon after (once Start runs), that the compute changed. It does not
// block on the store: announcements are sent by Start's goroutine.
func (c *Changes) Publish(computeID string) {
	c.cfg.Changed(computeID)
	c.mu.Lock()
	c.pending[computeID] = struct{}{}
	c.mu.Unlock()
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

// Start subscribes to ComputeChannel and starts the goroutines that send
// this replica's announcements and hear the others'. Stop ends them.
func (c *Changes) Start(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	ch, err := c.cfg.Store.Subscribe(ctx, ComputeChannel)
	if err != nil {
		cancel()
		return err
	}
	done := make(chan struct{})
	c.mu.Lock()
	c.cancel, c.done = cancel, done
	c.mu.Unlock()
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		c.announce(ctx)
	}()
	go func() {
		defer wg.Done()
		c.listen(ch)
	}()
	go func() {
		wg.Wait()
		close(done)
	}()
	return nil
}

// Stop ends what Start started and waits for it. Announcements not yet
// sent are dropped.
func (c *Changes) Stop() {
	c.mu.Lock()
	cancel, done := c.cancel, c.done
	c.cancel, c.done = nil, nil
	c.mu.Unlock()
	if cancel != nil {
		cancel()
		<-done
	}
}

// announce sends the pending announcements until ctx ends.
func (c *Changes) announce(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-c.wake:
		}
		c.mu.Lock()
		ids := c.pending
		c.pending = map[string]struct{}{}
		c.mu.Unlock()
		for id := range ids {
			pctx, cancel := context.WithTimeout(ctx, publishTimeout)
			err := c.cfg.Store.Publish(pctx, ComputeChannel, c.cfg.Replica+" "+id)
			cancel()
			if err != nil && ctx.Err() == nil {
				c.cfg.Log.Error("feed: announce compute change", "compute", id, "err", err)
			}
		}
	}
}

// listen calls Changed for the other replicas' announcements, and Resync
// when some may have been lost, until ch closes.
func (c *Changes) listen(ch <-chan string) {
	for p := range ch {
		if p == "" {
			c.cfg.Resync()
			continue
		}
		replica, computeID, ok := strings.Cut(p, " ")
		if !ok || computeID == "" {
			c.cfg.Log.Warn("feed: malformed compute change", "payload", p)
			continue
		}
		if replica != c.cfg.Replica {
			c.cfg.Changed(computeID)
		}
	}
}

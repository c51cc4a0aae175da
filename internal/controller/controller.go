// Package controller is kumo's one way to run a reconcile loop: a work
// queue of keys (a compute's ID, a node's, or one fixed key for a loop
// that passes over everything), a Reconciler called for each key, retries
// with exponential backoff, requeues after a delay, a periodic resync that
// re-adds every key as a safety net, and hooks for metrics.
//
// A key is queued at most once however often it is added; a key added
// while its Reconcile runs is reconciled again once that ends, never by
// two workers at once. Loops are told of changes by Enqueue (from the
// store's change feed or another loop) instead of calling each other.
package controller

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"
	"sync"
	"time"
)

// Result is what a Reconcile asks of the queue besides its error.
type Result struct {
	// RequeueAfter, when above zero, reconciles the key again after this
	// long (a timer the loop owns: an idle node's scale-down time, say).
	RequeueAfter time.Duration
}

// Reconciler brings the world for one key in line with the store. It is
// called by one worker at a time per key; it must be idempotent.
type Reconciler interface {
	Reconcile(ctx context.Context, key string) (Result, error)
}

// ReconcilerFunc adapts a function to Reconciler.
type ReconcilerFunc func(ctx context.Context, key string) (Result, error)

// Reconcile calls f.
func (f ReconcilerFunc) Reconcile(ctx context.Context, key string) (Result, error) {
	return f(ctx, key)
}

// terminalError marks an error that retrying cannot cure.
type terminalError struct{ err error }

func (e terminalError) Error() string { return e.err.Error() }
func (e terminalError) Unwrap() error { return e.err }

// Terminal wraps err so that the controller logs it and does not retry
// the key (a bad record that only a person can fix). Terminal(nil) is nil.
func Terminal(err error) error {
	if err == nil {
		return nil
	}
	return terminalError{err}
}

// IsTerminal reports whether err was made by Terminal.
func IsTerminal(err error) bool {
	var t terminalError
	return errors.As(err, &t)
}

// Observation is what the Observe hook is told after each Reconcile.
type Observation struct {
	Controller string
	Key        string
	Duration   time.Duration
	Err        error
	// Retries is how many times in a row the key had failed before this
	// call.
	Retries int
	// Queued is how many keys wait in the queue after this call.
	Queued int
}

// Config configures a Controller.
type Config struct {
	// Name names the loop in logs and observations.
	Name string
	// Reconciler is called for each key taken from the queue.
	Reconciler Reconciler
	// Workers is how many keys are reconciled at once; 0 means 1.
	Workers int
	// Resync, with ResyncKeys, re-adds every key ResyncKeys returns this
	// often, and once at start. A safety net: changes should arrive by
	// Enqueue.
	Resync     time.Duration
	ResyncKeys func(ctx context.Context) ([]string, error)
	// BaseDelay and MaxDelay bound the backoff after failures: BaseDelay
	// doubled per failure in a row, at most MaxDelay. Zero means 50ms and
	// 30s.
	BaseDelay, MaxDelay time.Duration
	// Observe, if not nil, is called after every Reconcile (metrics).
	Observe func(Observation)
	// Log receives errors; nil means slog.Default().
	Log *slog.Logger
}

// Controller is one reconcile loop over a work queue. Enqueue may be
// called before, during and after Run.
type Controller struct {
	cfg  Config
	wake chan struct{}

	mu         sync.Mutex
	queue      []string
	queued     map[string]bool
	processing map[string]bool
	again      map[string]bool // added while processing
	failures   map[string]int
	delayed    map[string]delayed
}

// delayed is a key's pending delayed add.
type delayed struct {
	timer *time.Timer
	at    time.Time // when it fires
	set   time.Time // when it was asked for
}

// New returns a Controller for cfg.
func New(cfg Config) *Controller {
	if cfg.Workers <= 0 {
		cfg.Workers = 1
	}
	if cfg.BaseDelay <= 0 {
		cfg.BaseDelay = 50 * time.Millisecond
	}
	if cfg.MaxDelay <= 0 {
		cfg.MaxDelay = 30 * time.Second
	}
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	return &Controller{cfg: cfg, wake: make(chan struct{}, 1), queued: map[string]bool{}, processing: map[string]bool{},
		again: map[string]bool{}, failures: map[string]int{}, delayed: map[string]delayed{}}
}

// Enqueue asks for key to be reconciled soon. It never blocks.
func (c *Controller) Enqueue(key string) {
	c.mu.Lock()
	c.add(key)
	c.mu.Unlock()
}

// add queues key unless it is queued; a key being reconciled is queued
// again when that ends. c.mu is held.
func (c *Controller) add(key string) {
	switch {
	case c.processing[key]:
		c.again[key] = true
	case !c.queued[key]:
		c.queued[key] = true
		c.queue = append(c.queue, key)
		select {
		case c.wake <- struct{}{}:
		default:
		}
	}
}

// EnqueueAfter asks for key to be reconciled after d. Of several delayed
// adds of one key, the earliest holds. A Reconcile of the key that starts
// after the add and succeeds replaces it with its own Result.
func (c *Controller) EnqueueAfter(key string, d time.Duration) {
	if d <= 0 {
		c.Enqueue(key)
		return
	}
	now := time.Now()
	at := now.Add(d)
	c.mu.Lock()
	defer c.mu.Unlock()
	if prev, ok := c.delayed[key]; ok {
		if !prev.at.After(at) {
			return
		}
		prev.timer.Stop()
	}
	c.delayed[key] = delayed{at: at, set: now, timer: time.AfterFunc(d, func() {
		c.mu.Lock()
		defer c.mu.Unlock()
		if p, ok := c.delayed[key]; ok && p.at.Equal(at) {
			delete(c.delayed, key)
			c.add(key)
		}
	})}
}

// forgetDelayed drops key's delayed add if it was asked for before since.
// c.mu is held.
func (c *Controller) forgetDelayed(key string, since time.Time) {
	if p, ok := c.delayed[key]; ok && p.set.Before(since) {
		p.timer.Stop()
		delete(c.delayed, key)
	}
}

// Len returns how many keys wait in the queue.
func (c *Controller) Len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.queue)
}

// Run reconciles keys until ctx ends, then waits for the Reconciles under
// way to return and drops what is still queued or delayed.
func (c *Controller) Run(ctx context.Context) {
	var wg sync.WaitGroup
	for range c.cfg.Workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c.work(ctx)
		}()
	}
	if c.cfg.ResyncKeys != nil {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c.resync(ctx)
		}()
	}
	wg.Wait()
	c.mu.Lock()
	for _, p := range c.delayed {
		p.timer.Stop()
	}
	c.delayed = map[string]delayed{}
	c.mu.Unlock()
}

// resync adds every key ResyncKeys lists, at once and every Resync.
func (c *Controller) resync(ctx context.Context) {
	var tick <-chan time.Time
	if c.cfg.Resync > 0 {
		t := time.NewTicker(c.cfg.Resync)
		defer t.Stop()
		tick = t.C
	}
	for {
		keys, err := c.cfg.ResyncKeys(ctx)
		if err != nil && ctx.Err() == nil {
			c.cfg.Log.Error("list keys to resync", "controller", c.cfg.Name, "err", err)
		}
		for _, k := range keys {
			c.Enqueue(k)
		}
		select {
		case <-ctx.Done():
			return
		case <-tick:
		}
	}
}

// next takes a key from the queue, waiting until there is one; ok is
// false when ctx ended.
func (c *Controller) next(ctx context.Context) (key string, ok bool) {
	for {
		c.mu.Lock()
		if len(c.queue) > 0 {
			key = c.queue[0]
			c.queue[0] = ""
			c.queue = c.queue[1:]
			delete(c.queued, key)
			c.processing[key] = true
			more := len(c.queue) > 0
			c.mu.Unlock()
			if more {
				// Another worker may take the rest.
				select {
				case c.wake <- struct{}{}:
				default:
				}
			}
			return key, true
		}
		c.mu.Unlock()
		select {
		case <-ctx.Done():
			return "", false
		case <-c.wake:
		}
	}
}

func (c *Controller) work(ctx context.Context) {
	for {
		key, ok := c.next(ctx)
		if !ok {
			return
		}
		c.mu.Lock()
		retries := c.failures[key]
		c.mu.Unlock()
		start := time.Now()
		res, err := c.call(ctx, key)
		took := time.Since(start)
		c.mu.Lock()
		delete(c.processing, key)
		if c.again[key] {
			delete(c.again, key)
			c.add(key)
		}
		switch {
		case err == nil || ctx.Err() != nil:
			delete(c.failures, key)
			c.forgetDelayed(key, start)
		case IsTerminal(err):
			delete(c.failures, key)
		default:
			c.failures[key]++
		}
		failures := c.failures[key]
		queued := len(c.queue)
		c.mu.Unlock()
		if c.cfg.Observe != nil {
			c.cfg.Observe(Observation{Controller: c.cfg.Name, Key: key, Duration: took, Err: err, Retries: retries, Queued: queued})
		}
		switch {
		case ctx.Err() != nil:
		case err != nil && IsTerminal(err):
			c.cfg.Log.Error("reconcile failed; not retrying", "controller", c.cfg.Name, "key", key, "err", err)
		case err != nil:
			delay := c.backoff(failures)
			c.cfg.Log.Warn("reconcile failed; retrying", "controller", c.cfg.Name, "key", key, "err", err, "retry_in", delay)
			c.EnqueueAfter(key, delay)
		case res.RequeueAfter > 0:
			c.EnqueueAfter(key, res.RequeueAfter)
		}
	}
}

// call runs Reconcile, turning a panic into an error so that one bad key
// does not stop the control plane.
func (c *Controller) call(ctx context.Context, key string) (res Result, err error) {
	defer func() {
		if p := recover(); p != nil {
			c.cfg.Log.Error("reconcile panicked", "controller", c.cfg.Name, "key", key, "panic", p, "stack", string(debug.Stack()))
			err = fmt.Errorf("reconcile %s: panic: %v", key, p)
		}
	}()
	return c.cfg.Reconciler.Reconcile(ctx, key)
}

// backoff is the delay after the n-th failure in a row.
func (c *Controller) backoff(n int) time.Duration {
	d := c.cfg.BaseDelay
	for i := 1; i < n && d < c.cfg.MaxDelay; i++ {
		d *= 2
	}
	return min(d, c.cfg.MaxDelay)
}

// Runner is a loop that runs until its context ends.
type Runner interface {
	Run(ctx context.Context)
}

// Group runs loops together and stops them together.
type Group struct {
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// Start runs each loop in a goroutine until ctx ends or Stop.
func Start(ctx context.Context, loops ...Runner) *Group {
	ctx, cancel := context.WithCancel(ctx)
	g := &Group{cancel: cancel}
	for _, l := range loops {
		g.wg.Add(1)
		go func() {
			defer g.wg.Done()
			l.Run(ctx)
		}()
	}
	return g
}

// Stop ends the loops and waits until every one has returned.
func (g *Group) Stop() {
	g.cancel()
	g.wg.Wait()
}

// Package leader chooses which replica of the control plane runs the
// reconcilers: the one that holds a lease row in the shared database.
//
// Every replica runs an [Elector]. A follower tries to take the lease
// every RenewEvery; the holder renews it every RenewEvery, each renewal
// extending it to TTL from the database's "now". While it holds the lease
// the elector runs the caller's lead function with a context that
//
//   - carries the lease's fence (store.WithFence): every store write made
//     with it is refused once another replica has taken the lease, so a
//     former leader that was paused (SIGSTOP, a long GC, a frozen VM) and
//     wakes up still believing it leads changes nothing;
//   - is cancelled as soon as the lease is lost (another holder took it)
//     or could not be renewed in time: at the last successful renewal's
//     expiry minus Margin, measured on this process's monotonic clock
//     from the moment that renewal was sent, so a skewed wall clock
//     cannot make a leader believe it leads longer than the database says.
//
// The elector waits for lead to return before it tries to lead again, so
// one process never runs two lead functions at once. When Run's context
// ends it releases the lease, and another replica takes over at its next
// poll, within RenewEvery.
//
// Failover bound: when the leader dies without releasing (kill -9, a lost
// host), its lease lapses at most TTL after its last renewal, and a
// follower polling every RenewEvery takes it at most RenewEvery later:
// the new leader starts within TTL + RenewEvery (plus one store round
// trip) of the death. With the defaults, TTL 3 s and RenewEvery 1 s, that
// is 4 s, inside the 5 s goal of issue 12. BenchmarkFailover measures it.
//
// Fencing, not the cancellation, is what makes this safe: a lead function
// sees its context cancelled only when it next looks, and a write already
// sent may arrive after the new leader has begun. The store checks each
// fenced write against the lease in the write's own transaction.
package leader

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"kumo/internal/model"
	"kumo/internal/store"
)

// Store is what an Elector needs of the store: the lease methods of
// store.Store, with their contract (see there).
type Store interface {
	// LeaseAcquire takes or renews the lease for holder until ttl from
	// the store's now; an error wrapping store.ErrLeaseHeld, with the
	// holder's lease, while another holds it.
	LeaseAcquire(ctx context.Context, name, holder, address string, ttl time.Duration) (model.Lease, error)
	// LeaseRelease ends the lease now if holder holds it.
	LeaseRelease(ctx context.Context, name, holder string) error
}

// Defaults for Config's zero fields.
const (
	DefaultName = "controller"
	DefaultTTL  = 3 * time.Second
)

// Config configures an Elector.
type Config struct {
	// Store keeps the lease; required.
	Store Store
	// Name is the lease's name; "" means DefaultName.
	Name string
	// Holder identifies this replica; required, unique among replicas
	// (a restarted replica may reuse its ID).
	Holder string
	// Address is where other replicas and operators reach this replica
	// (host:port), shown by kumo admin leader; "" means unknown.
	Address string
	// TTL is how long a lease lasts unless renewed; 0 means DefaultTTL.
	TTL time.Duration
	// RenewEvery is how often the leader renews and a follower tries to
	// take over; 0 means TTL/3. It must be below TTL - Margin.
	RenewEvery time.Duration
	// Margin is how long before its lease would expire the leader stops
	// leading when it could not renew; 0 means TTL/6.
	Margin time.Duration
	// Log receives changes of leadership and store errors; nil means
	// slog.Default().
	Log *slog.Logger
}

// Elector takes part in the election of one lease for one replica. Its
// methods are safe for concurrent use; Run runs once at a time.
type Elector struct {
	cfg Config

	// noRelease makes Run return without releasing the lease, as if the
	// process had died (tests and benchmarks).
	noRelease bool
	// leadStarted, when not nil, is called just before each lead (tests).
	leadStarted func(model.Lease)

	mu      sync.Mutex
	lease   model.Lease     // the last lease seen; zero before the first answer
	leadCtx context.Context // the running lead's context; nil while following
}

// New returns an Elector for cfg, with its defaults filled in.
func New(cfg Config) (*Elector, error) {
	if cfg.Store == nil || cfg.Holder == "" {
		return nil, errors.New("leader: Store and Holder are required")
	}
	if cfg.Name == "" {
		cfg.Name = DefaultName
	}
	if cfg.TTL <= 0 {
		cfg.TTL = DefaultTTL
	}
	if cfg.RenewEvery <= 0 {
		cfg.RenewEvery = cfg.TTL / 3
	}
	if cfg.Margin <= 0 {
		cfg.Margin = cfg.TTL / 6
	}
	if cfg.RenewEvery >= cfg.TTL-cfg.Margin {
		return nil, fmt.Errorf("leader: RenewEvery %v must be below TTL %v less Margin %v", cfg.RenewEvery, cfg.TTL, cfg.Margin)
	}
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	return &Elector{cfg: cfg}, nil
}

// Current returns the last lease this elector saw (its own or another
// holder's; the zero Lease before the store first answered) and whether
// this elector leads now: it holds the lease and its lead context is not
// cancelled.
func (e *Elector) Current() (model.Lease, bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.lease, e.leadCtx != nil && e.leadCtx.Err() == nil
}

// errLost and errLapsed are the causes of a lead context's cancellation.
var (
	errLost   = errors.New("leader: lease taken by another replica")
	errLapsed = errors.New("leader: lease not renewed in time")
)

// Run takes part in the election until ctx ends: it follows, polling for
// the lease every RenewEvery, and whenever it wins runs lead with a
// context that carries the lease's fence and is cancelled when the lease
// is lost or lapses (see the package doc), then waits for lead to return
// before it polls again. lead should return soon after its context is
// cancelled. When ctx ends, Run waits for lead, releases the lease if it
// holds it, and returns nil. It returns an error only for a bad setup.
func (e *Elector) Run(ctx context.Context, lead func(ctx context.Context)) error {
	poll := time.NewTimer(0)
	defer poll.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-poll.C:
		}
		sent := time.Now()
		l, err := e.cfg.Store.LeaseAcquire(ctx, e.cfg.Name, e.cfg.Holder, e.cfg.Address, e.cfg.TTL)
		switch {
		case err == nil:
			e.seen(l)
			if ctx.Err() == nil {
				e.lead(ctx, l, sent, lead)
			}
			if ctx.Err() != nil {
				e.release(ctx)
				return nil
			}
			// Lost, lapsed or lead returned by itself: poll again (a
			// lapsed lease nobody took is renewed in the same term).
		case errors.Is(err, store.ErrLeaseHeld):
			e.seen(l)
		case ctx.Err() != nil:
			return nil
		default:
			e.cfg.Log.Warn("leader: lease acquire failed", "lease", e.cfg.Name, "err", err)
		}
		poll.Reset(e.cfg.RenewEvery)
	}
}

// seen records l as the last lease seen.
func (e *Elector) seen(l model.Lease) {
	e.mu.Lock()
	e.lease = l
	e.mu.Unlock()
}

// lead runs lead under the lease l, acquired by a call sent at sent, and
// renews l every RenewEvery until the lease is lost or lapses, lead
// returns, or ctx ends; it returns once lead has returned.
func (e *Elector) lead(ctx context.Context, l model.Lease, sent time.Time, lead func(ctx context.Context)) {
	term := l.Term
	leadCtx, cancel := context.WithCancelCause(store.WithFence(ctx, e.cfg.Name, term))
	defer cancel(nil)
	// The lease lasts TTL from the store's now, which is no earlier than
	// sent: stopping Margin before sent+TTL, on the monotonic clock, stops
	// before the store's expiry whatever the wall clocks say.
	valid := func(sent time.Time) time.Duration { return time.Until(sent.Add(e.cfg.TTL - e.cfg.Margin)) }
	lapse := time.AfterFunc(valid(sent), func() { cancel(errLapsed) })
	defer lapse.Stop()

	e.mu.Lock()
	e.leadCtx = leadCtx
	e.mu.Unlock()
	defer func() {
		e.mu.Lock()
		e.leadCtx = nil
		e.mu.Unlock()
	}()
	e.cfg.Log.Info("leader: leading", "lease", e.cfg.Name, "holder", e.cfg.Holder, "term", term)
	if e.leadStarted != nil {
		e.leadStarted(l)
	}

	done := make(chan struct{})
	go func() {
		defer close(done)
		lead(leadCtx)
	}()
	renew := time.NewTicker(e.cfg.RenewEvery)
	defer renew.Stop()
	for {
		select {
		case <-done:
			return
		case <-leadCtx.Done():
			<-done
			e.cfg.Log.Info("leader: stopped leading", "lease", e.cfg.Name, "term", term, "cause", context.Cause(leadCtx))
			return
		case <-renew.C:
		}
		sent := time.Now()
		// Not leadCtx: a renewal is not fenced, and a lost lease must
		// answer ErrLeaseHeld, not ErrFenced.
		l, err := e.cfg.Store.LeaseAcquire(ctx, e.cfg.Name, e.cfg.Holder, e.cfg.Address, e.cfg.TTL)
		switch {
		case err == nil && l.Term == term:
			e.seen(l)
			// After the lapse fired, the lead context stays cancelled;
			// the loop above then ends this term.
			lapse.Reset(valid(sent))
		case err == nil, errors.Is(err, store.ErrLeaseHeld):
			// Taken by another (or lapsed and taken again in a later
			// term): this term is over.
			e.seen(l)
			cancel(errLost)
		case leadCtx.Err() != nil:
		default:
			e.cfg.Log.Warn("leader: lease renewal failed", "lease", e.cfg.Name, "term", term, "err", err)
		}
	}
}

// release gives the lease up after Run's context ended, unless the test
// hook noRelease says to die instead.
func (e *Elector) release(ctx context.Context) {
	if e.noRelease {
		return
	}
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), e.cfg.TTL)
	defer cancel()
	if err := e.cfg.Store.LeaseRelease(rctx, e.cfg.Name, e.cfg.Holder); err != nil {
		e.cfg.Log.Warn("leader: lease release failed", "lease", e.cfg.Name, "err", err)
		return
	}
	e.mu.Lock()
	e.lease.Holder = ""
	e.mu.Unlock()
}

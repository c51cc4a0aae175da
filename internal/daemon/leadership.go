package daemon

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"time"

	"kumo/internal/leader"
	"kumo/internal/secret"
	"kumo/internal/store"
)

// leadership is this replica's part in the choice of a leader: it runs
// the reconcile loops while it holds the controller lease.
type leadership struct {
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// runLeadership takes part in the choice of a leader until stopped; the
// loops run (rt.lead) for every term this replica holds, with a context
// whose writes carry the term's fence.
func (rt *nodeRuntime) runLeadership(ctx context.Context, advertise string) (*leadership, error) {
	o := rt.o
	if o.Database == "" {
		// One process serves a SQLite store (the data directory's lock
		// says so): a lease left by a control plane that was killed is
		// over now, and waiting for it to lapse would only delay recovery.
		if err := releaseStale(ctx, rt.st); err != nil {
			return nil, err
		}
	}
	el, err := leader.New(leader.Config{Store: rt.st, Holder: o.Replica, Address: advertise, Log: o.Log})
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(ctx)
	l := &leadership{cancel: cancel}
	l.wg.Add(1)
	go func() {
		defer l.wg.Done()
		err := el.Run(ctx, func(ctx context.Context) {
			f, _ := store.FenceFrom(ctx)
			fmt.Fprintf(o.Out, "kumo: replica %s leads the controllers (term %d)\n", o.Replica, f.Term)
			rt.lead(ctx)
			fmt.Fprintf(o.Out, "kumo: replica %s no longer leads (term %d ended)\n", o.Replica, f.Term)
		})
		if err != nil && ctx.Err() == nil {
			o.Log.Error("leader election ended", "err", err)
		}
	}()
	return l, nil
}

// releaseStale ends the controller lease whoever holds it.
func releaseStale(ctx context.Context, st store.Store) error {
	l, err := st.LeaseGet(ctx, leader.DefaultName)
	switch {
	case errors.Is(err, store.ErrNotFound):
		return nil
	case err != nil:
		return fmt.Errorf("read the controller lease: %w", err)
	case l.Holder == "" || !l.ExpiresAt.After(time.Now()):
		return nil
	}
	if err := st.LeaseRelease(ctx, leader.DefaultName, l.Holder); err != nil {
		return fmt.Errorf("release the controller lease of a stopped control plane: %w", err)
	}
	return nil
}

// stop ends this replica's part and waits until the loops have stopped
// and the lease is let go.
func (l *leadership) stop() {
	l.cancel()
	l.wg.Wait()
}

// defaultReplica names a replica by its host, pid and a random suffix, so
// that a restarted one is a new holder.
func defaultReplica() string {
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "kumo"
	}
	return fmt.Sprintf("%s-%d-%s", host, os.Getpid(), secret.RandomID(4))
}

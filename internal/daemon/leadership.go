package daemon

import (
	"context"
	"fmt"
	"os"
	"sync"

	"kumo/internal/secret"
)

// leadership is this replica's part in the choice of a leader: it runs
// the reconcile loops while it holds the controller lease.
type leadership struct {
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// runLeadership starts taking part in the choice of a leader until ctx
// ends; the loops run (rt.lead) for every term this replica holds.
func (rt *nodeRuntime) runLeadership(ctx context.Context, base string) *leadership {
	ctx, cancel := context.WithCancel(ctx)
	l := &leadership{cancel: cancel}
	l.wg.Add(1)
	go func() {
		defer l.wg.Done()
		rt.lead(ctx)
	}()
	return l
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

package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"kumo/internal/model"
)

// Fence is what WithFence attaches to a context: the lease a writer
// holds and the term it holds it in.
type Fence struct {
	Lease string // the lease's name
	Term  int64  // the term the writer holds it in
}

// fenceKey is the context key of a Fence.
type fenceKey struct{}

// WithFence returns ctx carrying a fence: every write made with it (or a
// context derived from it) first checks, in the same transaction, that
// the lease name still has term and a holder, and otherwise changes
// nothing and returns an error wrapping ErrFenced. A leader's
// reconcilers write under its fence, so a former leader that was paused
// past its lease cannot overwrite its successor's decisions. Writes
// whose context carries no fence are not checked.
func WithFence(ctx context.Context, name string, term int64) context.Context {
	return context.WithValue(ctx, fenceKey{}, Fence{Lease: name, Term: term})
}

// FenceFrom returns the fence ctx carries, if any (for backends).
func FenceFrom(ctx context.Context) (Fence, bool) {
	f, ok := ctx.Value(fenceKey{}).(Fence)
	return f, ok
}

// LeaseAcquired turns what a backend's LeaseAcquire transaction ended
// with into its result: the lease taken; or, when another holder's lease
// is valid (err wraps ErrLeaseHeld), that lease and an error naming its
// holder and expiry; or the error.
func LeaseAcquired(name string, l model.Lease, err error) (model.Lease, error) {
	if errors.Is(err, ErrLeaseHeld) {
		return l, fmt.Errorf("lease acquire %s: held by %s until %s: %w", name, l.Holder, l.ExpiresAt.Format(time.RFC3339Nano), err)
	}
	if err != nil {
		return model.Lease{}, fmt.Errorf("lease acquire %s: %w", name, err)
	}
	return l, nil
}

package store

import "context"

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

package sqlite

import (
	"context"
	"database/sql"
	"fmt"
	"sync"
	"sync/atomic"
)

// Group commit. Every write of a Store is a function run in a write
// transaction on the one write connection. Writes that arrive while
// another transaction is committing queue up, and the next transaction
// runs them all, each in a savepoint of its own, and commits once: a
// write that fails is rolled back to its savepoint alone and gets its
// error, the others are kept. No write returns before the commit that
// holds it is done, so a write that returned nil survives a crash of the
// process exactly as it did in a transaction of its own; when the commit
// fails, every write in it gets the error and none is kept.
//
// There is no goroutine of its own: the writer that finds no transaction
// running leads, running one transaction for everything queued (its own
// write among it); when more queued meanwhile, it hands the lead to the
// oldest of those writers and returns. A write function must use only the
// transaction it is given: the connection is busy with it.

// maxGroup bounds how many writes one transaction takes.
const maxGroup = 256

// writeOp is one queued write.
type writeOp struct {
	ctx  context.Context // without cancellation (see writeCtx)
	fn   func(ctx context.Context, tx *sql.Tx) error
	done chan opResult // buffered: the lead, then the result
}

// opResult is what a queued writer is told: to lead the next
// transaction, or how its write ended.
type opResult struct {
	lead bool
	err  error
}

// group is the queue of writes waiting for a transaction.
type group struct {
	mu      sync.Mutex
	queue   []*writeOp
	running bool         // a leader is running a transaction
	txs     atomic.Int64 // transactions begun, for tests
}

// write runs fn in a write transaction, possibly shared with other
// writes (see above), and returns fn's error unwrapped, or the commit's.
func (s *Store) write(ctx context.Context, fn func(ctx context.Context, tx *sql.Tx) error) error {
	ctx, err := writeCtx(ctx)
	if err != nil {
		return err
	}
	if fn, err = s.fenced(ctx, fn); err != nil {
		return err
	}
	op := &writeOp{ctx: ctx, fn: fn, done: make(chan opResult, 1)}
	g := &s.group
	g.mu.Lock()
	g.queue = append(g.queue, op)
	lead := !g.running
	g.running = true
	g.mu.Unlock()
	if !lead {
		r := <-op.done
		if !r.lead {
			return r.err
		}
	}
	g.mu.Lock()
	n := min(len(g.queue), maxGroup)
	batch := g.queue[:n:n]
	g.queue = g.queue[n:]
	g.mu.Unlock()

	s.runGroup(ctx, batch)

	g.mu.Lock()
	if len(g.queue) > 0 {
		g.queue[0].done <- opResult{lead: true}
	} else {
		g.running = false
		g.queue = nil
	}
	g.mu.Unlock()
	return (<-op.done).err
}

// runGroup runs batch in one transaction and tells each write its result.
func (s *Store) runGroup(ctx context.Context, batch []*writeOp) {
	tell := func(op *writeOp, err error) { op.done <- opResult{err: err} }
	s.group.txs.Add(1)
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		for _, op := range batch {
			tell(op, err)
		}
		return
	}
	if len(batch) == 1 {
		// Alone: no savepoint needed.
		op := batch[0]
		if err := op.fn(op.ctx, tx); err != nil {
			_ = tx.Rollback()
			tell(op, err)
			return
		}
		tell(op, tx.Commit())
		return
	}
	errs := make([]error, len(batch))
	for i, op := range batch {
		var broken error
		errs[i], broken = savepoint(op.ctx, tx, op.fn)
		if broken != nil {
			// The transaction is in no known state: none of it is kept.
			_ = tx.Rollback()
			for i, op := range batch {
				tell(op, cmpOrErr(errs[i], broken))
			}
			return
		}
	}
	if err := tx.Commit(); err != nil {
		_ = tx.Rollback()
		for i := range errs {
			if errs[i] == nil {
				errs[i] = err
			}
		}
	}
	for i, op := range batch {
		tell(op, errs[i])
	}
}

// savepoint runs fn inside a savepoint of tx, rolled back when fn fails,
// and returns fn's error. broken is not nil when the savepoint could not
// be made, rolled back or released, which leaves tx in no known state.
func savepoint(ctx context.Context, tx *sql.Tx, fn func(ctx context.Context, tx *sql.Tx) error) (err, broken error) {
	if _, err := tx.ExecContext(ctx, `SAVEPOINT w`); err != nil {
		return nil, fmt.Errorf("savepoint: %w", err)
	}
	if err = fn(ctx, tx); err != nil {
		if _, rerr := tx.ExecContext(ctx, `ROLLBACK TO w`); rerr != nil {
			return err, fmt.Errorf("rollback to savepoint: %w", rerr)
		}
	}
	if _, rerr := tx.ExecContext(ctx, `RELEASE w`); rerr != nil {
		return err, fmt.Errorf("release savepoint: %w", rerr)
	}
	return err, nil
}

// cmpOrErr returns err, or alt when err is nil.
func cmpOrErr(err, alt error) error {
	if err != nil {
		return err
	}
	return alt
}

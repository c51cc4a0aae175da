package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"kumo/internal/model"
	"kumo/internal/store"
)

const (
	leaseColumns = `name, holder, address, term, acquired_at, renewed_at, expires_at`

	// leaseAcquireSQL takes or renews a lease in one statement, on the
	// database's clock: it inserts the lease, or updates it when $2 holds
	// it, nobody does, or it has expired; else it returns no row. On a
	// change of holder the term grows by one.
	leaseAcquireSQL = `WITH c AS (SELECT clock_timestamp() AS now)
INSERT INTO leases AS l (` + leaseColumns + `)
SELECT $1, $2, $3, 1, c.now, c.now, c.now + $4::bigint * interval '1 microsecond' FROM c
ON CONFLICT (name) DO UPDATE SET
    term = CASE WHEN l.holder = excluded.holder THEN l.term ELSE l.term + 1 END,
    acquired_at = CASE WHEN l.holder = excluded.holder THEN l.acquired_at ELSE excluded.acquired_at END,
    holder = excluded.holder,
    address = excluded.address,
    renewed_at = excluded.renewed_at,
    expires_at = excluded.expires_at
WHERE l.holder = excluded.holder OR l.holder = '' OR l.expires_at <= excluded.renewed_at
RETURNING ` + leaseColumns

	leaseGetSQL = `SELECT ` + leaseColumns + ` FROM leases WHERE name = $1`
)

// codeFenced is the SQLSTATE kumo_fence raises (migration 0004).
const codeFenced = "KUMOF"

// scanLease reads one leases row, with its times in UTC.
func scanLease(row pgx.Row) (model.Lease, error) {
	var l model.Lease
	if err := row.Scan(&l.Name, &l.Holder, &l.Address, &l.Term, &l.AcquiredAt, &l.RenewedAt, &l.ExpiresAt); err != nil {
		return model.Lease{}, err
	}
	l.AcquiredAt = l.AcquiredAt.UTC()
	l.RenewedAt = l.RenewedAt.UTC()
	l.ExpiresAt = l.ExpiresAt.UTC()
	return l, nil
}

// LeaseAcquire implements store.Store, on the database server's clock.
// The lease's times are kept to the microsecond.
func (s *Store) LeaseAcquire(ctx context.Context, name, holder, address string, ttl time.Duration) (model.Lease, error) {
	if name == "" || holder == "" || ttl <= 0 {
		return model.Lease{}, fmt.Errorf("lease acquire %q: want a name, a holder and a positive ttl", name)
	}
	var l model.Lease
	err := s.inTx(ctx, func(ctx context.Context, tx pgx.Tx) error {
		// A fenced write holds the lease row while it commits; one that
		// does not finish (its process froze) must not hold a takeover
		// for longer than a poll: the next try waits again.
		if _, err := tx.Exec(ctx, fmt.Sprintf("SET LOCAL lock_timeout = %d", max(ttl/2, time.Millisecond).Milliseconds())); err != nil {
			return err
		}
		var err error
		l, err = scanLease(tx.QueryRow(ctx, leaseAcquireSQL, name, holder, address, ttl.Microseconds()))
		if !errors.Is(err, pgx.ErrNoRows) {
			return err
		}
		// Held by another, unexpired: the upsert's condition failed on
		// the row it locked, which is read here as committed.
		if l, err = scanLease(tx.QueryRow(ctx, leaseGetSQL, name)); err != nil {
			return err
		}
		return store.ErrLeaseHeld
	})
	return store.LeaseAcquired(name, l, err)
}

// LeaseGet implements store.Store.
func (s *Store) LeaseGet(ctx context.Context, name string) (model.Lease, error) {
	l, err := scanLease(s.pool.QueryRow(ctx, leaseGetSQL, name))
	if err != nil {
		return model.Lease{}, fmt.Errorf("lease get %s: %w", name, notFound(err))
	}
	return l, nil
}

// LeaseRelease implements store.Store, on the database server's clock.
func (s *Store) LeaseRelease(ctx context.Context, name, holder string) error {
	if holder == "" {
		return nil
	}
	_, err := s.exec(ctx, `UPDATE leases SET holder = '', expires_at = clock_timestamp() WHERE name = $1 AND holder = $2`, name, holder)
	if err != nil {
		return fmt.Errorf("lease release %s: %w", name, err)
	}
	return nil
}

// fenceSQL checks a fence, locking the lease row FOR SHARE (see
// kumo_fence in migration 0004).
const fenceSQL = `SELECT kumo_fence($1, $2)`

// fencedErr turns the error kumo_fence raises into one wrapping
// store.ErrFenced; other errors pass through unchanged.
func fencedErr(f store.Fence, err error) error {
	var pe *pgconn.PgError
	if errors.As(err, &pe) && pe.Code == codeFenced {
		return fmt.Errorf("lease %s term %d: %w", f.Lease, f.Term, store.ErrFenced)
	}
	return err
}

// execFenced runs the write statement q after the fence check f, both in
// one implicit transaction sent as one batch (one round trip): when the
// check fails, PostgreSQL skips q and nothing changes.
func (s *Store) execFenced(ctx context.Context, f store.Fence, q string, args ...any) (pgconn.CommandTag, error) {
	b := &pgx.Batch{}
	b.Queue(fenceSQL, f.Lease, f.Term)
	b.Queue(q, args...)
	res := s.pool.SendBatch(ctx, b)
	if _, err := res.Exec(); err != nil {
		res.Close()
		return pgconn.CommandTag{}, fencedErr(f, err)
	}
	tag, err := res.Exec()
	if cerr := res.Close(); err == nil {
		err = cerr
	}
	return tag, err
}

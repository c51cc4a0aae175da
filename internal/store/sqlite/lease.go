package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"kumo/internal/model"
	"kumo/internal/store"
	"kumo/internal/store/rowcodec"
)

const (
	leaseColumns = `name, holder, address, term, acquired_at, renewed_at, expires_at`
	leaseGetSQL  = `SELECT ` + leaseColumns + ` FROM leases WHERE name = ?`
	fenceSQL     = `SELECT term, holder FROM leases WHERE name = ?`
)

// scanLease reads one leases row.
func scanLease(sc rowcodec.Scanner) (model.Lease, error) {
	var (
		l                 model.Lease
		acq, renew, expir string
		d                 rowcodec.Decoder
	)
	if err := sc.Scan(&l.Name, &l.Holder, &l.Address, &l.Term, &acq, &renew, &expir); err != nil {
		return model.Lease{}, err
	}
	l.AcquiredAt = d.Time("acquired_at", acq)
	l.RenewedAt = d.Time("renewed_at", renew)
	l.ExpiresAt = d.Time("expires_at", expir)
	return l, d.Err()
}

// LeaseAcquire implements store.Store, on the local clock.
func (s *Store) LeaseAcquire(ctx context.Context, name, holder, address string, ttl time.Duration) (model.Lease, error) {
	if name == "" || holder == "" || ttl <= 0 {
		return model.Lease{}, fmt.Errorf("lease acquire %q: want a name, a holder and a positive ttl", name)
	}
	get, err := s.ws.get(ctx, leaseGetSQL)
	if err != nil {
		return model.Lease{}, fmt.Errorf("lease acquire %s: %w", name, err)
	}
	var l model.Lease
	err = s.inTx(ctx, func(ctx context.Context, tx *sql.Tx) error {
		// The write connection is the only writer: what is read here
		// stays true until the transaction commits.
		now := time.Now().UTC()
		cur, err := scanLease(tx.StmtContext(ctx, get).QueryRowContext(ctx, name))
		switch {
		case errors.Is(err, sql.ErrNoRows):
			l = model.Lease{Name: name, Holder: holder, Address: address, Term: 1, AcquiredAt: now}
		case err != nil:
			return err
		case cur.Holder == holder:
			l = cur
			l.Address = address
		case cur.Held(now):
			l = cur
			return store.ErrLeaseHeld
		default:
			l = model.Lease{Name: name, Holder: holder, Address: address, Term: cur.Term + 1, AcquiredAt: now}
		}
		l.RenewedAt = now
		l.ExpiresAt = now.Add(ttl)
		_, err = tx.ExecContext(ctx, `INSERT INTO leases (`+leaseColumns+`) VALUES (?, ?, ?, ?, ?, ?, ?)
			ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, address = excluded.address, term = excluded.term,
				acquired_at = excluded.acquired_at, renewed_at = excluded.renewed_at, expires_at = excluded.expires_at`,
			l.Name, l.Holder, l.Address, l.Term, rowcodec.EncTime(l.AcquiredAt), rowcodec.EncTime(l.RenewedAt), rowcodec.EncTime(l.ExpiresAt))
		return err
	})
	return store.LeaseAcquired(name, l, err)
}

// LeaseGet implements store.Store.
func (s *Store) LeaseGet(ctx context.Context, name string) (model.Lease, error) {
	l, err := scanLease(s.keyRow(ctx, leaseGetSQL, name))
	if err != nil {
		return model.Lease{}, fmt.Errorf("lease get %s: %w", name, notFound(err))
	}
	return l, nil
}

// LeaseRelease implements store.Store, on the local clock.
func (s *Store) LeaseRelease(ctx context.Context, name, holder string) error {
	if holder == "" {
		return nil
	}
	now := rowcodec.EncTime(time.Now())
	_, err := s.exec(ctx, `UPDATE leases SET holder = '', expires_at = ? WHERE name = ? AND holder = ?`, now, name, holder)
	if err != nil {
		return fmt.Errorf("lease release %s: %w", name, err)
	}
	return nil
}

// fenced returns fn, or, when ctx carries a fence (store.WithFence), fn
// preceded by the fence check: in fn's own transaction, the lease must
// still have the fence's term and a holder, else fn is not run and the
// write gets an error wrapping store.ErrFenced. The check's statement is
// prepared here, before the transaction holds the write connection.
//
// Under group commit the check runs inside the write's own savepoint, in
// the transaction that commits it: a fenced write that fails is rolled
// back alone and the other writes of the group are kept, and a takeover
// queued ahead of it in the same group is seen by its check. SQLite has
// one writer, so nothing changes the lease between the check and the
// commit.
func (s *Store) fenced(ctx context.Context, fn func(ctx context.Context, tx *sql.Tx) error) (func(ctx context.Context, tx *sql.Tx) error, error) {
	f, ok := store.FenceFrom(ctx)
	if !ok {
		return fn, nil
	}
	st, err := s.ws.get(ctx, fenceSQL)
	if err != nil {
		return nil, err
	}
	return func(ctx context.Context, tx *sql.Tx) error {
		var (
			term   int64
			holder string
		)
		err := tx.StmtContext(ctx, st).QueryRowContext(ctx, f.Lease).Scan(&term, &holder)
		if err != nil && !errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("fence check: %w", err)
		}
		if err != nil || term != f.Term || holder == "" {
			return fmt.Errorf("lease %s term %d: %w", f.Lease, f.Term, store.ErrFenced)
		}
		return fn(ctx, tx)
	}, nil
}

package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"kumo/internal/store"
	"kumo/internal/store/rowcodec"
)

// JobUpdateBatch implements store.Store: one transaction, with a savepoint
// per update so that one whose condition fails is undone alone.
func (s *Store) JobUpdateBatch(ctx context.Context, updates []store.JobNodesUpdate) ([]error, error) {
	errs := make([]error, len(updates))
	if len(updates) == 0 {
		return errs, nil
	}
	jobSt, err := s.ws.get(ctx, jobUpdateSQL)
	if err != nil {
		return nil, fmt.Errorf("job update batch: %w", err)
	}
	nodeSt, err := s.ws.get(ctx, nodeUpdateSQL)
	if err != nil {
		return nil, fmt.Errorf("job update batch: %w", err)
	}
	err = s.inTx(ctx, func(ctx context.Context, tx *sql.Tx) error {
		jst, nst := tx.StmtContext(ctx, jobSt), tx.StmtContext(ctx, nodeSt)
		for i, u := range updates {
			errs[i] = nil
			if _, err := tx.ExecContext(ctx, `SAVEPOINT job_update`); err != nil {
				return err
			}
			err := applyJobNodes(ctx, tx, jst, nst, u)
			if errors.Is(err, store.ErrPreconditionFailed) || errors.Is(err, store.ErrNotFound) {
				errs[i] = fmt.Errorf("job update %s: %w", u.Job.ID, err)
				if _, err := tx.ExecContext(ctx, `ROLLBACK TO job_update`); err != nil {
					return err
				}
			} else if err != nil {
				return fmt.Errorf("job update %s: %w", u.Job.ID, err)
			}
			if _, err := tx.ExecContext(ctx, `RELEASE job_update`); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("job update batch: %w", err)
	}
	return errs, nil
}

// applyJobNodes runs one JobNodesUpdate's statements in tx.
func applyJobNodes(ctx context.Context, tx *sql.Tx, jobSt, nodeSt *sql.Stmt, u store.JobNodesUpdate) error {
	args, err := rowcodec.JobArgs(u.Job)
	if err != nil {
		return err
	}
	args = append(args, rowcodec.Fold(u.Job.ID), string(u.From))
	res, err := jobSt.ExecContext(ctx, args...)
	if err == nil {
		err = txChanged(ctx, tx, res, jobExistsSQL, rowcodec.Fold(u.Job.ID))
	}
	if err != nil {
		return storeErr(err)
	}
	for _, c := range u.Nodes {
		res, err = nodeSt.ExecContext(ctx, rowcodec.NodeArgs(c.Node, c.From)...)
		if err == nil {
			err = txChanged(ctx, tx, res, nodeExistsSQL, c.Node.ID)
		}
		if err != nil {
			return fmt.Errorf("node %s: %w", c.Node.ID, err)
		}
	}
	return nil
}

package postgres

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"

	"kumo/internal/model"
	"kumo/internal/store"
	"kumo/internal/store/rowcodec"
)

// ComputeCreate implements store.Store.
func (s *Store) ComputeCreate(ctx context.Context, c model.Compute, op model.Operation) error {
	shared, err := rowcodec.ComputeArgs(c)
	if err != nil {
		return fmt.Errorf("compute create %s: %w", c.ID, err)
	}
	err = s.inTx(ctx, func(ctx context.Context, tx pgx.Tx) error {
		// FOR SHARE keeps the workspace from being deleted before commit.
		var one int
		err := tx.QueryRow(ctx, `SELECT 1 FROM workspaces WHERE id_key = $1 FOR SHARE`, rowcodec.Fold(c.WorkspaceID)).Scan(&one)
		if err != nil {
			return notFound(err)
		}
		_, err = tx.Exec(ctx, `INSERT INTO computes (
			id_key, id, workspace_key, workspace_id, name, name_key, location, description, tags, vm_size, priority,
			min_nodes, max_nodes, idle_time_ns, admin_user, password_hash, ssh_public_key, remote_login,
			state, errors, operation_id, etag, created_at, modified_at, created_by, modified_by
		) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20,
			$21, $22, $23, $24, $25, $26)`,
			append([]any{rowcodec.Fold(c.ID), c.ID, rowcodec.Fold(c.WorkspaceID), c.WorkspaceID, c.Name, rowcodec.Fold(c.Name)}, shared...)...)
		if err != nil {
			return storeErr(err)
		}
		return insertOperation(ctx, tx, op)
	})
	if err != nil {
		return fmt.Errorf("compute create %s: %w", c.ID, err)
	}
	return nil
}

// ComputeUpdate implements store.Store. It replaces every field but the
// compute's identity: ID, WorkspaceID and Name keep their stored values.
func (s *Store) ComputeUpdate(ctx context.Context, c model.Compute, matchETag string, op *model.Operation) error {
	shared, err := rowcodec.ComputeArgs(c)
	if err != nil {
		return fmt.Errorf("compute update %s: %w", c.ID, err)
	}
	err = s.inTx(ctx, func(ctx context.Context, tx pgx.Tx) error {
		if err := checkETag(ctx, tx, rowcodec.Fold(c.ID), matchETag); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, `UPDATE computes SET
			location = $1, description = $2, tags = $3, vm_size = $4, priority = $5,
			min_nodes = $6, max_nodes = $7, idle_time_ns = $8, admin_user = $9, password_hash = $10, ssh_public_key = $11,
			remote_login = $12, state = $13, errors = $14, operation_id = $15, etag = $16,
			created_at = $17, modified_at = $18, created_by = $19, modified_by = $20
			WHERE id_key = $21`,
			append(shared, rowcodec.Fold(c.ID))...)
		if err != nil {
			return err
		}
		if op != nil {
			return insertOperation(ctx, tx, *op)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("compute update %s: %w", c.ID, err)
	}
	return nil
}

// checkETag locks the compute with key for the rest of tx and returns
// store.ErrNotFound when it is absent, and store.ErrPreconditionFailed
// when match is not "" and differs from its ETag.
func checkETag(ctx context.Context, tx pgx.Tx, key, match string) error {
	var etag string
	if err := tx.QueryRow(ctx, `SELECT etag FROM computes WHERE id_key = $1 FOR UPDATE`, key).Scan(&etag); err != nil {
		return notFound(err)
	}
	if match != "" && match != etag {
		return store.ErrPreconditionFailed
	}
	return nil
}

// ComputeGet implements store.Store.
func (s *Store) ComputeGet(ctx context.Context, id string) (model.Compute, error) {
	row := s.pool.QueryRow(ctx, `SELECT `+rowcodec.ComputeColumns+` FROM computes WHERE id_key = $1`, rowcodec.Fold(id))
	c, err := rowcodec.ScanCompute(row)
	if err != nil {
		return model.Compute{}, fmt.Errorf("compute get %s: %w", id, notFound(err))
	}
	return c, nil
}

// ComputeList implements store.Store. A workspace that does not exist has
// no computes.
func (s *Store) ComputeList(ctx context.Context, workspaceID string, p store.Page) ([]model.Compute, error) {
	cs, err := query(ctx, s.pool, rowcodec.ScanCompute,
		`SELECT `+rowcodec.ComputeColumns+` FROM computes WHERE workspace_key = $1 AND name_key > $2 ORDER BY name_key LIMIT $3`,
		rowcodec.Fold(workspaceID), rowcodec.Fold(p.After), limit(p))
	if err != nil {
		return nil, fmt.Errorf("compute list %s: %w", workspaceID, err)
	}
	return cs, nil
}

// ComputeListByState implements store.Store. Rows are ordered by workspace,
// then folded name.
func (s *Store) ComputeListByState(ctx context.Context, states ...model.ProvisioningState) ([]model.Compute, error) {
	if len(states) == 0 {
		return nil, nil
	}
	cs, err := query(ctx, s.pool, rowcodec.ScanCompute,
		`SELECT `+rowcodec.ComputeColumns+` FROM computes WHERE state = ANY($1) ORDER BY workspace_key, name_key`,
		texts(states))
	if err != nil {
		return nil, fmt.Errorf("compute list by state %v: %w", states, err)
	}
	return cs, nil
}

// ComputeDelete implements store.Store. It removes the compute's events
// and status with it. Its operations stay, so their status URLs keep
// answering, and so do its jobs; its nodes are the caller's to release
// first.
func (s *Store) ComputeDelete(ctx context.Context, id, matchETag string) error {
	err := s.inTx(ctx, func(ctx context.Context, tx pgx.Tx) error {
		if err := checkETag(ctx, tx, rowcodec.Fold(id), matchETag); err != nil {
			return err
		}
		if err := deleteComputeRows(ctx, tx, rowcodec.Fold(id)); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, `DELETE FROM computes WHERE id_key = $1`, rowcodec.Fold(id))
		return err
	})
	if err != nil {
		return fmt.Errorf("compute delete %s: %w", id, err)
	}
	return nil
}

// texts converts typed strings (states, statuses) to a text array
// argument.
func texts[S ~string](ss []S) []string {
	out := make([]string, len(ss))
	for i, s := range ss {
		out[i] = string(s)
	}
	return out
}

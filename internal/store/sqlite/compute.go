package sqlite

import (
	"context"
	"database/sql"
	"fmt"
	"strings"

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
	err = s.inTx(ctx, func(ctx context.Context, tx *sql.Tx) error {
		var one int
		err := tx.QueryRowContext(ctx, `SELECT 1 FROM workspaces WHERE id_key = ?`, rowcodec.Fold(c.WorkspaceID)).Scan(&one)
		if err != nil {
			return notFound(err)
		}
		_, err = tx.ExecContext(ctx, `INSERT INTO computes (
			id_key, id, workspace_key, workspace_id, name, name_key, location, description, tags, vm_size, priority,
			min_nodes, max_nodes, idle_time_ns, admin_user, password_hash, ssh_public_key, remote_login,
			state, errors, operation_id, etag, created_at, modified_at, created_by, modified_by
		) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
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
	err = s.inTx(ctx, func(ctx context.Context, tx *sql.Tx) error {
		if err := checkETag(ctx, tx, rowcodec.Fold(c.ID), matchETag); err != nil {
			return err
		}
		_, err := tx.ExecContext(ctx, `UPDATE computes SET
			location = ?, description = ?, tags = ?, vm_size = ?, priority = ?,
			min_nodes = ?, max_nodes = ?, idle_time_ns = ?, admin_user = ?, password_hash = ?, ssh_public_key = ?,
			remote_login = ?, state = ?, errors = ?, operation_id = ?, etag = ?,
			created_at = ?, modified_at = ?, created_by = ?, modified_by = ?
			WHERE id_key = ?`,
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

// checkETag returns store.ErrNotFound when the compute with key is absent,
// and store.ErrPreconditionFailed when match is not "" and differs from its
// ETag.
func checkETag(ctx context.Context, tx *sql.Tx, key, match string) error {
	var etag string
	if err := tx.QueryRowContext(ctx, `SELECT etag FROM computes WHERE id_key = ?`, key).Scan(&etag); err != nil {
		return notFound(err)
	}
	if match != "" && match != etag {
		return store.ErrPreconditionFailed
	}
	return nil
}

// ComputeGet implements store.Store.
func (s *Store) ComputeGet(ctx context.Context, id string) (model.Compute, error) {
	row := s.keyRow(ctx, `SELECT `+rowcodec.ComputeColumns+` FROM computes WHERE id_key = ?`, rowcodec.Fold(id))
	c, err := rowcodec.ScanCompute(row)
	if err != nil {
		return model.Compute{}, fmt.Errorf("compute get %s: %w", id, notFound(err))
	}
	return c, nil
}

// ComputeList implements store.Store. A workspace that does not exist has
// no computes.
func (s *Store) ComputeList(ctx context.Context, workspaceID string, p store.Page) ([]model.Compute, error) {
	cs, err := list(ctx, s.r, rowcodec.ScanCompute,
		`SELECT `+rowcodec.ComputeColumns+` FROM computes WHERE workspace_key = ? AND name_key > ? ORDER BY name_key LIMIT ?`,
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
	args := make([]any, len(states))
	for i, st := range states {
		args[i] = string(st)
	}
	q := `SELECT ` + rowcodec.ComputeColumns + ` FROM computes WHERE state IN (?` + strings.Repeat(", ?", len(states)-1) +
		`) ORDER BY workspace_key, name_key`
	cs, err := list(ctx, s.r, rowcodec.ScanCompute, q, args...)
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
	err := s.inTx(ctx, func(ctx context.Context, tx *sql.Tx) error {
		if err := checkETag(ctx, tx, rowcodec.Fold(id), matchETag); err != nil {
			return err
		}
		if err := deleteComputeRows(ctx, tx, rowcodec.Fold(id)); err != nil {
			return err
		}
		_, err := tx.ExecContext(ctx, `DELETE FROM computes WHERE id_key = ?`, rowcodec.Fold(id))
		return err
	})
	if err != nil {
		return fmt.Errorf("compute delete %s: %w", id, err)
	}
	return nil
}

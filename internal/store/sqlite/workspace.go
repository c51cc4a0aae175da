package sqlite

import (
	"context"
	"database/sql"
	"fmt"

	"kumo/internal/model"
	"kumo/internal/store"
	"kumo/internal/store/rowcodec"
)

// WorkspaceCreate implements store.Store.
func (s *Store) WorkspaceCreate(ctx context.Context, w model.Workspace) error {
	args, err := rowcodec.WorkspaceInsertArgs(w)
	if err != nil {
		return fmt.Errorf("workspace create %s: %w", w.ID, err)
	}
	_, err = s.exec(ctx, `INSERT INTO workspaces (
		id_key, id, subscription, subscription_key, resource_group, resource_group_key, name, name_key,
		location, description, tags, created_at, modified_at, created_by
	) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`, args...)
	if err != nil {
		return fmt.Errorf("workspace create %s: %w", w.ID, storeErr(err))
	}
	return nil
}

// WorkspaceUpdate implements store.Store.
func (s *Store) WorkspaceUpdate(ctx context.Context, w model.Workspace) error {
	tags, err := rowcodec.EncTags(w.Tags)
	if err != nil {
		return fmt.Errorf("workspace update %s: %w", w.ID, err)
	}
	res, err := s.exec(ctx, `UPDATE workspaces SET description = ?, tags = ?, modified_at = ? WHERE id_key = ?`,
		w.Description, tags, rowcodec.EncTime(w.ModifiedAt), rowcodec.Fold(w.ID))
	if err == nil {
		err = mustAffect(res)
	}
	if err != nil {
		return fmt.Errorf("workspace update %s: %w", w.ID, err)
	}
	return nil
}

// WorkspaceGet implements store.Store.
func (s *Store) WorkspaceGet(ctx context.Context, id string) (model.Workspace, error) {
	row := s.keyRow(ctx, `SELECT `+rowcodec.WorkspaceColumns+` FROM workspaces WHERE id_key = ?`, rowcodec.Fold(id))
	w, err := rowcodec.ScanWorkspace(row)
	if err != nil {
		return model.Workspace{}, fmt.Errorf("workspace get %s: %w", id, notFound(err))
	}
	return w, nil
}

// WorkspaceList implements store.Store. Rows are ordered by folded name,
// then folded resource group; Page.After compares with the folded name only.
func (s *Store) WorkspaceList(ctx context.Context, subscription, resourceGroup string, p store.Page) ([]model.Workspace, error) {
	q := `SELECT ` + rowcodec.WorkspaceColumns + ` FROM workspaces WHERE subscription_key = ?`
	args := []any{rowcodec.Fold(subscription)}
	if resourceGroup != "" {
		q += ` AND resource_group_key = ?`
		args = append(args, rowcodec.Fold(resourceGroup))
	}
	q += ` AND name_key > ? ORDER BY name_key, resource_group_key LIMIT ?`
	args = append(args, rowcodec.Fold(p.After), limit(p))
	ws, err := list(ctx, s.r, rowcodec.ScanWorkspace, q, args...)
	if err != nil {
		return nil, fmt.Errorf("workspace list %s/%s: %w", subscription, resourceGroup, err)
	}
	return ws, nil
}

// WorkspaceDelete implements store.Store. Besides the workspace's computes
// and quotas (removed by ON DELETE CASCADE) it removes the workspace's
// jobs, and the operations, events and status of any compute of the
// workspace, including computes already deleted, whose ARM IDs lie under
// the workspace's ID. Nodes stay: the caller releases them first.
func (s *Store) WorkspaceDelete(ctx context.Context, id string) error {
	key := rowcodec.Fold(id)
	err := s.inTx(ctx, func(ctx context.Context, tx *sql.Tx) error {
		for _, table := range []string{"operations", "events", "compute_status"} {
			_, err := tx.ExecContext(ctx, `DELETE FROM `+table+`
				WHERE compute_key IN (SELECT id_key FROM computes WHERE workspace_key = ?)
				   OR (compute_key >= ? AND compute_key < ?)`,
				key, key+"/", key+"0") // '0' follows '/': the range is every key with the prefix key+"/"
			if err != nil {
				return err
			}
		}
		if _, err := tx.ExecContext(ctx, `DELETE FROM jobs WHERE workspace_key = ?`, key); err != nil {
			return err
		}
		res, err := tx.ExecContext(ctx, `DELETE FROM workspaces WHERE id_key = ?`, key)
		if err != nil {
			return err
		}
		return mustAffect(res)
	})
	if err != nil {
		return fmt.Errorf("workspace delete %s: %w", id, err)
	}
	return nil
}

// list runs a query on db and scans every row with scan.
func list[T any](ctx context.Context, db *sql.DB, scan func(rowcodec.Scanner) (T, error), q string, args ...any) ([]T, error) {
	rows, err := db.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, err
	}
	return scanAll(rows, scan)
}

// scanAll scans every row of rows with scan and closes rows.
func scanAll[T any](rows *sql.Rows, scan func(rowcodec.Scanner) (T, error)) ([]T, error) {
	defer rows.Close()
	var out []T
	for rows.Next() {
		v, err := scan(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	return out, nil
}

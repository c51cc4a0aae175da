package postgres

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"

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
	) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)`, args...)
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
	tag, err := s.exec(ctx, `UPDATE workspaces SET description = $1, tags = $2, modified_at = $3 WHERE id_key = $4`,
		w.Description, tags, rowcodec.EncTime(w.ModifiedAt), rowcodec.Fold(w.ID))
	if err == nil {
		err = mustAffect(tag)
	}
	if err != nil {
		return fmt.Errorf("workspace update %s: %w", w.ID, err)
	}
	return nil
}

// WorkspaceGet implements store.Store.
func (s *Store) WorkspaceGet(ctx context.Context, id string) (model.Workspace, error) {
	row := s.pool.QueryRow(ctx, `SELECT `+rowcodec.WorkspaceColumns+` FROM workspaces WHERE id_key = $1`, rowcodec.Fold(id))
	w, err := rowcodec.ScanWorkspace(row)
	if err != nil {
		return model.Workspace{}, fmt.Errorf("workspace get %s: %w", id, notFound(err))
	}
	return w, nil
}

// WorkspaceList implements store.Store. Rows are ordered by folded name,
// then folded resource group; Page.After compares with the folded name only.
func (s *Store) WorkspaceList(ctx context.Context, subscription, resourceGroup string, p store.Page) ([]model.Workspace, error) {
	q := `SELECT ` + rowcodec.WorkspaceColumns + ` FROM workspaces WHERE subscription_key = $1
		AND ($2 = '' OR resource_group_key = $2) AND name_key > $3
		ORDER BY name_key, resource_group_key LIMIT $4`
	ws, err := query(ctx, s.pool, rowcodec.ScanWorkspace, q, rowcodec.Fold(subscription), rowcodec.Fold(resourceGroup), rowcodec.Fold(p.After), limit(p))
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
	err := s.inTx(ctx, func(ctx context.Context, tx pgx.Tx) error {
		// Locked first, so that no compute is created in the workspace
		// (ComputeCreate holds it FOR SHARE) after its rows are gathered.
		var one int
		if err := tx.QueryRow(ctx, `SELECT 1 FROM workspaces WHERE id_key = $1 FOR UPDATE`, key).Scan(&one); err != nil {
			return notFound(err)
		}
		for _, table := range []string{"operations", "events", "compute_status"} {
			_, err := tx.Exec(ctx, `DELETE FROM `+table+`
				WHERE compute_key IN (SELECT id_key FROM computes WHERE workspace_key = $1)
				   OR (compute_key >= $2 AND compute_key < $3)`,
				key, key+"/", key+"0") // '0' follows '/': the range is every key with the prefix key+"/"
			if err != nil {
				return err
			}
		}
		if _, err := tx.Exec(ctx, `DELETE FROM jobs WHERE workspace_key = $1`, key); err != nil {
			return err
		}
		tag, err := tx.Exec(ctx, `DELETE FROM workspaces WHERE id_key = $1`, key)
		if err != nil {
			return err
		}
		return mustAffect(tag)
	})
	if err != nil {
		return fmt.Errorf("workspace delete %s: %w", id, err)
	}
	return nil
}

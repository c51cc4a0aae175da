package sqlite

import (
	"context"
	"fmt"

	"kumo/internal/model"
	"kumo/internal/store/rowcodec"
)

// QuotaSet implements store.Store. Families match case-insensitively; the
// last spelling set is kept. ErrNotFound if the workspace does not exist.
func (s *Store) QuotaSet(ctx context.Context, q model.Quota) error {
	_, err := s.exec(ctx, `INSERT INTO quotas (workspace_key, workspace_id, family, family_key, vcpu_limit)
		VALUES (?, ?, ?, ?, ?)
		ON CONFLICT (workspace_key, family_key) DO UPDATE SET
			workspace_id = excluded.workspace_id, family = excluded.family, vcpu_limit = excluded.vcpu_limit`,
		rowcodec.Fold(q.WorkspaceID), q.WorkspaceID, q.Family, rowcodec.Fold(q.Family), q.Limit)
	if err != nil {
		return fmt.Errorf("quota set %s %s: %w", q.WorkspaceID, q.Family, storeErr(err))
	}
	return nil
}

// QuotaList implements store.Store. Families are ordered case-folded.
func (s *Store) QuotaList(ctx context.Context, workspaceID string) ([]model.Quota, error) {
	qs, err := list(ctx, s.r, rowcodec.ScanQuota,
		`SELECT workspace_id, family, vcpu_limit FROM quotas WHERE workspace_key = ? ORDER BY family_key`,
		rowcodec.Fold(workspaceID))
	if err != nil {
		return nil, fmt.Errorf("quota list %s: %w", workspaceID, err)
	}
	return qs, nil
}

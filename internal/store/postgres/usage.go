package postgres

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"kumo/internal/model"
)

// NodeCreateUsage implements store.Store: the node and its usage record in
// one transaction.
func (s *Store) NodeCreateUsage(ctx context.Context, n model.Node, u model.NodeUsage) error {
	err := s.inTx(ctx, func(ctx context.Context, tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, nodeInsertSQL, nodeInsertArgs(n)...); err != nil {
			return storeErr(err)
		}
		_, err := tx.Exec(ctx, `INSERT INTO node_usage (node_id, compute_id, compute_key, workspace_key, workspace_id,
			vm_size, priority, price_per_hour, started_at, ended_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)`,
			n.ID, u.ComputeID, fold(u.ComputeID), fold(u.WorkspaceID), u.WorkspaceID, u.VMSize, string(u.Priority),
			u.PricePerHour, encTime(u.StartedAt), encOptTime(u.EndedAt))
		return storeErr(err)
	})
	if err != nil {
		return fmt.Errorf("node create %s: %w", n.ID, err)
	}
	return nil
}

// UsageList implements store.Store.
func (s *Store) UsageList(ctx context.Context, workspaceID, computeID string, from, to time.Time) ([]model.NodeUsage, error) {
	q := `SELECT ` + usageColumns + ` FROM node_usage WHERE workspace_key = $1 AND started_at < $2
		AND (ended_at IS NULL OR ended_at > $3) AND ($4 = '' OR compute_key = $4)
		ORDER BY started_at, node_id`
	us, err := query(ctx, s.pool, scanUsage, q, fold(workspaceID), encTime(to), encTime(from), fold(computeID))
	if err != nil {
		return nil, fmt.Errorf("usage list %s: %w", workspaceID, err)
	}
	return us, nil
}

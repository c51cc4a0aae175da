package postgres

import (
	"context"
	"fmt"

	"kumo/internal/model"
	"kumo/internal/store/rowcodec"
)

const (
	computeStatusSetSQL = `INSERT INTO compute_status (
		compute_key, compute_id, target_nodes, allocation, allocation_since, errors, blocked, blocked_detail,
		failures, last_failure, retry_at
	) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
	ON CONFLICT (compute_key) DO UPDATE SET
		compute_id = excluded.compute_id, target_nodes = excluded.target_nodes,
		allocation = excluded.allocation, allocation_since = excluded.allocation_since,
		errors = excluded.errors, blocked = excluded.blocked, blocked_detail = excluded.blocked_detail,
		failures = excluded.failures, last_failure = excluded.last_failure, retry_at = excluded.retry_at`

	computeStatusGetSQL = `SELECT compute_id, target_nodes, allocation, allocation_since, errors, blocked, blocked_detail,
		failures, last_failure, retry_at
		FROM compute_status WHERE compute_key = $1`
)

// ComputeStatusSet implements store.Store. The compute need not exist;
// ComputeDelete removes its status.
func (s *Store) ComputeStatusSet(ctx context.Context, cs model.ComputeStatus) error {
	args, err := rowcodec.ComputeStatusArgs(cs)
	if err == nil {
		_, err = s.exec(ctx, computeStatusSetSQL, args...)
	}
	if err != nil {
		return fmt.Errorf("compute status set %s: %w", cs.ComputeID, err)
	}
	return nil
}

// ComputeStatusGet implements store.Store.
func (s *Store) ComputeStatusGet(ctx context.Context, computeID string) (model.ComputeStatus, error) {
	cs, err := rowcodec.ScanComputeStatus(s.pool.QueryRow(ctx, computeStatusGetSQL, rowcodec.Fold(computeID)))
	if err != nil {
		return model.ComputeStatus{}, fmt.Errorf("compute status get %s: %w", computeID, notFound(err))
	}
	return cs, nil
}

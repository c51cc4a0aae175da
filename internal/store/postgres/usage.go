package postgres

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"kumo/internal/model"
	"kumo/internal/store"
	"kumo/internal/store/rowcodec"
)

// NodeCreateUsage implements store.Store: the node and its usage record in
// one transaction.
func (s *Store) NodeCreateUsage(ctx context.Context, n model.Node, u model.NodeUsage) error {
	err := s.inTx(ctx, func(ctx context.Context, tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, nodeInsertSQL, rowcodec.NodeInsertArgs(n)...); err != nil {
			return storeErr(err)
		}
		_, err := tx.Exec(ctx, `INSERT INTO node_usage (node_id, compute_id, compute_key, workspace_key, workspace_id,
			vm_size, priority, price_per_hour, started_at, ended_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)`,
			n.ID, u.ComputeID, rowcodec.Fold(u.ComputeID), rowcodec.Fold(u.WorkspaceID), u.WorkspaceID, u.VMSize, string(u.Priority),
			u.PricePerHour, rowcodec.EncTime(u.StartedAt), rowcodec.EncOptTime(u.EndedAt))
		return storeErr(err)
	})
	if err != nil {
		return fmt.Errorf("node create %s: %w", n.ID, err)
	}
	return nil
}

// UsageList implements store.Store.
func (s *Store) UsageList(ctx context.Context, workspaceID, computeID string, from, to time.Time) ([]model.NodeUsage, error) {
	q := `SELECT ` + rowcodec.UsageColumns + ` FROM node_usage WHERE workspace_key = $1 AND started_at < $2
		AND (ended_at IS NULL OR ended_at > $3) AND ($4 = '' OR compute_key = $4)
		ORDER BY started_at, node_id`
	us, err := query(ctx, s.pool, rowcodec.ScanUsage, q, rowcodec.Fold(workspaceID), rowcodec.EncTime(to), rowcodec.EncTime(from), rowcodec.Fold(computeID))
	if err != nil {
		return nil, fmt.Errorf("usage list %s: %w", workspaceID, err)
	}
	return us, nil
}

// unixNanoSQL is the Unix time in nanoseconds, exact (numeric, so that
// no year overflows), of a time column or expression x stored as rowcodec.EncTime
// writes it (fixed width, UTC): "2006-01-02T15:04:05" then "." and nine
// digits.
func unixNanoSQL(x string) string {
	return `(EXTRACT(EPOCH FROM substr(` + x + `, 1, 19)::timestamp)::numeric * 1000000000 + substr(` + x + `, 21, 9)::numeric)`
}

// usageSumSQL sums a compute's records within [$1, $2) as model.NodeUsage's
// Cost does: each record's span clamped to the range, times its price.
// Times compare as text (collation "C"), which their fixed width allows.
var usageSumSQL = `SELECT COUNT(*), COALESCE(SUM(price_per_hour * GREATEST(e - s, 0)::float8 / 3600e9::float8), 0),
	COALESCE(SUM(price_per_hour) FILTER (WHERE ended_at IS NULL), 0)
	FROM (SELECT price_per_hour, ended_at,
		` + unixNanoSQL(`GREATEST(started_at, $1::text)`) + ` AS s,
		` + unixNanoSQL(`LEAST(COALESCE(ended_at, $2::text), $2::text)`) + ` AS e
		FROM node_usage
		WHERE compute_key = $3 AND started_at < $2 AND (ended_at IS NULL OR ended_at > $1)) AS u`

// UsageSumByCompute implements store.Store, reading the index
// node_usage_by_compute (migration 0003).
func (s *Store) UsageSumByCompute(ctx context.Context, computeID string, from, to time.Time) (store.UsageSum, error) {
	var u store.UsageSum
	err := s.pool.QueryRow(ctx, usageSumSQL, rowcodec.EncTime(from), rowcodec.EncTime(to), rowcodec.Fold(computeID)).Scan(&u.Records, &u.Cost, &u.OpenPricePerHour)
	if err != nil {
		return store.UsageSum{}, fmt.Errorf("usage sum of %s: %w", computeID, err)
	}
	return u, nil
}

package sqlite

import (
	"context"
	"database/sql"
	"fmt"
	"math"
	"time"

	"kumo/internal/model"
	"kumo/internal/store"
	"kumo/internal/store/rowcodec"
)

// NodeCreateUsage implements store.Store: the node and its usage record in
// one transaction.
func (s *Store) NodeCreateUsage(ctx context.Context, n model.Node, u model.NodeUsage) error {
	err := s.inTx(ctx, func(ctx context.Context, tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, nodeInsertSQL, rowcodec.NodeInsertArgs(n)...); err != nil {
			return storeErr(err)
		}
		_, err := tx.ExecContext(ctx, `INSERT INTO node_usage (node_id, compute_id, compute_key, workspace_key, workspace_id,
			vm_size, priority, price_per_hour, started_at, ended_at, started_ns, ended_ns) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
			n.ID, u.ComputeID, rowcodec.Fold(u.ComputeID), rowcodec.Fold(u.WorkspaceID), u.WorkspaceID, u.VMSize, string(u.Priority),
			u.PricePerHour, rowcodec.EncTime(u.StartedAt), rowcodec.EncOptTime(u.EndedAt), unixNano(u.StartedAt), optUnixNano(u.EndedAt))
		return storeErr(err)
	})
	if err != nil {
		return fmt.Errorf("node create %s: %w", n.ID, err)
	}
	return nil
}

// UsageList implements store.Store.
func (s *Store) UsageList(ctx context.Context, workspaceID, computeID string, from, to time.Time) ([]model.NodeUsage, error) {
	q := `SELECT ` + rowcodec.UsageColumns + ` FROM node_usage WHERE workspace_key = ? AND started_at < ?
		AND (ended_at IS NULL OR ended_at > ?)`
	args := []any{rowcodec.Fold(workspaceID), rowcodec.EncTime(to), rowcodec.EncTime(from)}
	if computeID != "" {
		q += ` AND compute_key = ?`
		args = append(args, rowcodec.Fold(computeID))
	}
	us, err := query(ctx, s, rowcodec.ScanUsage, q+` ORDER BY started_at, node_id`, args...)
	if err != nil {
		return nil, fmt.Errorf("usage list %s: %w", workspaceID, err)
	}
	return us, nil
}

// usageSumSQL sums a compute's records within [?2, ?3) (Unix nanoseconds)
// as model.NodeUsage's Cost does: each record's span clamped to the range,
// times its price. It reads the records' started_ns and ended_ns from the
// index node_usage_by_compute alone (migration 0011).
const usageSumSQL = `SELECT COUNT(*), COALESCE(SUM(price_per_hour * MAX(MIN(COALESCE(ended_ns, ?3), ?3) - MAX(started_ns, ?2), 0) / 3600e9), 0),
	COALESCE(SUM(CASE WHEN ended_ns IS NULL THEN price_per_hour ELSE 0 END), 0)
	FROM node_usage WHERE compute_key = ?1 AND started_ns < ?3 AND (ended_ns IS NULL OR ended_ns > ?2)`

// UsageSumByCompute implements store.Store, reading the index
// node_usage_by_compute (migration 0011) alone.
func (s *Store) UsageSumByCompute(ctx context.Context, computeID string, from, to time.Time) (store.UsageSum, error) {
	sums, err := query(ctx, s, func(sc rowcodec.Scanner) (store.UsageSum, error) {
		var u store.UsageSum
		err := sc.Scan(&u.Records, &u.Cost, &u.OpenPricePerHour)
		return u, err
	}, usageSumSQL, rowcodec.Fold(computeID), unixNano(from), unixNano(to))
	if err != nil {
		return store.UsageSum{}, fmt.Errorf("usage sum of %s: %w", computeID, err)
	}
	return sums[0], nil
}

// unixNano is t in Unix nanoseconds as started_ns holds it; a time
// beyond what int64 nanoseconds reach (1678 to 2262), such as the zero
// time, is clamped to the nearest end, which only clamps a record's span.
func unixNano(t time.Time) int64 {
	switch {
	case t.Before(minUnixNano):
		return math.MinInt64
	case t.After(maxUnixNano):
		return math.MaxInt64
	}
	return t.UnixNano()
}

// optUnixNano is unixNano, with NULL for the zero time.
func optUnixNano(t time.Time) sql.NullInt64 {
	if t.IsZero() {
		return sql.NullInt64{}
	}
	return sql.NullInt64{Int64: unixNano(t), Valid: true}
}

var minUnixNano, maxUnixNano = time.Unix(0, math.MinInt64), time.Unix(0, math.MaxInt64)

package postgres

import (
	"context"
	"fmt"
	"slices"

	"kumo/internal/model"
	"kumo/internal/store/rowcodec"
)

const (
	eventAppendSQL = `INSERT INTO events (compute_id, compute_key, time, kind, message) VALUES ($1, $2, $3, $4, $5)`
	// eventListSQL takes the newest events first; EventList reverses them.
	// A NULL limit means all.
	eventListSQL = `SELECT compute_id, time, kind, message FROM events WHERE compute_key = $1
		ORDER BY time DESC, seq DESC LIMIT $2`
)

// EventAppend implements store.Store. The compute need not exist.
func (s *Store) EventAppend(ctx context.Context, e model.Event) error {
	if _, err := s.exec(ctx, eventAppendSQL, e.ComputeID, rowcodec.Fold(e.ComputeID), rowcodec.EncTime(e.Time), string(e.Kind), e.Message); err != nil {
		return fmt.Errorf("event append %s: %w", e.ComputeID, err)
	}
	return nil
}

// EventList implements store.Store. Events with the same time are ordered
// as they were appended.
func (s *Store) EventList(ctx context.Context, computeID string, limit int) ([]model.Event, error) {
	var lim *int
	if limit > 0 {
		lim = &limit
	}
	es, err := query(ctx, s.pool, rowcodec.ScanEvent, eventListSQL, rowcodec.Fold(computeID), lim)
	if err != nil {
		return nil, fmt.Errorf("event list %s: %w", computeID, err)
	}
	slices.Reverse(es)
	return es, nil
}

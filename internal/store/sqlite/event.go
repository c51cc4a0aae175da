package sqlite

import (
	"context"
	"fmt"
	"slices"

	"kumo/internal/model"
	"kumo/internal/store/rowcodec"
)

const (
	eventAppendSQL = `INSERT INTO events (compute_id, compute_key, time, kind, message) VALUES (?, ?, ?, ?, ?)`
	// eventListSQL takes the newest events first; EventList reverses them.
	eventListSQL = `SELECT compute_id, time, kind, message FROM events WHERE compute_key = ?
		ORDER BY time DESC, seq DESC LIMIT ?`
)

// EventAppend implements store.Store. The compute need not exist.
func (s *Store) EventAppend(ctx context.Context, e model.Event) error {
	if _, err := s.exec(ctx, eventAppendSQL, e.ComputeID, rowcodec.Fold(e.ComputeID), rowcodec.EncTime(e.Time), e.Kind, e.Message); err != nil {
		return fmt.Errorf("event append %s: %w", e.ComputeID, err)
	}
	return nil
}

// EventList implements store.Store. Events with the same time are ordered
// as they were appended.
func (s *Store) EventList(ctx context.Context, computeID string, limit int) ([]model.Event, error) {
	if limit <= 0 {
		limit = -1
	}
	es, err := query(ctx, s, rowcodec.ScanEvent, eventListSQL, rowcodec.Fold(computeID), limit)
	if err != nil {
		return nil, fmt.Errorf("event list %s: %w", computeID, err)
	}
	slices.Reverse(es)
	return es, nil
}

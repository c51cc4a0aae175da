package sqlite

import (
	"context"
	"database/sql"
	"fmt"

	"kumo/internal/model"
	"kumo/internal/store/rowcodec"
)

// insertOperation inserts op in tx; store.ErrConflict if its ID exists.
func insertOperation(ctx context.Context, tx *sql.Tx, op model.Operation) error {
	_, err := tx.ExecContext(ctx, `INSERT INTO operations (
		id, location, kind, compute_id, compute_key, status, error_code, error_message, started_at, ended_at
	) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`, rowcodec.OperationInsertArgs(op)...)
	return storeErr(err)
}

// OperationCreate implements store.Store.
func (s *Store) OperationCreate(ctx context.Context, op model.Operation) error {
	err := s.inTx(ctx, func(ctx context.Context, tx *sql.Tx) error { return insertOperation(ctx, tx, op) })
	if err != nil {
		return fmt.Errorf("operation create %s: %w", op.ID, err)
	}
	return nil
}

// OperationUpdate implements store.Store.
func (s *Store) OperationUpdate(ctx context.Context, op model.Operation) error {
	code, msg := rowcodec.OpError(op.Error)
	res, err := s.exec(ctx, `UPDATE operations SET status = ?, error_code = ?, error_message = ?, ended_at = ? WHERE id = ?`,
		op.Status, code, msg, rowcodec.EncOptTime(op.EndedAt), op.ID)
	if err == nil {
		err = mustAffect(res)
	}
	if err != nil {
		return fmt.Errorf("operation update %s: %w", op.ID, err)
	}
	return nil
}

// OperationGet implements store.Store.
func (s *Store) OperationGet(ctx context.Context, id string) (model.Operation, error) {
	row := s.keyRow(ctx, `SELECT `+rowcodec.OperationColumns+` FROM operations WHERE id = ?`, id)
	op, err := rowcodec.ScanOperation(row)
	if err != nil {
		return model.Operation{}, fmt.Errorf("operation get %s: %w", id, notFound(err))
	}
	return op, nil
}

// OperationListInProgress implements store.Store.
func (s *Store) OperationListInProgress(ctx context.Context) ([]model.Operation, error) {
	rows, err := s.r.QueryContext(ctx, `SELECT `+rowcodec.OperationColumns+` FROM operations WHERE status = ? ORDER BY started_at, id`, model.OpInProgress)
	if err != nil {
		return nil, fmt.Errorf("operation list in progress: %w", err)
	}
	defer rows.Close()
	var out []model.Operation
	for rows.Next() {
		op, err := rowcodec.ScanOperation(rows)
		if err != nil {
			return nil, fmt.Errorf("operation list in progress: %w", err)
		}
		out = append(out, op)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("operation list in progress: %w", err)
	}
	return out, nil
}

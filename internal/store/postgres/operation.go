package postgres

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"

	"kumo/internal/model"
	"kumo/internal/store/rowcodec"
)

// insertOperation inserts op in tx; store.ErrConflict if its ID exists.
func insertOperation(ctx context.Context, tx pgx.Tx, op model.Operation) error {
	_, err := tx.Exec(ctx, `INSERT INTO operations (
		id, location, kind, compute_id, compute_key, status, error_code, error_message, started_at, ended_at
	) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)`, rowcodec.OperationInsertArgs(op)...)
	return storeErr(err)
}

// OperationCreate implements store.Store.
func (s *Store) OperationCreate(ctx context.Context, op model.Operation) error {
	err := s.inTx(ctx, func(ctx context.Context, tx pgx.Tx) error { return insertOperation(ctx, tx, op) })
	if err != nil {
		return fmt.Errorf("operation create %s: %w", op.ID, err)
	}
	return nil
}

// OperationUpdate implements store.Store.
func (s *Store) OperationUpdate(ctx context.Context, op model.Operation) error {
	code, msg := rowcodec.OpError(op.Error)
	tag, err := s.exec(ctx, `UPDATE operations SET status = $1, error_code = $2, error_message = $3, ended_at = $4 WHERE id = $5`,
		string(op.Status), code, msg, rowcodec.EncOptTime(op.EndedAt), op.ID)
	if err == nil {
		err = mustAffect(tag)
	}
	if err != nil {
		return fmt.Errorf("operation update %s: %w", op.ID, err)
	}
	return nil
}

// OperationGet implements store.Store.
func (s *Store) OperationGet(ctx context.Context, id string) (model.Operation, error) {
	row := s.pool.QueryRow(ctx, `SELECT `+rowcodec.OperationColumns+` FROM operations WHERE id = $1`, id)
	op, err := rowcodec.ScanOperation(row)
	if err != nil {
		return model.Operation{}, fmt.Errorf("operation get %s: %w", id, notFound(err))
	}
	return op, nil
}

// OperationListInProgress implements store.Store.
func (s *Store) OperationListInProgress(ctx context.Context) ([]model.Operation, error) {
	ops, err := query(ctx, s.pool, rowcodec.ScanOperation,
		`SELECT `+rowcodec.OperationColumns+` FROM operations WHERE status = $1 ORDER BY started_at, id`, string(model.OpInProgress))
	if err != nil {
		return nil, fmt.Errorf("operation list in progress: %w", err)
	}
	return ops, nil
}

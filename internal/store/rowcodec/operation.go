package rowcodec

import (
	"database/sql"

	"kumo/internal/model"
)

// OperationColumns are the columns that ScanOperation reads, in its order.
const OperationColumns = `id, location, kind, compute_id, status, error_code, error_message, started_at, ended_at`

// ScanOperation reads an operation from the columns of OperationColumns.
func ScanOperation(sc Scanner) (model.Operation, error) {
	var (
		op        model.Operation
		code, msg sql.NullString
		started   string
		ended     sql.NullString
	)
	if err := sc.Scan(&op.ID, &op.Location, &op.Kind, &op.ComputeID, &op.Status, &code, &msg, &started, &ended); err != nil {
		return model.Operation{}, err
	}
	if code.Valid || msg.Valid {
		op.Error = &model.Error{Code: code.String, Message: msg.String}
	}
	var d Decoder
	op.StartedAt = d.Time("started_at", started)
	op.EndedAt = d.OptTime("ended_at", ended)
	return op, d.err
}

// OpError splits an operation's error into nullable columns.
func OpError(e *model.Error) (code, msg sql.NullString) {
	if e == nil {
		return sql.NullString{}, sql.NullString{}
	}
	return sql.NullString{String: e.Code, Valid: true}, sql.NullString{String: e.Message, Valid: true}
}

// OperationInsertArgs returns the arguments of an operation's insert: id,
// location, kind, compute_id, compute_key, status, error_code,
// error_message, started_at, ended_at.
func OperationInsertArgs(op model.Operation) []any {
	code, msg := OpError(op.Error)
	return []any{
		op.ID, op.Location, string(op.Kind), op.ComputeID, Fold(op.ComputeID), string(op.Status), code, msg,
		EncTime(op.StartedAt), EncOptTime(op.EndedAt),
	}
}

package rowcodec

import (
	"database/sql"

	"kumo/internal/model"
)

// WorkspaceColumns are the columns that ScanWorkspace reads, in its order.
const WorkspaceColumns = `id, subscription, resource_group, name, location, description, tags, created_at, modified_at, created_by`

// ScanWorkspace reads a workspace from the columns of WorkspaceColumns.
func ScanWorkspace(sc Scanner) (model.Workspace, error) {
	var (
		w                 model.Workspace
		tags              sql.NullString
		created, modified string
	)
	err := sc.Scan(&w.ID, &w.Subscription, &w.ResourceGroup, &w.Name, &w.Location, &w.Description,
		&tags, &created, &modified, &w.CreatedBy)
	if err != nil {
		return model.Workspace{}, err
	}
	var d Decoder
	w.Tags = d.Tags("tags", tags)
	w.CreatedAt = d.Time("created_at", created)
	w.ModifiedAt = d.Time("modified_at", modified)
	return w, d.err
}

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

// TokenColumns are the columns that ScanToken reads, in its order.
const TokenColumns = `id, name, role, hash, created_at, revoked_at`

// ScanToken reads a token from the columns of TokenColumns.
func ScanToken(sc Scanner) (model.Token, error) {
	var (
		t       model.Token
		created string
		revoked sql.NullString
	)
	if err := sc.Scan(&t.ID, &t.Name, &t.Role, &t.Hash, &created, &revoked); err != nil {
		return model.Token{}, err
	}
	var d Decoder
	t.CreatedAt = d.Time("created_at", created)
	t.RevokedAt = d.OptTime("revoked_at", revoked)
	return t, d.err
}

// WorkspaceInsertArgs returns the arguments of a workspace's insert:
// id_key, id, subscription, subscription_key, resource_group,
// resource_group_key, name, name_key, location, description, tags,
// created_at, modified_at, created_by.
func WorkspaceInsertArgs(w model.Workspace) ([]any, error) {
	tags, err := EncTags(w.Tags)
	if err != nil {
		return nil, err
	}
	return []any{
		Fold(w.ID), w.ID, w.Subscription, Fold(w.Subscription), w.ResourceGroup, Fold(w.ResourceGroup), w.Name, Fold(w.Name),
		w.Location, w.Description, tags, EncTime(w.CreatedAt), EncTime(w.ModifiedAt), w.CreatedBy,
	}, nil
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

// TokenInsertArgs returns the arguments of a token's insert: id, name,
// role, hash, created_at, revoked_at.
func TokenInsertArgs(t model.Token) []any {
	return []any{t.ID, t.Name, string(t.Role), t.Hash, EncTime(t.CreatedAt), EncOptTime(t.RevokedAt)}
}

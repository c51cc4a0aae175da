package rowcodec

import (
	"database/sql"
	"time"

	"kumo/internal/model"
)

// ComputeColumns are the columns that ScanCompute reads, in its order.
const ComputeColumns = `id, workspace_id, name, location, description, tags, vm_size, priority,
	min_nodes, max_nodes, idle_time_ns, admin_user, password_hash, ssh_public_key, remote_login,
	state, errors, operation_id, etag, created_at, modified_at, created_by, modified_by`

// ScanCompute reads a compute from the columns of ComputeColumns.
func ScanCompute(sc Scanner) (model.Compute, error) {
	var (
		c                 model.Compute
		tags, errs        sql.NullString
		idle              int64
		created, modified string
	)
	err := sc.Scan(&c.ID, &c.WorkspaceID, &c.Name, &c.Location, &c.Description, &tags, &c.VMSize, &c.Priority,
		&c.Scale.MinNodes, &c.Scale.MaxNodes, &idle, &c.Credentials.AdminUser, &c.Credentials.PasswordHash,
		&c.Credentials.SSHPublicKey, &c.RemoteLogin, &c.State, &errs, &c.OperationID, &c.ETag,
		&created, &modified, &c.CreatedBy, &c.ModifiedBy)
	if err != nil {
		return model.Compute{}, err
	}
	var d Decoder
	c.Tags = d.Tags("tags", tags)
	c.Scale.IdleTime = time.Duration(idle)
	c.Errors = d.Errors("errors", errs)
	c.CreatedAt = d.Time("created_at", created)
	c.ModifiedAt = d.Time("modified_at", modified)
	return c, d.err
}

// ComputeArgs encodes the columns that a compute's insert and update
// share, location through modified_by, in ScanCompute's order.
func ComputeArgs(c model.Compute) ([]any, error) {
	tags, err := EncTags(c.Tags)
	if err != nil {
		return nil, err
	}
	errs, err := EncErrors(c.Errors)
	if err != nil {
		return nil, err
	}
	return []any{
		c.Location, c.Description, tags, c.VMSize, string(c.Priority),
		c.Scale.MinNodes, c.Scale.MaxNodes, int64(c.Scale.IdleTime), c.Credentials.AdminUser,
		c.Credentials.PasswordHash, c.Credentials.SSHPublicKey,
		c.RemoteLogin, string(c.State), errs, c.OperationID, c.ETag,
		EncTime(c.CreatedAt), EncTime(c.ModifiedAt), c.CreatedBy, c.ModifiedBy,
	}, nil
}

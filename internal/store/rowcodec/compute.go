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

// ScanComputeStatus reads a compute's status from the columns compute_id,
// target_nodes, allocation, allocation_since, errors, blocked,
// blocked_detail, in that order.
func ScanComputeStatus(sc Scanner) (model.ComputeStatus, error) {
	var (
		cs          model.ComputeStatus
		since, errs sql.NullString
	)
	err := sc.Scan(&cs.ComputeID, &cs.TargetNodes, &cs.Allocation, &since, &errs, &cs.Blocked, &cs.BlockedDetail)
	if err != nil {
		return model.ComputeStatus{}, err
	}
	var d Decoder
	cs.AllocationSince = d.OptTime("allocation_since", since)
	cs.Errors = d.Errors("errors", errs)
	return cs, d.err
}

// ScanEvent reads an event from the columns compute_id, time, kind,
// message, in that order.
func ScanEvent(sc Scanner) (model.Event, error) {
	var (
		e model.Event
		t string
	)
	if err := sc.Scan(&e.ComputeID, &t, &e.Kind, &e.Message); err != nil {
		return model.Event{}, err
	}
	var d Decoder
	e.Time = d.Time("time", t)
	return e, d.err
}

// ScanQuota reads a quota from the columns workspace_id, family,
// vcpu_limit, in that order.
func ScanQuota(sc Scanner) (model.Quota, error) {
	var q model.Quota
	err := sc.Scan(&q.WorkspaceID, &q.Family, &q.Limit)
	return q, err
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

// ComputeStatusArgs returns the arguments of a compute status's upsert:
// compute_key, compute_id, target_nodes, allocation, allocation_since,
// errors, blocked, blocked_detail.
func ComputeStatusArgs(cs model.ComputeStatus) ([]any, error) {
	errs, err := EncErrors(cs.Errors)
	if err != nil {
		return nil, err
	}
	return []any{
		Fold(cs.ComputeID), cs.ComputeID, cs.TargetNodes, string(cs.Allocation),
		EncOptTime(cs.AllocationSince), errs, string(cs.Blocked), cs.BlockedDetail,
	}, nil
}

package rowcodec

import (
	"database/sql"

	"kumo/internal/model"
)

// ScanComputeStatus reads a compute's status from the columns compute_id,
// target_nodes, allocation, allocation_since, errors, blocked,
// blocked_detail, failures, last_failure, retry_at, in that order.
func ScanComputeStatus(sc Scanner) (model.ComputeStatus, error) {
	var (
		cs              model.ComputeStatus
		since, errs     sql.NullString
		lastFail, retry sql.NullString
	)
	err := sc.Scan(&cs.ComputeID, &cs.TargetNodes, &cs.Allocation, &since, &errs, &cs.Blocked, &cs.BlockedDetail,
		&cs.Failures, &lastFail, &retry)
	if err != nil {
		return model.ComputeStatus{}, err
	}
	var d Decoder
	cs.AllocationSince = d.OptTime("allocation_since", since)
	cs.Errors = d.Errors("errors", errs)
	cs.LastFailure = d.OptTime("last_failure", lastFail)
	cs.RetryAt = d.OptTime("retry_at", retry)
	return cs, d.err
}

// ComputeStatusArgs returns the arguments of a compute status's upsert:
// compute_key, compute_id, target_nodes, allocation, allocation_since,
// errors, blocked, blocked_detail, failures, last_failure, retry_at.
func ComputeStatusArgs(cs model.ComputeStatus) ([]any, error) {
	errs, err := EncErrors(cs.Errors)
	if err != nil {
		return nil, err
	}
	return []any{
		Fold(cs.ComputeID), cs.ComputeID, cs.TargetNodes, string(cs.Allocation),
		EncOptTime(cs.AllocationSince), errs, string(cs.Blocked), cs.BlockedDetail,
		cs.Failures, EncOptTime(cs.LastFailure), EncOptTime(cs.RetryAt),
	}, nil
}

package rowcodec

import "kumo/internal/model"

// ScanQuota reads a quota from the columns workspace_id, family,
// vcpu_limit, in that order.
func ScanQuota(sc Scanner) (model.Quota, error) {
	var q model.Quota
	err := sc.Scan(&q.WorkspaceID, &q.Family, &q.Limit)
	return q, err
}

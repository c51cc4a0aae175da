package rowcodec

import (
	"database/sql"

	"kumo/internal/model"
)

// UsageColumns are the columns that ScanUsage reads, in its order.
const UsageColumns = `node_id, compute_id, workspace_id, vm_size, priority, price_per_hour, started_at, ended_at`

// ScanUsage reads a node usage record from the columns of UsageColumns.
func ScanUsage(sc Scanner) (model.NodeUsage, error) {
	var (
		u       model.NodeUsage
		started string
		ended   sql.NullString
	)
	if err := sc.Scan(&u.NodeID, &u.ComputeID, &u.WorkspaceID, &u.VMSize, &u.Priority, &u.PricePerHour, &started, &ended); err != nil {
		return model.NodeUsage{}, err
	}
	var d Decoder
	u.StartedAt = d.Time("started_at", started)
	u.EndedAt = d.OptTime("ended_at", ended)
	return u, d.err
}

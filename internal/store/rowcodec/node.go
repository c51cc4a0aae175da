package rowcodec

import (
	"database/sql"

	"kumo/internal/model"
)

// NodeColumns are the columns that ScanNode reads, in its order.
const NodeColumns = `id, compute_id, state, credential_hash, address, ssh_port, job_id, reason, note,
	created_at, state_since, attempts, agent_key, host_key, ready_at`

// ScanNode reads a node from the columns of NodeColumns.
func ScanNode(sc Scanner) (model.Node, error) {
	var (
		n              model.Node
		created, since string
		ready          sql.NullString
	)
	err := sc.Scan(&n.ID, &n.ComputeID, &n.State, &n.CredentialHash, &n.Address, &n.SSHPort, &n.JobID,
		&n.Reason, &n.Note, &created, &since, &n.Attempts, &n.AgentKey, &n.HostKey, &ready)
	if err != nil {
		return model.Node{}, err
	}
	var d Decoder
	n.CreatedAt = d.Time("created_at", created)
	n.StateSince = d.Time("state_since", since)
	n.ReadyAt = d.OptTime("ready_at", ready)
	return n, d.err
}

// NodeInsertArgs returns the arguments of a node's insert: id, compute_id,
// compute_key, state, credential_hash, address, ssh_port, job_id, reason,
// note, created_at, state_since, attempts, agent_key, host_key, ready_at.
func NodeInsertArgs(n model.Node) []any {
	return []any{
		n.ID, n.ComputeID, Fold(n.ComputeID), string(n.State), n.CredentialHash, n.Address, n.SSHPort, n.JobID,
		string(n.Reason), n.Note, EncTime(n.CreatedAt), EncTime(n.StateSince), n.Attempts, n.AgentKey, n.HostKey,
		EncOptTime(n.ReadyAt),
	}
}

// NodeArgs returns the arguments of a node's conditional update: state,
// credential_hash, address, ssh_port, job_id, reason, note, created_at,
// state_since, attempts, host_key, ready_at, then the condition: the
// node's id and the stored state from.
func NodeArgs(n model.Node, from model.NodeState) []any {
	return []any{
		string(n.State), n.CredentialHash, n.Address, n.SSHPort, n.JobID, string(n.Reason), n.Note,
		EncTime(n.CreatedAt), EncTime(n.StateSince), n.Attempts, n.HostKey, EncOptTime(n.ReadyAt),
		n.ID, string(from),
	}
}

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

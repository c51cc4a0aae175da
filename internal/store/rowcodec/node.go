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

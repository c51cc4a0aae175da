package rowcodec

import (
	"time"

	"kumo/internal/model"
)

// NodePresenceColumns are the node_presence columns ScanNodePresence reads.
const NodePresenceColumns = `node_id, replica, last_seen, ssh_open, ssh_last_closed`

// ScanNodePresence scans one row of NodePresenceColumns.
func ScanNodePresence(sc Scanner) (model.NodePresence, error) {
	var p model.NodePresence
	var seen, closed string
	if err := sc.Scan(&p.NodeID, &p.Replica, &seen, &p.SSHOpen, &closed); err != nil {
		return model.NodePresence{}, err
	}
	var d Decoder
	p.LastSeen = d.Time("last_seen", seen)
	if closed != "" {
		p.SSHLastClosed = d.Time("ssh_last_closed", closed)
	}
	return p, d.Err()
}

// EncZeroTime is EncTime, with "" for the zero time (a NOT NULL column
// whose "" means never).
func EncZeroTime(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return EncTime(t)
}

// ReplicaColumns are the replicas columns ScanReplica reads.
const ReplicaColumns = `name, address, secret_hash, heartbeat_at`

// ScanReplica scans one row of ReplicaColumns.
func ScanReplica(sc Scanner) (model.Replica, error) {
	var r model.Replica
	var hb string
	if err := sc.Scan(&r.Name, &r.Address, &r.SecretHash, &hb); err != nil {
		return model.Replica{}, err
	}
	var d Decoder
	r.HeartbeatAt = d.Time("heartbeat_at", hb)
	return r, d.Err()
}

// NodeMessageColumns are the node_messages columns ScanNodeMessage reads.
const NodeMessageColumns = `seq, node_id, body, created_at`

// ScanNodeMessage scans one row of NodeMessageColumns.
func ScanNodeMessage(sc Scanner) (model.NodeMessage, error) {
	var m model.NodeMessage
	var created string
	if err := sc.Scan(&m.Seq, &m.NodeID, &m.Body, &created); err != nil {
		return model.NodeMessage{}, err
	}
	var d Decoder
	m.CreatedAt = d.Time("created_at", created)
	return m, d.Err()
}

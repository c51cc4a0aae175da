package rowcodec

import "kumo/internal/model"

// NodePresenceColumns are the node_presence columns ScanNodePresence reads.
const NodePresenceColumns = `node_id, replica, last_seen`

// ScanNodePresence scans one row of NodePresenceColumns.
func ScanNodePresence(sc Scanner) (model.NodePresence, error) {
	var p model.NodePresence
	var seen string
	if err := sc.Scan(&p.NodeID, &p.Replica, &seen); err != nil {
		return model.NodePresence{}, err
	}
	var d Decoder
	p.LastSeen = d.Time("last_seen", seen)
	return p, d.Err()
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

package sqlite

import (
	"context"
	"database/sql"
	"fmt"
	"time"

	"kumo/internal/model"
	"kumo/internal/store"
	"kumo/internal/store/rowcodec"
)

// Publish implements store.Store: it reaches this Store's subscribers
// only (SQLite is for one process).
func (s *Store) Publish(ctx context.Context, channel, payload string) error {
	if err := store.CheckFeed(channel, payload); err != nil {
		return fmt.Errorf("publish: %w", err)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("publish: %w", err)
	}
	s.feed.Deliver(channel, payload)
	return nil
}

// Subscribe implements store.Store.
func (s *Store) Subscribe(ctx context.Context, channel string) (<-chan string, error) {
	if err := store.CheckFeed(channel, ""); err != nil {
		return nil, fmt.Errorf("subscribe: %w", err)
	}
	return s.feed.Subscribe(ctx, channel), nil
}

const (
	nodePresenceSetSQL = `INSERT INTO node_presence (node_id, replica, last_seen, ssh_open, ssh_last_closed)
		SELECT ?, ?, ?, ?, ? WHERE EXISTS (SELECT 1 FROM nodes WHERE id = ?)
		ON CONFLICT (node_id) DO UPDATE SET replica = excluded.replica, last_seen = excluded.last_seen,
			ssh_open = excluded.ssh_open, ssh_last_closed = excluded.ssh_last_closed`
	nodePresenceClearSQL = `UPDATE node_presence SET replica = '', last_seen = ? WHERE node_id = ? AND replica = ?`
	nodePresenceGetSQL   = `SELECT ` + rowcodec.NodePresenceColumns + ` FROM node_presence WHERE node_id = ?`
	nodePresenceListSQL  = `SELECT ` + rowcodec.NodePresenceColumns + ` FROM node_presence ORDER BY node_id`
	replicaSetSQL        = `INSERT INTO replicas (name, address, secret_hash, heartbeat_at) VALUES (?, ?, ?, ?)
		ON CONFLICT (name) DO UPDATE SET address = excluded.address, secret_hash = excluded.secret_hash,
			heartbeat_at = excluded.heartbeat_at`
	replicaGetSQL        = `SELECT ` + rowcodec.ReplicaColumns + ` FROM replicas WHERE name = ?`
	replicaDeleteSQL     = `DELETE FROM replicas WHERE name = ?`
	nodeMessageAppendSQL = `INSERT INTO node_messages (node_id, body, created_at) VALUES (?, ?, ?)`
	nodeMessageListSQL   = `SELECT ` + rowcodec.NodeMessageColumns + ` FROM node_messages WHERE node_id = ? ORDER BY seq`
	nodeMessageDeleteSQL = `DELETE FROM node_messages WHERE node_id = ? AND seq <= ?`
	nodeMessageExpireSQL = `DELETE FROM node_messages WHERE created_at < ?`
)

// NodePresenceSet implements store.Store.
func (s *Store) NodePresenceSet(ctx context.Context, ps []model.NodePresence) error {
	if len(ps) == 0 {
		return nil
	}
	st, err := s.ws.get(ctx, nodePresenceSetSQL)
	if err != nil {
		return fmt.Errorf("node presence set: %w", err)
	}
	err = s.inTx(ctx, func(ctx context.Context, tx *sql.Tx) error {
		st := tx.StmtContext(ctx, st)
		for _, p := range ps {
			if _, err := st.ExecContext(ctx, p.NodeID, p.Replica, rowcodec.EncTime(p.LastSeen),
				max(p.SSHOpen, 0), rowcodec.EncZeroTime(p.SSHLastClosed), p.NodeID); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("node presence set: %w", err)
	}
	return nil
}

// NodePresenceClear implements store.Store.
func (s *Store) NodePresenceClear(ctx context.Context, nodeID, replica string, at time.Time) error {
	if _, err := s.exec(ctx, nodePresenceClearSQL, rowcodec.EncTime(at), nodeID, replica); err != nil {
		return fmt.Errorf("node presence clear %s: %w", nodeID, err)
	}
	return nil
}

// NodePresenceGet implements store.Store.
func (s *Store) NodePresenceGet(ctx context.Context, nodeID string) (model.NodePresence, error) {
	p, err := rowcodec.ScanNodePresence(s.keyRow(ctx, nodePresenceGetSQL, nodeID))
	if err != nil {
		return model.NodePresence{}, fmt.Errorf("node presence get %s: %w", nodeID, notFound(err))
	}
	return p, nil
}

// NodePresenceList implements store.Store.
func (s *Store) NodePresenceList(ctx context.Context) ([]model.NodePresence, error) {
	ps, err := query(ctx, s, rowcodec.ScanNodePresence, nodePresenceListSQL)
	if err != nil {
		return nil, fmt.Errorf("node presence list: %w", err)
	}
	return ps, nil
}

// ReplicaSet implements store.Store.
func (s *Store) ReplicaSet(ctx context.Context, r model.Replica) error {
	if _, err := s.exec(ctx, replicaSetSQL, r.Name, r.Address, r.SecretHash, rowcodec.EncTime(r.HeartbeatAt)); err != nil {
		return fmt.Errorf("replica set %s: %w", r.Name, err)
	}
	return nil
}

// ReplicaGet implements store.Store.
func (s *Store) ReplicaGet(ctx context.Context, name string) (model.Replica, error) {
	r, err := rowcodec.ScanReplica(s.keyRow(ctx, replicaGetSQL, name))
	if err != nil {
		return model.Replica{}, fmt.Errorf("replica get %s: %w", name, notFound(err))
	}
	return r, nil
}

// ReplicaDelete implements store.Store.
func (s *Store) ReplicaDelete(ctx context.Context, name string) error {
	if _, err := s.exec(ctx, replicaDeleteSQL, name); err != nil {
		return fmt.Errorf("replica delete %s: %w", name, err)
	}
	return nil
}

// NodeMessageAppend implements store.Store.
func (s *Store) NodeMessageAppend(ctx context.Context, m model.NodeMessage) error {
	if _, err := s.exec(ctx, nodeMessageAppendSQL, m.NodeID, m.Body, rowcodec.EncTime(m.CreatedAt)); err != nil {
		return fmt.Errorf("node message append %s: %w", m.NodeID, err)
	}
	return nil
}

// NodeMessageTake implements store.Store: it reads and deletes the
// node's messages in one write transaction.
func (s *Store) NodeMessageTake(ctx context.Context, nodeID string) ([]model.NodeMessage, error) {
	var ms []model.NodeMessage
	err := s.inTx(ctx, func(ctx context.Context, tx *sql.Tx) error {
		rows, err := tx.QueryContext(ctx, nodeMessageListSQL, nodeID)
		if err != nil {
			return err
		}
		if ms, err = scanAll(rows, rowcodec.ScanNodeMessage); err != nil || len(ms) == 0 {
			return err
		}
		_, err = tx.ExecContext(ctx, nodeMessageDeleteSQL, nodeID, ms[len(ms)-1].Seq)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("node message take %s: %w", nodeID, err)
	}
	return ms, nil
}

// NodeMessageDeleteBefore implements store.Store.
func (s *Store) NodeMessageDeleteBefore(ctx context.Context, before time.Time) (int, error) {
	res, err := s.exec(ctx, nodeMessageExpireSQL, rowcodec.EncTime(before))
	if err != nil {
		return 0, fmt.Errorf("node message delete: %w", err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return 0, fmt.Errorf("node message delete: %w", err)
	}
	return int(n), nil
}

package postgres

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"

	"kumo/internal/model"
	"kumo/internal/store"
	"kumo/internal/store/rowcodec"
)

const (
	nodeInsertSQL = `INSERT INTO nodes (
		id, compute_id, compute_key, state, credential_hash, address, ssh_port, job_id, reason, note,
		created_at, state_since, attempts, agent_key, host_key, ready_at
	) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)`

	// nodeUpdateSQL replaces every field but the node's identity (ID,
	// ComputeID) and its agent key when the stored state is the expected
	// one; see rowcodec.NodeArgs.
	nodeUpdateSQL = `UPDATE nodes SET
		state = $1, credential_hash = $2, address = $3, ssh_port = $4, job_id = $5, reason = $6, note = $7,
		created_at = $8, state_since = $9, attempts = $10, host_key = $11, ready_at = $12
		WHERE id = $13 AND state = $14`

	// nodeBindAgentKeySQL sets an unbound node's agent key.
	nodeBindAgentKeySQL = `UPDATE nodes SET agent_key = $1 WHERE id = $2 AND agent_key = ''`

	nodeExistsSQL        = `SELECT 1 FROM nodes WHERE id = $1`
	nodeGetSQL           = `SELECT ` + rowcodec.NodeColumns + ` FROM nodes WHERE id = $1`
	nodeListByComputeSQL = `SELECT ` + rowcodec.NodeColumns + ` FROM nodes WHERE compute_key = $1 ORDER BY created_at, id`
	nodeListSQL          = `SELECT ` + rowcodec.NodeColumns + ` FROM nodes ORDER BY created_at, id`
	nodeListByStateSQL   = `SELECT ` + rowcodec.NodeColumns + ` FROM nodes WHERE compute_key = $1 AND state = $2 ORDER BY created_at, id`
	nodeCountInStateSQL  = `SELECT COUNT(*) FROM nodes WHERE compute_key = $1 AND state = $2`
	nodeDeleteSQL        = `DELETE FROM nodes WHERE id = $1`
)

// NodeCreate implements store.Store. Node IDs match exactly; the compute
// need not exist.
func (s *Store) NodeCreate(ctx context.Context, n model.Node) error {
	if _, err := s.exec(ctx, nodeInsertSQL, rowcodec.NodeInsertArgs(n)...); err != nil {
		return fmt.Errorf("node create %s: %w", n.ID, storeErr(err))
	}
	return nil
}

// NodeGet implements store.Store.
func (s *Store) NodeGet(ctx context.Context, id string) (model.Node, error) {
	n, err := rowcodec.ScanNode(s.pool.QueryRow(ctx, nodeGetSQL, id))
	if err != nil {
		return model.Node{}, fmt.Errorf("node get %s: %w", id, notFound(err))
	}
	return n, nil
}

// NodeUpdate implements store.Store. It replaces every field but the
// node's identity (ID, ComputeID) and its AgentKey.
func (s *Store) NodeUpdate(ctx context.Context, n model.Node, from model.NodeState) error {
	tag, err := s.exec(ctx, nodeUpdateSQL, rowcodec.NodeArgs(n, from)...)
	if err == nil {
		err = changed(ctx, s.pool, tag, nodeExistsSQL, n.ID)
	} else {
		err = storeErr(err) // another node's SSH port
	}
	if err != nil {
		return fmt.Errorf("node update %s: %w", n.ID, err)
	}
	return nil
}

// NodeBindAgentKey implements store.Store.
func (s *Store) NodeBindAgentKey(ctx context.Context, id, key string) error {
	if key == "" {
		return fmt.Errorf("node bind agent key %s: empty key", id)
	}
	tag, err := s.exec(ctx, nodeBindAgentKeySQL, key, id)
	if err != nil {
		return fmt.Errorf("node bind agent key %s: %w", id, err)
	}
	if tag.RowsAffected() == 1 {
		return nil
	}
	// Already bound (or gone): the same key is not a conflict.
	n, err := s.NodeGet(ctx, id)
	if err != nil {
		return fmt.Errorf("node bind agent key: %w", err)
	}
	if n.AgentKey != key {
		return fmt.Errorf("node bind agent key %s: bound to another key: %w", id, store.ErrPreconditionFailed)
	}
	return nil
}

// NodeListByCompute implements store.Store.
func (s *Store) NodeListByCompute(ctx context.Context, computeID string) ([]model.Node, error) {
	ns, err := query(ctx, s.pool, rowcodec.ScanNode, nodeListByComputeSQL, rowcodec.Fold(computeID))
	if err != nil {
		return nil, fmt.Errorf("node list by compute %s: %w", computeID, err)
	}
	return ns, nil
}

// NodeCountByCompute implements store.Store: an index-only count over
// nodes_by_compute_state (migration 0002).
func (s *Store) NodeCountByCompute(ctx context.Context, computeID string) (map[model.NodeState]int, error) {
	type row struct {
		state model.NodeState
		n     int
	}
	rows, err := query(ctx, s.pool, func(sc rowcodec.Scanner) (row, error) {
		var r row
		err := sc.Scan(&r.state, &r.n)
		return r, err
	}, `SELECT state, COUNT(*) FROM nodes WHERE compute_key = $1 GROUP BY state`, rowcodec.Fold(computeID))
	if err != nil {
		return nil, fmt.Errorf("node count of %s: %w", computeID, err)
	}
	out := make(map[model.NodeState]int, len(rows))
	for _, r := range rows {
		out[r.state] = r.n
	}
	return out, nil
}

// PlacementCandidates implements store.Store with three reads of the
// pool; a dispatcher pass tolerates their not being one snapshot, as its
// placements are conditional on what they read.
func (s *Store) PlacementCandidates(ctx context.Context, computeID string) ([]model.Node, []model.Job, error) {
	key := rowcodec.Fold(computeID)
	var n int
	if err := s.pool.QueryRow(ctx, nodeCountInStateSQL, key, string(model.NodeIdle)).Scan(&n); err != nil {
		return nil, nil, fmt.Errorf("placement candidates of %s: count idle nodes: %w", computeID, err)
	}
	if n == 0 {
		return nil, nil, nil
	}
	queued, err := query(ctx, s.pool, rowcodec.ScanJob, jobHeadSQL, key, string(model.JobQueued), n)
	if err != nil {
		return nil, nil, fmt.Errorf("placement candidates of %s: queue head: %w", computeID, err)
	}
	if len(queued) == 0 {
		return nil, nil, nil
	}
	idle, err := query(ctx, s.pool, rowcodec.ScanNode, nodeListByStateSQL, key, string(model.NodeIdle))
	if err != nil {
		return nil, nil, fmt.Errorf("placement candidates of %s: idle nodes: %w", computeID, err)
	}
	return idle, queued, nil
}

// NodeList implements store.Store.
func (s *Store) NodeList(ctx context.Context) ([]model.Node, error) {
	ns, err := query(ctx, s.pool, rowcodec.ScanNode, nodeListSQL)
	if err != nil {
		return nil, fmt.Errorf("node list: %w", err)
	}
	return ns, nil
}

// NodeDelete implements store.Store.
// Its usage record, if any, ends at the node's state_since (when it left
// service), in the same transaction.
func (s *Store) NodeDelete(ctx context.Context, id string) error {
	err := s.inTx(ctx, func(ctx context.Context, tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `UPDATE node_usage SET ended_at = (SELECT state_since FROM nodes WHERE id = $1)
			WHERE node_id = $1 AND ended_at IS NULL`, id); err != nil {
			return err
		}
		tag, err := tx.Exec(ctx, nodeDeleteSQL, id)
		if err == nil {
			err = mustAffect(tag)
		}
		if err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `DELETE FROM node_presence WHERE node_id = $1`, id); err != nil {
			return err
		}
		_, err = tx.Exec(ctx, `DELETE FROM node_messages WHERE node_id = $1`, id)
		return err
	})
	if err != nil {
		return fmt.Errorf("node delete %s: %w", id, err)
	}
	return nil
}

// deleteComputeRows removes, in tx, the rows that hang off the compute
// with the folded ID key but have no foreign key to it: its events and its
// status. Its nodes stay (the control plane releases them first) and so do
// its jobs and operations, which outlive it.
func deleteComputeRows(ctx context.Context, tx pgx.Tx, key string) error {
	if _, err := tx.Exec(ctx, `DELETE FROM events WHERE compute_key = $1`, key); err != nil {
		return err
	}
	_, err := tx.Exec(ctx, `DELETE FROM compute_status WHERE compute_key = $1`, key)
	return err
}

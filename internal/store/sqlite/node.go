package sqlite

import (
	"context"
	"database/sql"
	"fmt"

	"kumo/internal/model"
	"kumo/internal/store"
	"kumo/internal/store/rowcodec"
)

const (
	nodeInsertSQL = `INSERT INTO nodes (
		id, compute_id, compute_key, state, credential_hash, address, ssh_port, job_id, reason, note,
		created_at, state_since, attempts, agent_key, host_key, ready_at
	) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`

	// nodeUpdateSQL replaces every field but the node's identity (ID,
	// ComputeID) and its agent key when the stored state is the expected one; see rowcodec.NodeArgs.
	nodeUpdateSQL = `UPDATE nodes SET
		state = ?, credential_hash = ?, address = ?, ssh_port = ?, job_id = ?, reason = ?, note = ?,
		created_at = ?, state_since = ?, attempts = ?, host_key = ?, ready_at = ?
		WHERE id = ? AND state = ?`

	// nodeBindAgentKeySQL sets an unbound node's agent key.
	nodeBindAgentKeySQL = `UPDATE nodes SET agent_key = ? WHERE id = ? AND agent_key = ''`

	nodeExistsSQL        = `SELECT 1 FROM nodes WHERE id = ?`
	nodeGetSQL           = `SELECT ` + rowcodec.NodeColumns + ` FROM nodes WHERE id = ?`
	nodeListByComputeSQL = `SELECT ` + rowcodec.NodeColumns + ` FROM nodes WHERE compute_key = ? ORDER BY created_at, id`
	nodeListSQL          = `SELECT ` + rowcodec.NodeColumns + ` FROM nodes ORDER BY created_at, id`
	nodeListByStateSQL   = `SELECT ` + rowcodec.NodeColumns + ` FROM nodes WHERE compute_key = ? AND state = ? ORDER BY created_at, id`
	nodeCountInStateSQL  = `SELECT COUNT(*) FROM nodes WHERE compute_key = ? AND state = ?`
	nodeDeleteSQL        = `DELETE FROM nodes WHERE id = ?`
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
	n, err := rowcodec.ScanNode(s.keyRow(ctx, nodeGetSQL, id))
	if err != nil {
		return model.Node{}, fmt.Errorf("node get %s: %w", id, notFound(err))
	}
	return n, nil
}

// NodeUpdate implements store.Store. It replaces every field but the
// node's identity (ID, ComputeID) and its AgentKey.
func (s *Store) NodeUpdate(ctx context.Context, n model.Node, from model.NodeState) error {
	res, err := s.exec(ctx, nodeUpdateSQL, rowcodec.NodeArgs(n, from)...)
	if err == nil {
		err = s.changed(ctx, res, nodeExistsSQL, n.ID)
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
	res, err := s.exec(ctx, nodeBindAgentKeySQL, key, id)
	if err != nil {
		return fmt.Errorf("node bind agent key %s: %w", id, err)
	}
	if n, err := res.RowsAffected(); err == nil && n == 1 {
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
	ns, err := query(ctx, s, rowcodec.ScanNode, nodeListByComputeSQL, rowcodec.Fold(computeID))
	if err != nil {
		return nil, fmt.Errorf("node list by compute %s: %w", computeID, err)
	}
	return ns, nil
}

// NodeCountByCompute implements store.Store: an index-only count over
// nodes_by_compute_state (migration 0010).
func (s *Store) NodeCountByCompute(ctx context.Context, computeID string) (map[model.NodeState]int, error) {
	type row struct {
		state model.NodeState
		n     int
	}
	rows, err := query(ctx, s, func(sc rowcodec.Scanner) (row, error) {
		var r row
		err := sc.Scan(&r.state, &r.n)
		return r, err
	}, `SELECT state, COUNT(*) FROM nodes WHERE compute_key = ? GROUP BY state`, rowcodec.Fold(computeID))
	if err != nil {
		return nil, fmt.Errorf("node count of %s: %w", computeID, err)
	}
	out := make(map[model.NodeState]int, len(rows))
	for _, r := range rows {
		out[r.state] = r.n
	}
	return out, nil
}

// PlacementCandidates implements store.Store on the write connection, as
// keyRow does: a pass follows the commits that prompt it (a submission, a
// job's end), after which a read connection reads every page it needs
// again with pread(2), while the write connection's cache still holds
// them. With the reads on a read connection, the dispatcher took 24% of
// the control plane's CPU in BenchmarkThroughput8Nodes instead of 16%,
// and a placement at 10,000 nodes (BenchmarkScale) about a fifth more CPU.
// What they read is bounded by the compute's idle nodes.
func (s *Store) PlacementCandidates(ctx context.Context, computeID string) ([]model.Node, []model.Job, error) {
	key := rowcodec.Fold(computeID)
	var n int
	if err := s.keyRow(ctx, nodeCountInStateSQL, key, string(model.NodeIdle)).Scan(&n); err != nil {
		return nil, nil, fmt.Errorf("placement candidates of %s: count idle nodes: %w", computeID, err)
	}
	if n == 0 {
		return nil, nil, nil
	}
	queued, err := queryOn(ctx, &s.ws, rowcodec.ScanJob, jobHeadSQL, key, string(model.JobQueued), n)
	if err != nil {
		return nil, nil, fmt.Errorf("placement candidates of %s: queue head: %w", computeID, err)
	}
	if len(queued) == 0 {
		return nil, nil, nil
	}
	idle, err := queryOn(ctx, &s.ws, rowcodec.ScanNode, nodeListByStateSQL, key, string(model.NodeIdle))
	if err != nil {
		return nil, nil, fmt.Errorf("placement candidates of %s: idle nodes: %w", computeID, err)
	}
	return idle, queued, nil
}

// NodeList implements store.Store.
func (s *Store) NodeList(ctx context.Context) ([]model.Node, error) {
	ns, err := query(ctx, s, rowcodec.ScanNode, nodeListSQL)
	if err != nil {
		return nil, fmt.Errorf("node list: %w", err)
	}
	return ns, nil
}

// NodeDelete implements store.Store.
// Its usage record, if any, ends at the node's state_since (when it left
// service), in the same transaction.
func (s *Store) NodeDelete(ctx context.Context, id string) error {
	err := s.inTx(ctx, func(ctx context.Context, tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, `UPDATE node_usage SET ended_at = (SELECT state_since FROM nodes WHERE id = ?)
			WHERE node_id = ? AND ended_at IS NULL`, id, id); err != nil {
			return err
		}
		res, err := tx.ExecContext(ctx, nodeDeleteSQL, id)
		if err == nil {
			err = mustAffect(res)
		}
		if err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `DELETE FROM node_presence WHERE node_id = ?`, id); err != nil {
			return err
		}
		_, err = tx.ExecContext(ctx, `DELETE FROM node_messages WHERE node_id = ?`, id)
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
func deleteComputeRows(ctx context.Context, tx *sql.Tx, key string) error {
	if _, err := tx.ExecContext(ctx, `DELETE FROM events WHERE compute_key = ?`, key); err != nil {
		return err
	}
	_, err := tx.ExecContext(ctx, `DELETE FROM compute_status WHERE compute_key = ?`, key)
	return err
}

package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"strings"

	"kumo/internal/model"
	"kumo/internal/store"
	"kumo/internal/store/rowcodec"
)

const (
	jobInsertSQL = `INSERT INTO jobs (` + rowcodec.JobInsertColumns + `) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`

	// jobSubmitSQL is jobInsertSQL with the next Seq, one above the
	// counter that migration 0014 keeps (its triggers keep it at least the
	// largest Seq stored), in place of seq's argument; the insert's
	// trigger then raises the counter to it. SQLite runs one
	// write at a time, so no other insert reads the same counter.
	jobSubmitSQL = `INSERT INTO jobs (` + rowcodec.JobInsertColumns + `) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?,
		(SELECT value + 1 FROM job_seq WHERE id = 1), ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING seq`

	// jobUpdateSQL replaces every field but the job's identity (ID,
	// WorkspaceID, Name) when the stored status is the expected one.
	jobUpdateSQL = `UPDATE jobs SET
		run_id = ?, compute_id = ?, compute_key = ?, display_name = ?, experiment_name = ?, command = ?,
		env = ?, snapshot_id = ?, timeout_ns = ?, instance_count = ?, status = ?, node_id = ?, attempts = ?,
		exit_code = ?, error_code = ?, error_message = ?, cancel_requested = ?, seq = ?, created_at = ?,
		started_at = ?, ended_at = ?, created_by = ?, warnings = ?, created_by_token = ?,
		history = ?, max_retries = ?, distribution = ?, node_ids = ?
		WHERE id_key = ? AND status = ?`

	jobGetSQL        = `SELECT ` + rowcodec.JobColumns + ` FROM jobs WHERE id_key = ?`
	jobGetByRunIDSQL = `SELECT ` + rowcodec.JobColumns + ` FROM jobs WHERE run_id = ?`
	jobListSQL       = `SELECT ` + rowcodec.JobColumns + ` FROM jobs WHERE workspace_key = ? AND name_key > ? ORDER BY name_key LIMIT ?`
	jobMaxSeqSQL     = `SELECT coalesce(max(seq), 0) FROM jobs`
	// jobHeadSQL has LIMIT ? + 0, not LIMIT ?: SQLite reads a bare bound
	// LIMIT while it plans and marks the statement to be prepared again
	// whenever that parameter gets another value. The dispatcher asks for
	// as many jobs as it has idle nodes, so every call was prepared anew
	// (BenchmarkJobHead: about 40% of its time).
	jobHeadSQL = `SELECT ` + rowcodec.JobColumns + ` FROM jobs WHERE compute_key = ? AND status = ? ORDER BY seq, id_key LIMIT ? + 0`
)

// JobCreate implements store.Store. Job IDs and names match
// case-insensitively, run IDs exactly.
func (s *Store) JobCreate(ctx context.Context, j model.Job) error {
	args, err := rowcodec.JobInsertArgs(j)
	if err != nil {
		return fmt.Errorf("job create %s: %w", j.ID, err)
	}
	if _, err := s.exec(ctx, jobInsertSQL, args...); err != nil {
		return fmt.Errorf("job create %s: %w", j.ID, storeErr(err))
	}
	return nil
}

// JobSubmit implements store.Store: one statement in the write
// transaction.
func (s *Store) JobSubmit(ctx context.Context, j model.Job) (model.Job, error) {
	args, err := rowcodec.JobInsertArgs(j)
	if err != nil {
		return model.Job{}, fmt.Errorf("job submit %s: %w", j.ID, err)
	}
	args = slices.Delete(args, rowcodec.JobSeqArg, rowcodec.JobSeqArg+1)
	ctx, err = writeCtx(ctx)
	if err != nil {
		return model.Job{}, fmt.Errorf("job submit %s: %w", j.ID, err)
	}
	st, err := s.ws.get(ctx, jobSubmitSQL)
	if err != nil {
		return model.Job{}, fmt.Errorf("job submit %s: %w", j.ID, err)
	}
	err = s.write(ctx, func(ctx context.Context, tx *sql.Tx) error {
		return tx.StmtContext(ctx, st).QueryRowContext(ctx, args...).Scan(&j.Seq)
	})
	if err != nil {
		return model.Job{}, fmt.Errorf("job submit %s: %w", j.ID, storeErr(err))
	}
	return j, nil
}

// JobGet implements store.Store.
func (s *Store) JobGet(ctx context.Context, id string) (model.Job, error) {
	j, err := rowcodec.ScanJob(s.keyRow(ctx, jobGetSQL, rowcodec.Fold(id)))
	if err != nil {
		return model.Job{}, fmt.Errorf("job get %s: %w", id, notFound(err))
	}
	return j, nil
}

// JobGetByRunID implements store.Store.
func (s *Store) JobGetByRunID(ctx context.Context, runID string) (model.Job, error) {
	j, err := rowcodec.ScanJob(s.keyRow(ctx, jobGetByRunIDSQL, runID))
	if err != nil {
		return model.Job{}, fmt.Errorf("job get by run ID %s: %w", runID, notFound(err))
	}
	return j, nil
}

// JobList implements store.Store. A workspace that does not exist has no
// jobs.
func (s *Store) JobList(ctx context.Context, workspaceID string, p store.Page) ([]model.Job, error) {
	js, err := query(ctx, s, rowcodec.ScanJob, jobListSQL, rowcodec.Fold(workspaceID), rowcodec.Fold(p.After), limit(p))
	if err != nil {
		return nil, fmt.Errorf("job list %s: %w", workspaceID, err)
	}
	return js, nil
}

// inStatuses returns "(?, ?...)" with one placeholder per status, and the
// statuses as arguments.
func inStatuses(statuses []model.JobStatus) (string, []any) {
	args := make([]any, len(statuses))
	for i, st := range statuses {
		args[i] = string(st)
	}
	return `(?` + strings.Repeat(", ?", len(statuses)-1) + `)`, args
}

// JobListByCompute implements store.Store. No statuses means no jobs. Jobs
// with the same Seq are ordered by ID.
func (s *Store) JobListByCompute(ctx context.Context, computeID string, statuses ...model.JobStatus) ([]model.Job, error) {
	if len(statuses) == 0 {
		return nil, nil
	}
	in, args := inStatuses(statuses)
	q := `SELECT ` + rowcodec.JobColumns + ` FROM jobs WHERE compute_key = ? AND status IN ` + in + ` ORDER BY seq, id_key`
	js, err := query(ctx, s, rowcodec.ScanJob, q, append([]any{rowcodec.Fold(computeID)}, args...)...)
	if err != nil {
		return nil, fmt.Errorf("job list by compute %s %v: %w", computeID, statuses, err)
	}
	return js, nil
}

// JobListByStatus implements store.Store. No statuses means no jobs. Jobs
// with the same Seq are ordered by ID.
func (s *Store) JobListByStatus(ctx context.Context, statuses ...model.JobStatus) ([]model.Job, error) {
	if len(statuses) == 0 {
		return nil, nil
	}
	in, args := inStatuses(statuses)
	q := `SELECT ` + rowcodec.JobColumns + ` FROM jobs WHERE status IN ` + in + ` ORDER BY seq, id_key`
	js, err := query(ctx, s, rowcodec.ScanJob, q, args...)
	if err != nil {
		return nil, fmt.Errorf("job list by status %v: %w", statuses, err)
	}
	return js, nil
}

// JobMaxSeq implements store.Store.
func (s *Store) JobMaxSeq(ctx context.Context) (int64, error) {
	var n int64
	if err := s.queryRow(ctx, jobMaxSeqSQL).Scan(&n); err != nil {
		return 0, fmt.Errorf("job max seq: %w", err)
	}
	return n, nil
}

// JobUpdate implements store.Store. It replaces every field but the job's
// identity (ID, WorkspaceID, Name), and the node's as NodeUpdate does.
// Without a node it is one statement; with one, one transaction of two.
func (s *Store) JobUpdate(ctx context.Context, j model.Job, from model.JobStatus, node *model.Node, nodeFrom model.NodeState) error {
	var nodes []store.NodeChange
	if node != nil {
		nodes = []store.NodeChange{{Node: *node, From: nodeFrom}}
	}
	return s.JobUpdateNodes(ctx, j, from, nodes)
}

// JobUpdateNodes implements store.Store: one transaction of 1+len(nodes)
// statements.
func (s *Store) JobUpdateNodes(ctx context.Context, j model.Job, from model.JobStatus, nodes []store.NodeChange) error {
	args, err := rowcodec.JobArgs(j)
	if err != nil {
		return fmt.Errorf("job update %s: %w", j.ID, err)
	}
	args = append(args, rowcodec.Fold(j.ID), string(from))
	if len(nodes) == 0 {
		res, err := s.exec(ctx, jobUpdateSQL, args...)
		if err == nil {
			err = s.changed(ctx, res, jobExistsSQL, rowcodec.Fold(j.ID))
		}
		if err != nil {
			return fmt.Errorf("job update %s: %w", j.ID, storeErr(err))
		}
		return nil
	}

	jobSt, err := s.ws.get(ctx, jobUpdateSQL)
	if err != nil {
		return fmt.Errorf("job update %s: %w", j.ID, err)
	}
	nodeSt, err := s.ws.get(ctx, nodeUpdateSQL)
	if err != nil {
		return fmt.Errorf("job update %s: %w", j.ID, err)
	}
	err = s.inTx(ctx, func(ctx context.Context, tx *sql.Tx) error {
		res, err := tx.StmtContext(ctx, jobSt).ExecContext(ctx, args...)
		if err == nil {
			err = txChanged(ctx, tx, res, jobExistsSQL, rowcodec.Fold(j.ID))
		}
		if err != nil {
			return storeErr(err)
		}
		for _, c := range nodes {
			res, err = tx.StmtContext(ctx, nodeSt).ExecContext(ctx, rowcodec.NodeArgs(c.Node, c.From)...)
			if err == nil {
				err = txChanged(ctx, tx, res, nodeExistsSQL, c.Node.ID)
			}
			if err != nil {
				return fmt.Errorf("node %s: %w", c.Node.ID, err)
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("job update %s: %w", j.ID, err)
	}
	return nil
}

const jobExistsSQL = `SELECT 1 FROM jobs WHERE id_key = ?`

// changed returns nil when a conditional update changed a row. Otherwise
// it runs exists, a query for the row by key, and returns
// store.ErrNotFound when the row is absent and store.ErrPreconditionFailed
// when it is there (so its condition did not hold).
func (s *Store) changed(ctx context.Context, res sql.Result, exists string, key any) error {
	n, err := res.RowsAffected()
	if err != nil || n > 0 {
		return err
	}
	var one int
	return preconditionOrNotFound(s.keyRow(ctx, exists, key).Scan(&one))
}

// txChanged is changed, looking inside tx.
func txChanged(ctx context.Context, tx *sql.Tx, res sql.Result, exists string, key any) error {
	n, err := res.RowsAffected()
	if err != nil || n > 0 {
		return err
	}
	var one int
	return preconditionOrNotFound(tx.QueryRowContext(ctx, exists, key).Scan(&one))
}

// preconditionOrNotFound maps the error of a lookup of a row whose
// conditional update changed nothing.
func preconditionOrNotFound(err error) error {
	switch {
	case err == nil:
		return store.ErrPreconditionFailed
	case errors.Is(err, sql.ErrNoRows):
		return store.ErrNotFound
	}
	return err
}

// JobHead implements store.Store.
func (s *Store) JobHead(ctx context.Context, computeID string, status model.JobStatus, limit int) ([]model.Job, error) {
	if limit <= 0 {
		return nil, nil
	}
	js, err := query(ctx, s, rowcodec.ScanJob, jobHeadSQL, rowcodec.Fold(computeID), status, limit)
	if err != nil {
		return nil, fmt.Errorf("job head of %s: %w", computeID, err)
	}
	return js, nil
}

// JobCountByCompute implements store.Store. It reads the counts that
// triggers keep in job_counts (migration 0009): one row per status.
func (s *Store) JobCountByCompute(ctx context.Context, computeID string, statuses ...model.JobStatus) (map[model.JobStatus]int, error) {
	return s.jobCount(ctx, "jobs", computeID, statuses)
}

// JobNodeCountByCompute implements store.Store, as JobCountByCompute does.
func (s *Store) JobNodeCountByCompute(ctx context.Context, computeID string, statuses ...model.JobStatus) (map[model.JobStatus]int, error) {
	return s.jobCount(ctx, "nodes", computeID, statuses)
}

// jobCount reads column col of job_counts for a compute's statuses.
func (s *Store) jobCount(ctx context.Context, col, computeID string, statuses []model.JobStatus) (map[model.JobStatus]int, error) {
	if len(statuses) == 0 {
		return map[model.JobStatus]int{}, nil
	}
	in, args := inStatuses(statuses)
	type row struct {
		status model.JobStatus
		n      int
	}
	rows, err := query(ctx, s, func(sc rowcodec.Scanner) (row, error) {
		var r row
		err := sc.Scan(&r.status, &r.n)
		return r, err
	}, `SELECT status, `+col+` FROM job_counts WHERE compute_key = ? AND status IN `+in+` AND jobs > 0`, append([]any{rowcodec.Fold(computeID)}, args...)...)
	if err != nil {
		return nil, fmt.Errorf("job count of %s: %w", computeID, err)
	}
	out := make(map[model.JobStatus]int, len(rows))
	for _, r := range rows {
		out[r.status] = r.n
	}
	return out, nil
}

// JobCountAhead implements store.Store.
func (s *Store) JobCountAhead(ctx context.Context, computeID string, status model.JobStatus, seq int64) (int, error) {
	var n int
	err := s.queryRow(ctx, `SELECT count(*) FROM jobs WHERE compute_key = ? AND status = ? AND seq < ?`, rowcodec.Fold(computeID), status, seq).Scan(&n)
	if err != nil {
		return 0, fmt.Errorf("job count ahead in %s: %w", computeID, err)
	}
	return n, nil
}

// JobSnapshotIDs implements store.Store.
func (s *Store) JobSnapshotIDs(ctx context.Context, statuses ...model.JobStatus) ([]string, error) {
	ids, err := s.jobStrings(ctx, `SELECT DISTINCT snapshot_id FROM jobs WHERE status IN %s AND snapshot_id <> '' ORDER BY snapshot_id`, statuses)
	if err != nil {
		return nil, fmt.Errorf("job snapshot IDs %v: %w", statuses, err)
	}
	return ids, nil
}

// JobComputeIDs implements store.Store, from the counts in job_counts.
func (s *Store) JobComputeIDs(ctx context.Context, statuses ...model.JobStatus) ([]string, error) {
	ids, err := s.jobStrings(ctx, `SELECT min(compute_id) FROM job_counts WHERE status IN %s AND jobs > 0 GROUP BY compute_key`, statuses)
	if err != nil {
		return nil, fmt.Errorf("job compute IDs %v: %w", statuses, err)
	}
	return ids, nil
}

// jobStrings runs a query of one string column over the jobs in statuses;
// the query's %s is where the statuses' IN list goes.
func (s *Store) jobStrings(ctx context.Context, q string, statuses []model.JobStatus) ([]string, error) {
	if len(statuses) == 0 {
		return nil, nil
	}
	in, args := inStatuses(statuses)
	return query(ctx, s, func(sc rowcodec.Scanner) (string, error) {
		var v string
		err := sc.Scan(&v)
		return v, err
	}, fmt.Sprintf(q, in), args...)
}

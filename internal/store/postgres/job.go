package postgres

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"kumo/internal/model"
	"kumo/internal/store"
	"kumo/internal/store/rowcodec"
)

const (
	jobInsertSQL = `INSERT INTO jobs (` + rowcodec.JobInsertColumns + `) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21, $22, $23, $24, $25, $26, $27, $28, $29, $30, $31, $32, $33, $34)`

	// jobSubmitSQL is jobInsertSQL with the next Seq in place of seq's
	// argument: the counter that migration 0006 keeps (its trigger keeps
	// it at least the largest Seq stored), raised in the same statement,
	// so a failed insert takes none. Concurrent submissions queue on the
	// counter row's lock, and each sees the value the one before it wrote.
	jobSubmitSQL = `WITH next AS (UPDATE job_seq SET value = value + 1 WHERE id = 1 RETURNING value)
		INSERT INTO jobs (` + rowcodec.JobInsertColumns + `) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21, $22, $23,
		(SELECT value FROM next), $24, $25, $26, $27, $28, $29, $30, $31, $32, $33) RETURNING seq`

	// jobUpdateSQL replaces every field but the job's identity (ID,
	// WorkspaceID, Name) when the stored status is the expected one.
	jobUpdateSQL = `UPDATE jobs SET
		run_id = $1, compute_id = $2, compute_key = $3, display_name = $4, experiment_name = $5, command = $6,
		env = $7, snapshot_id = $8, timeout_ns = $9, instance_count = $10, status = $11, node_id = $12, attempts = $13,
		exit_code = $14, error_code = $15, error_message = $16, cancel_requested = $17, seq = $18, created_at = $19,
		started_at = $20, ended_at = $21, created_by = $22, warnings = $23, created_by_token = $24,
		history = $25, max_retries = $26, distribution = $27, node_ids = $28
		WHERE id_key = $29 AND status = $30`

	jobGetSQL        = `SELECT ` + rowcodec.JobColumns + ` FROM jobs WHERE id_key = $1`
	jobGetByRunIDSQL = `SELECT ` + rowcodec.JobColumns + ` FROM jobs WHERE run_id = $1`
	jobListSQL       = `SELECT ` + rowcodec.JobColumns + ` FROM jobs WHERE workspace_key = $1 AND name_key > $2 ORDER BY name_key LIMIT $3`
	jobMaxSeqSQL     = `SELECT coalesce(max(seq), 0) FROM jobs`
	jobHeadSQL       = `SELECT ` + rowcodec.JobColumns + ` FROM jobs WHERE compute_key = $1 AND status = $2 ORDER BY seq, id_key LIMIT $3`
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

// JobSubmit implements store.Store: one statement, its own transaction.
func (s *Store) JobSubmit(ctx context.Context, j model.Job) (model.Job, error) {
	args, err := rowcodec.JobInsertArgs(j)
	if err != nil {
		return model.Job{}, fmt.Errorf("job submit %s: %w", j.ID, err)
	}
	args = slices.Delete(args, rowcodec.JobSeqArg, rowcodec.JobSeqArg+1)
	ctx, cancel, err := writeCtx(ctx)
	if err != nil {
		return model.Job{}, fmt.Errorf("job submit %s: %w", j.ID, err)
	}
	defer cancel()
	if err := s.pool.QueryRow(ctx, jobSubmitSQL, args...).Scan(&j.Seq); err != nil {
		return model.Job{}, fmt.Errorf("job submit %s: %w", j.ID, storeErr(err))
	}
	return j, nil
}

// JobGet implements store.Store.
func (s *Store) JobGet(ctx context.Context, id string) (model.Job, error) {
	j, err := rowcodec.ScanJob(s.pool.QueryRow(ctx, jobGetSQL, rowcodec.Fold(id)))
	if err != nil {
		return model.Job{}, fmt.Errorf("job get %s: %w", id, notFound(err))
	}
	return j, nil
}

// JobGetByRunID implements store.Store.
func (s *Store) JobGetByRunID(ctx context.Context, runID string) (model.Job, error) {
	j, err := rowcodec.ScanJob(s.pool.QueryRow(ctx, jobGetByRunIDSQL, runID))
	if err != nil {
		return model.Job{}, fmt.Errorf("job get by run ID %s: %w", runID, notFound(err))
	}
	return j, nil
}

// JobList implements store.Store. A workspace that does not exist has no
// jobs.
func (s *Store) JobList(ctx context.Context, workspaceID string, p store.Page) ([]model.Job, error) {
	js, err := query(ctx, s.pool, rowcodec.ScanJob, jobListSQL, rowcodec.Fold(workspaceID), rowcodec.Fold(p.After), limit(p))
	if err != nil {
		return nil, fmt.Errorf("job list %s: %w", workspaceID, err)
	}
	return js, nil
}

// JobListByCompute implements store.Store. No statuses means no jobs. Jobs
// with the same Seq are ordered by ID.
func (s *Store) JobListByCompute(ctx context.Context, computeID string, statuses ...model.JobStatus) ([]model.Job, error) {
	if len(statuses) == 0 {
		return nil, nil
	}
	q := `SELECT ` + rowcodec.JobColumns + ` FROM jobs WHERE compute_key = $1 AND status = ANY($2) ORDER BY seq, id_key`
	js, err := query(ctx, s.pool, rowcodec.ScanJob, q, rowcodec.Fold(computeID), texts(statuses))
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
	q := `SELECT ` + rowcodec.JobColumns + ` FROM jobs WHERE status = ANY($1) ORDER BY seq, id_key`
	js, err := query(ctx, s.pool, rowcodec.ScanJob, q, texts(statuses))
	if err != nil {
		return nil, fmt.Errorf("job list by status %v: %w", statuses, err)
	}
	return js, nil
}

// JobMaxSeq implements store.Store.
func (s *Store) JobMaxSeq(ctx context.Context) (int64, error) {
	var n int64
	if err := s.pool.QueryRow(ctx, jobMaxSeqSQL).Scan(&n); err != nil {
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
// conditional updates. Each condition is checked by its UPDATE's WHERE
// clause, which PostgreSQL re-evaluates on the row's newest version when
// a concurrent writer changed it first, so two writers cannot both win.
func (s *Store) JobUpdateNodes(ctx context.Context, j model.Job, from model.JobStatus, nodes []store.NodeChange) error {
	args, err := rowcodec.JobArgs(j)
	if err != nil {
		return fmt.Errorf("job update %s: %w", j.ID, err)
	}
	args = append(args, rowcodec.Fold(j.ID), string(from))
	if len(nodes) == 0 {
		tag, err := s.exec(ctx, jobUpdateSQL, args...)
		if err == nil {
			err = changed(ctx, s.pool, tag, jobExistsSQL, rowcodec.Fold(j.ID))
		}
		if err != nil {
			return fmt.Errorf("job update %s: %w", j.ID, storeErr(err))
		}
		return nil
	}
	err = s.inTx(ctx, func(ctx context.Context, tx pgx.Tx) error {
		return applyJobNodes(ctx, tx, args, j.ID, nodes)
	})
	if err != nil {
		return fmt.Errorf("job update %s: %w", j.ID, err)
	}
	return nil
}

// JobUpdateBatch implements store.Store: one transaction, with a savepoint
// per update so that one whose condition fails is undone alone.
func (s *Store) JobUpdateBatch(ctx context.Context, updates []store.JobNodesUpdate) ([]error, error) {
	errs := make([]error, len(updates))
	if len(updates) == 0 {
		return errs, nil
	}
	err := s.inTx(ctx, func(ctx context.Context, tx pgx.Tx) error {
		for i, u := range updates {
			errs[i] = nil
			args, err := rowcodec.JobArgs(u.Job)
			if err != nil {
				return fmt.Errorf("job update %s: %w", u.Job.ID, err)
			}
			args = append(args, rowcodec.Fold(u.Job.ID), string(u.From))
			sp, err := tx.Begin(ctx) // a savepoint
			if err != nil {
				return err
			}
			err = applyJobNodes(ctx, sp, args, u.Job.ID, u.Nodes)
			if errors.Is(err, store.ErrPreconditionFailed) || errors.Is(err, store.ErrNotFound) {
				errs[i] = fmt.Errorf("job update %s: %w", u.Job.ID, err)
				if err := sp.Rollback(ctx); err != nil {
					return err
				}
				continue
			} else if err != nil {
				return fmt.Errorf("job update %s: %w", u.Job.ID, err)
			}
			if err := sp.Commit(ctx); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("job update batch: %w", err)
	}
	return errs, nil
}

// applyJobNodes updates a job (args are jobUpdateSQL's) and its nodes in
// tx. Nodes are locked in ID order, so two transactions that want some of
// the same nodes (two gangs) wait for each other instead of deadlocking.
func applyJobNodes(ctx context.Context, tx pgx.Tx, args []any, jobID string, nodes []store.NodeChange) error {
	tag, err := tx.Exec(ctx, jobUpdateSQL, args...)
	if err == nil {
		err = changed(ctx, tx, tag, jobExistsSQL, rowcodec.Fold(jobID))
	}
	if err != nil {
		return storeErr(err)
	}
	nodes = slices.SortedFunc(slices.Values(nodes), func(a, b store.NodeChange) int { return strings.Compare(a.Node.ID, b.Node.ID) })
	for _, c := range nodes {
		tag, err = tx.Exec(ctx, nodeUpdateSQL, rowcodec.NodeArgs(c.Node, c.From)...)
		if err == nil {
			err = changed(ctx, tx, tag, nodeExistsSQL, c.Node.ID)
		}
		if err != nil {
			return fmt.Errorf("node %s: %w", c.Node.ID, err)
		}
	}
	return nil
}

const jobExistsSQL = `SELECT 1 FROM jobs WHERE id_key = $1`

// changed returns nil when a conditional update changed a row. Otherwise
// it runs exists, a query for the row by key, on db and returns
// store.ErrNotFound when the row is absent and store.ErrPreconditionFailed
// when it is there (so its condition did not hold).
func changed(ctx context.Context, db querier, tag pgconn.CommandTag, exists string, key any) error {
	if tag.RowsAffected() > 0 {
		return nil
	}
	var one int
	err := db.QueryRow(ctx, exists, key).Scan(&one)
	switch {
	case err == nil:
		return store.ErrPreconditionFailed
	case errors.Is(err, pgx.ErrNoRows):
		return store.ErrNotFound
	}
	return err
}

// JobHead implements store.Store.
func (s *Store) JobHead(ctx context.Context, computeID string, status model.JobStatus, limit int) ([]model.Job, error) {
	if limit <= 0 {
		return nil, nil
	}
	js, err := query(ctx, s.pool, rowcodec.ScanJob, jobHeadSQL, rowcodec.Fold(computeID), string(status), limit)
	if err != nil {
		return nil, fmt.Errorf("job head of %s: %w", computeID, err)
	}
	return js, nil
}

// JobCountByCompute implements store.Store.
func (s *Store) JobCountByCompute(ctx context.Context, computeID string, statuses ...model.JobStatus) (map[model.JobStatus]int, error) {
	return s.jobCount(ctx, "count(*)", computeID, statuses)
}

// JobNodeCountByCompute implements store.Store.
func (s *Store) JobNodeCountByCompute(ctx context.Context, computeID string, statuses ...model.JobStatus) (map[model.JobStatus]int, error) {
	return s.jobCount(ctx, "sum(greatest(instance_count, 1))", computeID, statuses)
}

// jobCount sums expr over a compute's jobs by status.
func (s *Store) jobCount(ctx context.Context, expr, computeID string, statuses []model.JobStatus) (map[model.JobStatus]int, error) {
	if len(statuses) == 0 {
		return map[model.JobStatus]int{}, nil
	}
	type row struct {
		status model.JobStatus
		n      int
	}
	rows, err := query(ctx, s.pool, func(sc rowcodec.Scanner) (row, error) {
		var r row
		err := sc.Scan(&r.status, &r.n)
		return r, err
	}, `SELECT status, (`+expr+`)::bigint FROM jobs WHERE compute_key = $1 AND status = ANY($2) GROUP BY status`,
		rowcodec.Fold(computeID), texts(statuses))
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
	err := s.pool.QueryRow(ctx, `SELECT count(*) FROM jobs WHERE compute_key = $1 AND status = $2 AND seq < $3`,
		rowcodec.Fold(computeID), string(status), seq).Scan(&n)
	if err != nil {
		return 0, fmt.Errorf("job count ahead in %s: %w", computeID, err)
	}
	return n, nil
}

// JobSnapshotIDs implements store.Store.
func (s *Store) JobSnapshotIDs(ctx context.Context, statuses ...model.JobStatus) ([]string, error) {
	ids, err := s.jobStrings(ctx, `SELECT DISTINCT snapshot_id FROM jobs WHERE status = ANY($1) AND snapshot_id <> '' ORDER BY snapshot_id`, statuses)
	if err != nil {
		return nil, fmt.Errorf("job snapshot IDs %v: %w", statuses, err)
	}
	return ids, nil
}

// JobComputeIDs implements store.Store.
func (s *Store) JobComputeIDs(ctx context.Context, statuses ...model.JobStatus) ([]string, error) {
	ids, err := s.jobStrings(ctx, `SELECT min(compute_id) FROM jobs WHERE status = ANY($1) GROUP BY compute_key`, statuses)
	if err != nil {
		return nil, fmt.Errorf("job compute IDs %v: %w", statuses, err)
	}
	return ids, nil
}

// jobStrings runs q, a query of one string column whose $1 is the
// statuses (a text array).
func (s *Store) jobStrings(ctx context.Context, q string, statuses []model.JobStatus) ([]string, error) {
	if len(statuses) == 0 {
		return nil, nil
	}
	return query(ctx, s.pool, func(sc rowcodec.Scanner) (string, error) {
		var v string
		err := sc.Scan(&v)
		return v, err
	}, q, texts(statuses))
}

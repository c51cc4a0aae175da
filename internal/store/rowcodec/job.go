package rowcodec

import (
	"database/sql"
	"encoding/json"
	"time"

	"kumo/internal/model"
)

// JobColumns are the columns that ScanJob reads, in its order.
const JobColumns = `id, workspace_id, name, run_id, compute_id, display_name, experiment_name, command, env,
	snapshot_id, timeout_ns, instance_count, status, node_id, attempts, exit_code, error_code, error_message,
	cancel_requested, seq, created_at, started_at, ended_at, created_by, warnings, created_by_token, history, max_retries, distribution, node_ids`

// ScanJob reads a job from the columns of JobColumns.
func ScanJob(sc Scanner) (model.Job, error) {
	var (
		j              model.Job
		env, warnings  sql.NullString
		history        sql.NullString
		dist, nodeIDs  sql.NullString
		timeout        int64
		exit           sql.NullInt64
		code, msg      sql.NullString
		created        string
		started, ended sql.NullString
	)
	err := sc.Scan(&j.ID, &j.WorkspaceID, &j.Name, &j.RunID, &j.ComputeID, &j.DisplayName, &j.ExperimentName,
		&j.Command, &env, &j.SnapshotID, &timeout, &j.InstanceCount, &j.Status, &j.NodeID, &j.Attempts,
		&exit, &code, &msg, &j.CancelRequested, &j.Seq, &created, &started, &ended, &j.CreatedBy, &warnings, &j.CreatedByToken,
		&history, &j.MaxRetries, &dist, &nodeIDs)
	if err != nil {
		return model.Job{}, err
	}
	var d Decoder
	j.Env = d.Tags("env", env)
	j.Timeout = time.Duration(timeout)
	if exit.Valid {
		n := int(exit.Int64)
		j.ExitCode = &n
	}
	if code.Valid || msg.Valid {
		j.Error = &model.Error{Code: code.String, Message: msg.String}
	}
	j.CreatedAt = d.Time("created_at", created)
	j.StartedAt = d.OptTime("started_at", started)
	j.EndedAt = d.OptTime("ended_at", ended)
	j.Warnings = d.Strings("warnings", warnings)
	j.History = decAttempts(&d, history)
	j.Distribution = decDistribution(&d, dist)
	j.NodeIDs = d.Strings("node_ids", nodeIDs)
	return j, d.err
}

// JobInsertColumns are the columns of a job's insert, in the order of
// JobInsertArgs.
const JobInsertColumns = `id_key, id, workspace_key, workspace_id, name, name_key, run_id, compute_id, compute_key,
	display_name, experiment_name, command, env, snapshot_id, timeout_ns, instance_count, status, node_id,
	attempts, exit_code, error_code, error_message, cancel_requested, seq, created_at, started_at, ended_at,
	created_by, warnings, created_by_token, history, max_retries, distribution, node_ids`

// JobSeqArg is the index of seq among JobInsertColumns.
const JobSeqArg = 23

// JobInsertArgs encodes a job's insert: its identity, then JobArgs.
func JobInsertArgs(j model.Job) ([]any, error) {
	shared, err := JobArgs(j)
	if err != nil {
		return nil, err
	}
	return append([]any{Fold(j.ID), j.ID, Fold(j.WorkspaceID), j.WorkspaceID, j.Name, Fold(j.Name)}, shared...), nil
}

// JobArgs encodes the columns that a job's insert and update share,
// run_id through node_ids, in ScanJob's order.
func JobArgs(j model.Job) ([]any, error) {
	env, err := EncTags(j.Env)
	if err != nil {
		return nil, err
	}
	warnings, err := EncJSON(j.Warnings, len(j.Warnings))
	if err != nil {
		return nil, err
	}
	var exit sql.NullInt64
	if j.ExitCode != nil {
		exit = sql.NullInt64{Int64: int64(*j.ExitCode), Valid: true}
	}
	history, err := encAttempts(j.History)
	if err != nil {
		return nil, err
	}
	dist, err := encDistribution(j.Distribution)
	if err != nil {
		return nil, err
	}
	nodeIDs, err := EncJSON(j.NodeIDs, len(j.NodeIDs))
	if err != nil {
		return nil, err
	}
	code, msg := OpError(j.Error)
	return []any{
		j.RunID, j.ComputeID, Fold(j.ComputeID), j.DisplayName, j.ExperimentName, j.Command,
		env, j.SnapshotID, int64(j.Timeout), j.InstanceCount, string(j.Status), j.NodeID, j.Attempts,
		exit, code, msg, j.CancelRequested, j.Seq, EncTime(j.CreatedAt),
		EncOptTime(j.StartedAt), EncOptTime(j.EndedAt), j.CreatedBy, warnings, j.CreatedByToken,
		history, j.MaxRetries, dist, nodeIDs,
	}, nil
}

// attemptRow is one element of jobs.history, with stable JSON names.
type attemptRow struct {
	Number    int      `json:"number"`
	NodeID    string   `json:"node,omitempty"`
	NodeIDs   []string `json:"nodes,omitempty"` // a gang's, in rank order
	StartedAt string   `json:"start"`
	EndedAt   string   `json:"end,omitempty"`
	Class     string   `json:"class,omitempty"`
	Reason    string   `json:"reason,omitempty"`
	Message   string   `json:"message,omitempty"`
	ExitCode  *int     `json:"exitCode,omitempty"`
}

// encAttempts renders a job's history; nil and empty both become NULL.
func encAttempts(as []model.Attempt) (sql.NullString, error) {
	rows := make([]attemptRow, len(as))
	for i, a := range as {
		rows[i] = attemptRow{Number: a.Number, NodeID: a.NodeID, NodeIDs: a.NodeIDs, StartedAt: EncTime(a.StartedAt),
			Class: string(a.Class), Reason: string(a.Reason), Message: a.Message, ExitCode: a.ExitCode}
		if !a.EndedAt.IsZero() {
			rows[i].EndedAt = EncTime(a.EndedAt)
		}
	}
	return EncJSON(rows, len(rows))
}

// decAttempts decodes a job's history (column history).
func decAttempts(d *Decoder, s sql.NullString) []model.Attempt {
	if !s.Valid {
		return nil
	}
	var rows []attemptRow
	if err := json.Unmarshal([]byte(s.String), &rows); err != nil {
		d.fail("history", err)
		return nil
	}
	if len(rows) == 0 {
		return nil
	}
	as := make([]model.Attempt, len(rows))
	for i, r := range rows {
		as[i] = model.Attempt{Number: r.Number, NodeID: r.NodeID, NodeIDs: r.NodeIDs, StartedAt: d.Time("history", r.StartedAt),
			Class: model.FailureClass(r.Class), Reason: model.Reason(r.Reason), Message: r.Message, ExitCode: r.ExitCode}
		if r.EndedAt != "" {
			as[i].EndedAt = d.Time("history", r.EndedAt)
		}
	}
	return as
}

// distributionRow is how a job's distribution is stored (column
// distribution, JSON).
type distributionRow struct {
	Type                    string `json:"type"`
	ProcessCountPerInstance int    `json:"processCountPerInstance,omitempty"`
	WorkerCount             int    `json:"workerCount,omitempty"`
	ParameterServerCount    int    `json:"parameterServerCount,omitempty"`
}

// encDistribution renders a job's distribution; nil becomes NULL.
func encDistribution(d *model.Distribution) (sql.NullString, error) {
	if d == nil {
		return sql.NullString{}, nil
	}
	return EncJSON(distributionRow{Type: string(d.Type), ProcessCountPerInstance: d.ProcessCountPerInstance,
		WorkerCount: d.WorkerCount, ParameterServerCount: d.ParameterServerCount}, 1)
}

// decDistribution decodes a job's distribution; NULL and "" become nil.
func decDistribution(d *Decoder, s sql.NullString) *model.Distribution {
	if !s.Valid || s.String == "" {
		return nil
	}
	var r distributionRow
	if err := json.Unmarshal([]byte(s.String), &r); err != nil {
		d.fail("distribution", err)
		return nil
	}
	return &model.Distribution{Type: model.DistributionType(r.Type), ProcessCountPerInstance: r.ProcessCountPerInstance,
		WorkerCount: r.WorkerCount, ParameterServerCount: r.ParameterServerCount}
}

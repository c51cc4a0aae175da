-- 0002: nodes, jobs, events and compute status.
--
-- These follow 0001's conventions, with one difference: none of these
-- tables has a foreign key. Jobs outlive their compute (and a job on the
-- local compute has no compute row); nodes are released by the control
-- plane before their compute is deleted; events and a compute's status are
-- written by the autoscaler, which may race a delete. The Go code removes
-- the rows a delete orphans: ComputeDelete a compute's events and status,
-- WorkspaceDelete a workspace's jobs and its computes' events and status.

CREATE TABLE nodes (
    id              TEXT PRIMARY KEY, -- chosen by the control plane; matched exactly
    compute_id      TEXT NOT NULL,
    compute_key     TEXT NOT NULL,
    state           TEXT NOT NULL,
    credential_hash TEXT NOT NULL,
    address         TEXT NOT NULL,
    ssh_port        INTEGER NOT NULL,
    job_id          TEXT NOT NULL,
    reason          TEXT NOT NULL,
    note            TEXT NOT NULL,
    created_at      TEXT NOT NULL,
    state_since     TEXT NOT NULL,
    attempts        INTEGER NOT NULL
) STRICT;

CREATE INDEX nodes_by_compute ON nodes (compute_key);

CREATE TABLE jobs (
    id_key           TEXT PRIMARY KEY,
    id               TEXT NOT NULL,
    workspace_key    TEXT NOT NULL,
    workspace_id     TEXT NOT NULL,
    name             TEXT NOT NULL,
    name_key         TEXT NOT NULL,
    run_id           TEXT NOT NULL, -- matched exactly
    compute_id       TEXT NOT NULL,
    compute_key      TEXT NOT NULL,
    display_name     TEXT NOT NULL,
    experiment_name  TEXT NOT NULL,
    command          TEXT NOT NULL,
    env              TEXT,
    snapshot_id      TEXT NOT NULL,
    timeout_ns       INTEGER NOT NULL,
    instance_count   INTEGER NOT NULL,
    status           TEXT NOT NULL,
    node_id          TEXT NOT NULL,
    attempts         INTEGER NOT NULL,
    exit_code        INTEGER,        -- NULL until the job exits
    error_code       TEXT,           -- error_code and error_message are both NULL when there is no error
    error_message    TEXT,
    cancel_requested INTEGER NOT NULL, -- 0 or 1
    seq              INTEGER NOT NULL,
    created_at       TEXT NOT NULL,
    started_at       TEXT,
    ended_at         TEXT,
    created_by       TEXT NOT NULL,
    warnings         TEXT
) STRICT;

CREATE UNIQUE INDEX jobs_by_workspace_name ON jobs (workspace_key, name_key);
CREATE UNIQUE INDEX jobs_by_run_id ON jobs (run_id);
CREATE INDEX jobs_by_compute_status ON jobs (compute_key, status, seq);
CREATE INDEX jobs_by_status ON jobs (status, seq);

-- An event has no natural key: seq keeps the order in which events with
-- the same time were appended. It is never shown.
CREATE TABLE events (
    seq         INTEGER PRIMARY KEY,
    compute_id  TEXT NOT NULL,
    compute_key TEXT NOT NULL,
    time        TEXT NOT NULL,
    kind        TEXT NOT NULL,
    message     TEXT NOT NULL
) STRICT;

CREATE INDEX events_by_compute_time ON events (compute_key, time);

CREATE TABLE compute_status (
    compute_key      TEXT PRIMARY KEY,
    compute_id       TEXT NOT NULL,
    target_nodes     INTEGER NOT NULL,
    allocation       TEXT NOT NULL,
    allocation_since TEXT,
    errors           TEXT,
    blocked          TEXT NOT NULL,
    blocked_detail   TEXT NOT NULL
) STRICT;

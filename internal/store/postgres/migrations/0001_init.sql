-- 0001: kumo's whole schema as of SQLite migration 0008, in PostgreSQL.
--
-- The tables, columns and meanings are SQLite's (see the comments in
-- store/sqlite/migrations); the differences are PostgreSQL's types:
--   * every text column is COLLATE "C": keys and timestamps are ordered
--     and compared bytewise, as in SQLite, whatever the database's locale;
--   * *_key columns hold the case-folded (Go strings.ToLower) form of the
--     column beside them; uniqueness and lookups use the key;
--   * timestamps stay fixed-width UTC text with nanoseconds
--     ("2006-01-02T15:04:05.000000000Z"): timestamptz keeps only
--     microseconds, and the store must return the times it was given;
--     NULL means the zero time;
--   * maps and slices are JSON text (NULL means nil), kept as written;
--   * integers are BIGINT, flags BOOLEAN, prices DOUBLE PRECISION.

CREATE TABLE workspaces (
    id_key             TEXT COLLATE "C" PRIMARY KEY,
    id                 TEXT COLLATE "C" NOT NULL,
    subscription       TEXT COLLATE "C" NOT NULL,
    subscription_key   TEXT COLLATE "C" NOT NULL,
    resource_group     TEXT COLLATE "C" NOT NULL,
    resource_group_key TEXT COLLATE "C" NOT NULL,
    name               TEXT COLLATE "C" NOT NULL,
    name_key           TEXT COLLATE "C" NOT NULL,
    location           TEXT COLLATE "C" NOT NULL,
    description        TEXT COLLATE "C" NOT NULL,
    tags               TEXT COLLATE "C",
    created_at         TEXT COLLATE "C" NOT NULL,
    modified_at        TEXT COLLATE "C" NOT NULL,
    created_by         TEXT COLLATE "C" NOT NULL,
    UNIQUE (subscription_key, resource_group_key, name_key)
);

CREATE INDEX workspaces_by_subscription_name ON workspaces (subscription_key, name_key);

CREATE TABLE computes (
    id_key         TEXT COLLATE "C" PRIMARY KEY,
    id             TEXT COLLATE "C" NOT NULL,
    workspace_key  TEXT COLLATE "C" NOT NULL REFERENCES workspaces (id_key) ON DELETE CASCADE,
    workspace_id   TEXT COLLATE "C" NOT NULL,
    name           TEXT COLLATE "C" NOT NULL,
    name_key       TEXT COLLATE "C" NOT NULL,
    location       TEXT COLLATE "C" NOT NULL,
    description    TEXT COLLATE "C" NOT NULL,
    tags           TEXT COLLATE "C",
    vm_size        TEXT COLLATE "C" NOT NULL,
    priority       TEXT COLLATE "C" NOT NULL,
    min_nodes      BIGINT NOT NULL,
    max_nodes      BIGINT NOT NULL,
    idle_time_ns   BIGINT NOT NULL,
    admin_user     TEXT COLLATE "C" NOT NULL,
    password_hash  TEXT COLLATE "C" NOT NULL,
    ssh_public_key TEXT COLLATE "C" NOT NULL,
    remote_login   TEXT COLLATE "C" NOT NULL,
    state          TEXT COLLATE "C" NOT NULL,
    errors         TEXT COLLATE "C",
    operation_id   TEXT COLLATE "C" NOT NULL,
    etag           TEXT COLLATE "C" NOT NULL,
    created_at     TEXT COLLATE "C" NOT NULL,
    modified_at    TEXT COLLATE "C" NOT NULL,
    created_by     TEXT COLLATE "C" NOT NULL,
    modified_by    TEXT COLLATE "C" NOT NULL,
    UNIQUE (workspace_key, name_key)
);

CREATE INDEX computes_by_state ON computes (state);

CREATE TABLE operations (
    id            TEXT COLLATE "C" PRIMARY KEY,
    location      TEXT COLLATE "C" NOT NULL,
    kind          TEXT COLLATE "C" NOT NULL,
    compute_id    TEXT COLLATE "C" NOT NULL,
    compute_key   TEXT COLLATE "C" NOT NULL,
    status        TEXT COLLATE "C" NOT NULL,
    error_code    TEXT COLLATE "C",
    error_message TEXT COLLATE "C",
    started_at    TEXT COLLATE "C" NOT NULL,
    ended_at      TEXT COLLATE "C"
);

CREATE INDEX operations_by_compute ON operations (compute_key);
CREATE INDEX operations_by_status ON operations (status, started_at, id);

CREATE TABLE tokens (
    id         TEXT COLLATE "C" PRIMARY KEY,
    name       TEXT COLLATE "C" NOT NULL,
    role       TEXT COLLATE "C" NOT NULL,
    hash       TEXT COLLATE "C" NOT NULL UNIQUE,
    created_at TEXT COLLATE "C" NOT NULL,
    revoked_at TEXT COLLATE "C"
);

CREATE INDEX tokens_by_created ON tokens (created_at, id);

CREATE TABLE quotas (
    workspace_key TEXT COLLATE "C" NOT NULL REFERENCES workspaces (id_key) ON DELETE CASCADE,
    workspace_id  TEXT COLLATE "C" NOT NULL,
    family        TEXT COLLATE "C" NOT NULL,
    family_key    TEXT COLLATE "C" NOT NULL,
    vcpu_limit    BIGINT NOT NULL,
    PRIMARY KEY (workspace_key, family_key)
);

CREATE TABLE nodes (
    id              TEXT COLLATE "C" PRIMARY KEY,
    compute_id      TEXT COLLATE "C" NOT NULL,
    compute_key     TEXT COLLATE "C" NOT NULL,
    state           TEXT COLLATE "C" NOT NULL,
    credential_hash TEXT COLLATE "C" NOT NULL,
    address         TEXT COLLATE "C" NOT NULL,
    ssh_port        BIGINT NOT NULL,
    job_id          TEXT COLLATE "C" NOT NULL,
    reason          TEXT COLLATE "C" NOT NULL,
    note            TEXT COLLATE "C" NOT NULL,
    created_at      TEXT COLLATE "C" NOT NULL,
    state_since     TEXT COLLATE "C" NOT NULL,
    attempts        BIGINT NOT NULL,
    agent_key       TEXT COLLATE "C" NOT NULL DEFAULT '',
    host_key        TEXT COLLATE "C" NOT NULL DEFAULT '',
    ready_at        TEXT COLLATE "C"
);

CREATE INDEX nodes_by_compute ON nodes (compute_key);
CREATE INDEX nodes_by_created ON nodes (created_at, id);

CREATE TABLE jobs (
    id_key           TEXT COLLATE "C" PRIMARY KEY,
    id               TEXT COLLATE "C" NOT NULL,
    workspace_key    TEXT COLLATE "C" NOT NULL,
    workspace_id     TEXT COLLATE "C" NOT NULL,
    name             TEXT COLLATE "C" NOT NULL,
    name_key         TEXT COLLATE "C" NOT NULL,
    run_id           TEXT COLLATE "C" NOT NULL,
    compute_id       TEXT COLLATE "C" NOT NULL,
    compute_key      TEXT COLLATE "C" NOT NULL,
    display_name     TEXT COLLATE "C" NOT NULL,
    experiment_name  TEXT COLLATE "C" NOT NULL,
    command          TEXT COLLATE "C" NOT NULL,
    env              TEXT COLLATE "C",
    snapshot_id      TEXT COLLATE "C" NOT NULL,
    timeout_ns       BIGINT NOT NULL,
    instance_count   BIGINT NOT NULL,
    status           TEXT COLLATE "C" NOT NULL,
    node_id          TEXT COLLATE "C" NOT NULL,
    attempts         BIGINT NOT NULL,
    exit_code        BIGINT,
    error_code       TEXT COLLATE "C",
    error_message    TEXT COLLATE "C",
    cancel_requested BOOLEAN NOT NULL,
    seq              BIGINT NOT NULL,
    created_at       TEXT COLLATE "C" NOT NULL,
    started_at       TEXT COLLATE "C",
    ended_at         TEXT COLLATE "C",
    created_by       TEXT COLLATE "C" NOT NULL,
    warnings         TEXT COLLATE "C",
    created_by_token TEXT COLLATE "C" NOT NULL DEFAULT '',
    history          TEXT COLLATE "C",
    max_retries      BIGINT NOT NULL DEFAULT 0,
    distribution     TEXT COLLATE "C",
    node_ids         TEXT COLLATE "C"
);

CREATE UNIQUE INDEX jobs_by_workspace_name ON jobs (workspace_key, name_key);
CREATE UNIQUE INDEX jobs_by_run_id ON jobs (run_id);
CREATE INDEX jobs_by_compute_status ON jobs (compute_key, status, seq);
CREATE INDEX jobs_by_status ON jobs (status, seq);

-- seq keeps the order in which events with the same time were appended.
CREATE TABLE events (
    seq         BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    compute_id  TEXT COLLATE "C" NOT NULL,
    compute_key TEXT COLLATE "C" NOT NULL,
    time        TEXT COLLATE "C" NOT NULL,
    kind        TEXT COLLATE "C" NOT NULL,
    message     TEXT COLLATE "C" NOT NULL
);

CREATE INDEX events_by_compute_time ON events (compute_key, time);

CREATE TABLE compute_status (
    compute_key      TEXT COLLATE "C" PRIMARY KEY,
    compute_id       TEXT COLLATE "C" NOT NULL,
    target_nodes     BIGINT NOT NULL,
    allocation       TEXT COLLATE "C" NOT NULL,
    allocation_since TEXT COLLATE "C",
    errors           TEXT COLLATE "C",
    blocked          TEXT COLLATE "C" NOT NULL,
    blocked_detail   TEXT COLLATE "C" NOT NULL
);

CREATE TABLE node_usage (
    node_id        TEXT COLLATE "C" PRIMARY KEY,
    compute_id     TEXT COLLATE "C" NOT NULL,
    compute_key    TEXT COLLATE "C" NOT NULL,
    workspace_key  TEXT COLLATE "C" NOT NULL,
    workspace_id   TEXT COLLATE "C" NOT NULL,
    vm_size        TEXT COLLATE "C" NOT NULL,
    priority       TEXT COLLATE "C" NOT NULL,
    price_per_hour DOUBLE PRECISION NOT NULL,
    started_at     TEXT COLLATE "C" NOT NULL,
    ended_at       TEXT COLLATE "C"
);

CREATE INDEX node_usage_by_workspace ON node_usage (workspace_key, started_at);

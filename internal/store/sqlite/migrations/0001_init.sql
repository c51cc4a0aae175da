-- 0001: workspaces, computes, operations, tokens and quotas.
--
-- Conventions, which later migrations (nodes, jobs...) follow too:
--   * every *_key column holds the case-folded (Go strings.ToLower) form of
--     the column beside it; uniqueness and lookups use the key, rows keep
--     the spelling they were created with;
--   * timestamps are UTC text, fixed width with nanoseconds
--     ("2006-01-02T15:04:05.000000000Z"), so they sort as text; NULL means
--     the zero time where the model allows it;
--   * maps and slices are JSON text; NULL means nil;
--   * a child row references its parent's key with ON DELETE CASCADE.

CREATE TABLE workspaces (
    id_key             TEXT PRIMARY KEY,
    id                 TEXT NOT NULL,
    subscription       TEXT NOT NULL,
    subscription_key   TEXT NOT NULL,
    resource_group     TEXT NOT NULL,
    resource_group_key TEXT NOT NULL,
    name               TEXT NOT NULL,
    name_key           TEXT NOT NULL,
    location           TEXT NOT NULL,
    description        TEXT NOT NULL,
    tags               TEXT,
    created_at         TEXT NOT NULL,
    modified_at        TEXT NOT NULL,
    created_by         TEXT NOT NULL,
    UNIQUE (subscription_key, resource_group_key, name_key)
) STRICT;

CREATE INDEX workspaces_by_subscription_name ON workspaces (subscription_key, name_key);

CREATE TABLE computes (
    id_key         TEXT PRIMARY KEY,
    id             TEXT NOT NULL,
    workspace_key  TEXT NOT NULL REFERENCES workspaces (id_key) ON DELETE CASCADE,
    workspace_id   TEXT NOT NULL,
    name           TEXT NOT NULL,
    name_key       TEXT NOT NULL,
    location       TEXT NOT NULL,
    description    TEXT NOT NULL,
    tags           TEXT,
    vm_size        TEXT NOT NULL,
    priority       TEXT NOT NULL,
    min_nodes      INTEGER NOT NULL,
    max_nodes      INTEGER NOT NULL,
    idle_time_ns   INTEGER NOT NULL,
    admin_user     TEXT NOT NULL,
    password_hash  TEXT NOT NULL,
    ssh_public_key TEXT NOT NULL,
    remote_login   TEXT NOT NULL,
    state          TEXT NOT NULL,
    errors         TEXT,
    operation_id   TEXT NOT NULL,
    etag           TEXT NOT NULL,
    created_at     TEXT NOT NULL,
    modified_at    TEXT NOT NULL,
    created_by     TEXT NOT NULL,
    modified_by    TEXT NOT NULL,
    UNIQUE (workspace_key, name_key)
) STRICT;

CREATE INDEX computes_by_state ON computes (state);

-- Operations outlive their compute (a finished delete stays pollable), so
-- they hold the compute's key without a foreign key.
CREATE TABLE operations (
    id            TEXT PRIMARY KEY,
    location      TEXT NOT NULL,
    kind          TEXT NOT NULL,
    compute_id    TEXT NOT NULL,
    compute_key   TEXT NOT NULL,
    status        TEXT NOT NULL,
    error_code    TEXT,
    error_message TEXT,
    started_at    TEXT NOT NULL,
    ended_at      TEXT
) STRICT;

CREATE INDEX operations_by_compute ON operations (compute_key);
CREATE INDEX operations_by_status ON operations (status, started_at, id);

CREATE TABLE tokens (
    id         TEXT PRIMARY KEY,
    name       TEXT NOT NULL,
    role       TEXT NOT NULL,
    hash       TEXT NOT NULL UNIQUE,
    created_at TEXT NOT NULL,
    revoked_at TEXT
) STRICT;

CREATE INDEX tokens_by_created ON tokens (created_at, id);

CREATE TABLE quotas (
    workspace_key TEXT NOT NULL REFERENCES workspaces (id_key) ON DELETE CASCADE,
    workspace_id  TEXT NOT NULL,
    family        TEXT NOT NULL,
    family_key    TEXT NOT NULL,
    vcpu_limit    INTEGER NOT NULL,
    PRIMARY KEY (workspace_key, family_key)
) STRICT;
